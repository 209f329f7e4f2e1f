//! 4-bit block-wise quantization (bitsandbytes `quantize_4bit` / `dequantize_4bit`).
//!
//! Layout (spec §1–3): the tensor is flattened row-major, element k belongs to block
//! k / blocksize (blocks may span rows), byte j holds element 2j in the high nibble and 2j+1
//! in the low nibble, absmax is f32 per block.
//!
//! Quantization follows bitsandbytes' CPU (default backend, 0.50) rules, which are exact IEEE
//! arithmetic and therefore reproducible: a full block is scaled by `x * (1 / absmax)`, the
//! final partial block by `x / absmax`; an all-zero full block keeps absmax 0 and gets code
//! "0.0" everywhere; an all-zero partial block stores absmax 1e-38 (bitsandbytes clamps it);
//! the code is the nearest table entry with ties to the lower value. Dequantization is one f32
//! multiply `code[nibble] * absmax` rounded to the output dtype, as on every bnb backend.

use crate::codebook::{Codebook4, QuantType4};
use crate::double_quant;
use crate::dtype::{numel, Float, SimdLoad};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use crate::dtype::DType;
use crate::error::{bail, Error, ErrorKind, Result};
use crate::quant_state::{Absmax, QuantState};
use crate::{Kernel, BLOCKSIZES_4BIT};

/// bitsandbytes clamps a zero absmax to this before dividing (`absmax.clamp(min=1e-38)`).
const MIN_ABSMAX: f32 = 1e-38;

#[derive(Debug, Clone)]
pub struct Quantize4Options {
    pub quant_type: QuantType4,
    pub blocksize: usize,
    /// Double quantization of the absmax (bitsandbytes' `compress_statistics`).
    pub compress_statistics: bool,
    /// Accept NaN / Inf and quantize them as bitsandbytes would (comparisons with NaN are
    /// false). Off by default: non-finite input is an error naming the first bad index.
    pub allow_non_finite: bool,
}

impl Default for Quantize4Options {
    fn default() -> Self {
        Quantize4Options { quant_type: QuantType4::Nf4, blocksize: 64, compress_statistics: false, allow_non_finite: false }
    }
}

pub fn check_blocksize(blocksize: usize) -> Result<()> {
    if !BLOCKSIZES_4BIT.contains(&blocksize) {
        bail!(UnsupportedBlocksize, "blocksize {blocksize} is not supported (use one of {BLOCKSIZES_4BIT:?})");
    }
    Ok(())
}

/// Index of the first NaN or Inf, if any.
pub fn first_non_finite<T: Float>(x: &[T]) -> Option<usize> {
    x.iter().position(|v| !v.to_f32().is_finite())
}

/// max |x|; NaN if any element is NaN.
pub fn absmax_scalar<T: Float>(x: &[T]) -> f32 {
    let mut m = 0f32;
    for v in x {
        let a = v.to_f32().abs();
        if a > m || a.is_nan() {
            m = a;
        }
    }
    m
}

fn absmax<T: SimdLoad>(x: &[T], kernel: Kernel) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        return crate::simd::wasm128::absmax(x);
    }
    let _ = kernel;
    absmax_scalar(x)
}

/// Scalar reference: packs codes of `block` into `out` ((len + 1) / 2 bytes). An odd final
/// element is paired with the code of 0.0 (bitsandbytes pads the scaled tensor with 0).
pub fn encode_block_scalar<T: Float>(block: &[T], scale: f32, divide: bool, cb: &Codebook4, out: &mut [u8]) {
    let pad = cb.encode(0.0);
    let q = |x: T| {
        let x = x.to_f32();
        cb.encode(if divide { x / scale } else { x * scale })
    };
    for (byte, pair) in out.iter_mut().zip(block.chunks(2)) {
        let hi = q(pair[0]);
        let lo = if pair.len() == 2 { q(pair[1]) } else { pad };
        *byte = (hi << 4) | lo;
    }
}

fn encode_block<T: SimdLoad>(block: &[T], scale: f32, divide: bool, cb: &Codebook4, out: &mut [u8], kernel: Kernel) {
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        done = crate::simd::wasm128::encode_block(block, scale, divide, cb, out);
    }
    let _ = kernel;
    encode_block_scalar(&block[done..], scale, divide, cb, &mut out[done / 2..]);
}

/// Quantize a flattened tensor to packed 4-bit codes and per-block absmax (no double quant).
pub fn quantize_packed<T: SimdLoad>(input: &[T], quant_type: QuantType4, blocksize: usize, allow_non_finite: bool, kernel: Kernel) -> Result<(Vec<u8>, Vec<f32>)> {
    let mut packed = vec![0u8; input.len().div_ceil(2)];
    let mut absmax = vec![0f32; input.len().div_ceil(blocksize.max(1))];
    quantize_packed_into(input, quant_type, blocksize, allow_non_finite, kernel, &mut packed, &mut absmax)?;
    Ok((packed, absmax))
}

/// As [`quantize_packed`], writing into caller-owned buffers of exactly
/// `(n + 1) / 2` bytes and `ceil(n / blocksize)` floats.
pub fn quantize_packed_into<T: SimdLoad>(
    input: &[T],
    quant_type: QuantType4,
    blocksize: usize,
    allow_non_finite: bool,
    kernel: Kernel,
    packed: &mut [u8],
    absmax_out: &mut [f32],
) -> Result<()> {
    check_blocksize(blocksize)?;
    if input.is_empty() {
        bail!(EmptyTensor, "cannot quantize an empty tensor");
    }
    let n = input.len();
    if packed.len() != n.div_ceil(2) || absmax_out.len() != n.div_ceil(blocksize) {
        bail!(LengthMismatch, "output buffers hold {} bytes and {} absmax but {n} elements need {} and {}", packed.len(), absmax_out.len(), n.div_ceil(2), n.div_ceil(blocksize));
    }
    let cb = Codebook4::get(quant_type);
    // f16 input, SIMD: full blocks with finite values take the fast path (same bits); the
    // others fall through to the general code below.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let fast_f16 = (kernel.use_simd() && T::DTYPE == DType::F16).then(|| crate::simd::wasm128::EncoderF16::new(cb));
    // blocks [0, fast_done) are finished by the fast path; it resumes at fast_next
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (mut fast_done, mut fast_next) = (0usize, 0usize);
    for (b, block) in input.chunks(blocksize).enumerate() {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if let Some(enc) = &fast_f16 {
            let full = n / blocksize;
            if b == fast_next && b < full {
                // SAFETY: T is f16 here, a #[repr(transparent)] u16.
                let bits = unsafe { core::slice::from_raw_parts(input.as_ptr().add(b * blocksize) as *const u16, (full - b) * blocksize) };
                let done = crate::simd::wasm128::quantize_blocks_f16(bits, blocksize, enc, &mut packed[b * blocksize / 2..full * blocksize / 2], &mut absmax_out[b..full]);
                // the block after them (if any) holds Inf or NaN: the code below handles it
                (fast_done, fast_next) = (b + done, b + done + 1);
            }
            if b < fast_done {
                continue;
            }
        }
        let amax = absmax(block, kernel);
        if !amax.is_finite() && !allow_non_finite {
            let i = first_non_finite(block).unwrap_or(0) + b * blocksize;
            return Err(Error::new(
                ErrorKind::NonFinite,
                format!("input element {i} is {} (NaN/Inf cannot be quantized; clean the tensor or set allowNonFinite to quantize it as bitsandbytes does)", block[i - b * blocksize].to_f32()),
            )
            .with_index(i));
        }
        let out = &mut packed[b * blocksize / 2..(b * blocksize + block.len()).div_ceil(2)];
        if block.len() == blocksize {
            absmax_out[b] = amax;
            let recip = 1.0 / amax.max(MIN_ABSMAX);
            encode_block(block, recip, false, cb, out, kernel);
        } else {
            let am = amax.max(MIN_ABSMAX);
            absmax_out[b] = am;
            encode_block(block, am, true, cb, out, kernel);
        }
    }
    Ok(())
}

/// `bitsandbytes.functional.quantize_4bit`: packed codes plus the QuantState.
pub fn quantize_4bit<T: SimdLoad>(input: &[T], shape: &[usize], opts: &Quantize4Options, kernel: Kernel) -> Result<(Vec<u8>, QuantState)> {
    let n = numel(shape)?;
    if n != input.len() {
        bail!(LengthMismatch, "shape {shape:?} has {n} elements but the data has {}", input.len());
    }
    let (packed, absmax) = quantize_packed(input, opts.quant_type, opts.blocksize, opts.allow_non_finite, kernel)?;
    let absmax = if opts.compress_statistics { Absmax::Nested(double_quant::compress(&absmax)?) } else { Absmax::Plain(absmax) };
    let state = QuantState {
        quant_type: opts.quant_type,
        blocksize: opts.blocksize,
        dtype: T::DTYPE,
        shape: shape.to_vec(),
        code: Codebook4::get(opts.quant_type).quant_map,
        absmax,
    };
    Ok((packed, state))
}

/// Scalar reference: out[k] = round(code[nibble(k)] * absmax[k / blocksize]).
pub fn decode_scalar<O: Float>(packed: &[u8], absmax: &[f32], blocksize: usize, values: &[f32; 16], out: &mut [O]) {
    for (k, o) in out.iter_mut().enumerate() {
        let byte = packed[k >> 1];
        let nib = if k & 1 == 0 { byte >> 4 } else { byte & 0x0f };
        *o = O::from_f32(values[nib as usize] * absmax[k / blocksize]);
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn decode_block_simd<O: Float>(packed: &[u8], amax: f32, values: &[f32; 16], out: &mut [O]) -> usize {
    use crate::simd::wasm128;
    match O::DTYPE {
        DType::F32 => {
            let table = values.map(|c| c * amax);
            // SAFETY: O is f32 here.
            let out = unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, out.len()) };
            wasm128::decode_f32(packed, &table, out)
        }
        DType::F16 | DType::BF16 => {
            let table = values.map(|c| O::from_f32(c * amax)).map(|v| {
                // SAFETY: f16 and bf16 are #[repr(transparent)] wrappers of u16.
                unsafe { core::mem::transmute_copy::<O, u16>(&v) }
            });
            // SAFETY: same layout as u16.
            let out = unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u16, out.len()) };
            wasm128::decode_u16(packed, &table, out)
        }
        _ => 0,
    }
}

/// Expand packed codes with an already materialized f32 absmax.
pub fn decode<O: Float>(packed: &[u8], absmax: &[f32], blocksize: usize, quant_type: QuantType4, out: &mut [O], kernel: Kernel) -> Result<()> {
    check_blocksize(blocksize)?;
    let n = out.len();
    if packed.len() < n.div_ceil(2) {
        bail!(LengthMismatch, "packed data has {} bytes but {n} elements need {}", packed.len(), n.div_ceil(2));
    }
    if absmax.len() != n.div_ceil(blocksize) {
        bail!(InconsistentState, "absmax has {} entries but {n} elements in blocks of {blocksize} need {}", absmax.len(), n.div_ceil(blocksize));
    }
    let values = &Codebook4::get(quant_type).values;
    if !kernel.use_simd() {
        decode_scalar(packed, absmax, blocksize, values, out);
        return Ok(());
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let full = if O::DTYPE == DType::F16 {
        // SAFETY: O is f16 here, a #[repr(transparent)] u16.
        let out16 = unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u16, n) };
        crate::simd::wasm128::decode_f16(packed, absmax, blocksize, values, out16) / blocksize
    } else {
        0
    };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    for (b, block) in out.chunks_mut(blocksize).enumerate().skip(full) {
        let bytes = &packed[b * blocksize / 2..];
        let done = decode_block_simd(bytes, absmax[b], values, block);
        let rest = &mut block[done..];
        decode_scalar(&bytes[done / 2..], &[absmax[b]], usize::MAX, values, rest);
    }
    Ok(())
}

/// `bitsandbytes.functional.dequantize_4bit` into `out` (its dtype is the output dtype).
pub fn dequantize_4bit<O: Float>(packed: &[u8], state: &QuantState, out: &mut [O], kernel: Kernel) -> Result<()> {
    let n = state.validate()?;
    if out.len() != n {
        bail!(LengthMismatch, "output has {} elements but the quant state's shape {:?} has {n}", out.len(), state.shape);
    }
    if packed.len() != n.div_ceil(2) {
        bail!(LengthMismatch, "packed data has {} bytes but shape {:?} needs {} (two 4-bit codes per byte)", packed.len(), state.shape, n.div_ceil(2));
    }
    let absmax = state.absmax_f32()?;
    decode(packed, &absmax, state.blocksize, state.quant_type, out, kernel)
}

/// Convenience: dequantize to a new Vec.
pub fn dequantize_4bit_vec<O: Float>(packed: &[u8], state: &QuantState, kernel: Kernel) -> Result<Vec<O>> {
    let n = state.validate()?;
    // Check the data before allocating an output sized from the state.
    if packed.len() != n.div_ceil(2) {
        bail!(LengthMismatch, "packed data has {} bytes but shape {:?} needs {} (two 4-bit codes per byte)", packed.len(), state.shape, n.div_ceil(2));
    }
    let mut out = vec![O::default(); n];
    dequantize_4bit(packed, state, &mut out, kernel)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checkable_example() {
        // spec §2.6
        let x = [0.5f32, -1.0, 0.25, 0.0, 0.1, -0.05, 0.001, 0.9];
        let (packed, st) = quantize_4bit(&x, &[8], &Quantize4Options::default(), Kernel::Scalar).unwrap();
        assert_eq!(packed, [0xC0, 0xA7, 0x86, 0x7F]);
        assert_eq!(st.absmax, Absmax::Plain(vec![1.0]));
        let y: Vec<f32> = dequantize_4bit_vec(&packed, &st, Kernel::Scalar).unwrap();
        let expect = [0.44070983f32, -1.0, 0.2461123, 0.0, 0.0795803, -0.09105004, 0.0, 1.0];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-7);
        }
    }

    #[test]
    fn rejects_bad_input_with_kinds() {
        let o = Quantize4Options::default();
        let e = quantize_4bit(&[1.0f32, f32::NAN], &[2], &o, Kernel::Scalar).unwrap_err();
        assert_eq!((e.kind, e.index), (ErrorKind::NonFinite, Some(1)));
        let e = quantize_4bit::<f32>(&[], &[0], &o, Kernel::Scalar).unwrap_err();
        assert_eq!(e.kind, ErrorKind::EmptyTensor);
        let e = quantize_4bit(&[1.0f32; 3], &[4], &o, Kernel::Scalar).unwrap_err();
        assert_eq!(e.kind, ErrorKind::LengthMismatch);
        let o2 = Quantize4Options { blocksize: 48, ..o };
        assert_eq!(quantize_4bit(&[1.0f32; 4], &[4], &o2, Kernel::Scalar).unwrap_err().kind, ErrorKind::UnsupportedBlocksize);
    }
}
