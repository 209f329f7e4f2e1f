//! Mixed-precision linear layer with bitsandbytes 4-bit weights (NF4 / FP4 / INT4):
//! `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])`, W `[N, K]` row-major (nn.Linear layout).
//!
//! The weight is stored as bitsandbytes stores it (spec §1–3): the FLATTENED tensor in blocks of
//! `blocksize` over the flat index (a block spans rows when K % blocksize != 0), packed
//! nibbles with element 2j in the high nibble, one f32 absmax per block. Double-quantized
//! absmax is rebuilt once at load time (`QuantState::absmax_f32`); the kernels take f32 absmax.
//!
//! Each weight is dequantized on the fly exactly as `dequantize_4bit` to f32 does,
//! `w = values[nibble] * absmax` (one f32 multiply), multiplied by the f32 activation and summed
//! in f32. The scalar kernel sums in k order and is bit-identical to "dequantize to f32, then a
//! naive f32 matmul" ([`matmul4_reference`]). The SIMD128 kernel builds, per block, a 16-entry
//! table of `values * absmax`, looks the nibbles up with byte swizzles and accumulates in
//! f32x4 lanes: same products, other summation order (bound in [`super`]).
//!
//! Activations are f32; for f16 / bf16 compute dtypes the caller rounds x to that dtype first
//! (torch would also round the dequantized weight to the compute dtype: bitsandbytes'
//! dequant + F.linear; we keep the f32 weight, which is closer to the fused CUDA GEMV).

use super::{check_len, mul};
use crate::blockwise4::check_blocksize;
use crate::codebook::{Codebook4, QuantType4};
use crate::error::{bail, Result};
use crate::quant_state::QuantState;
use crate::Kernel;

/// A borrowed 4-bit weight `[n, k]` (out features, in features).
#[derive(Debug, Clone, Copy)]
pub struct Weight4<'a> {
    pub packed: &'a [u8],
    /// f32 absmax per block of the flattened weight (`ceil(n * k / blocksize)` entries).
    pub absmax: &'a [f32],
    pub quant_type: QuantType4,
    pub blocksize: usize,
    pub n: usize,
    pub k: usize,
}

impl<'a> Weight4<'a> {
    /// Validates the sizes against each other.
    pub fn new(packed: &'a [u8], absmax: &'a [f32], quant_type: QuantType4, blocksize: usize, n: usize, k: usize) -> Result<Self> {
        let w = Weight4 { packed, absmax, quant_type, blocksize, n, k };
        w.validate()?;
        Ok(w)
    }

    /// From a 2-D quant state (shape `[n, k]`) and its materialized f32 absmax.
    pub fn from_state(packed: &'a [u8], state: &QuantState, absmax: &'a [f32]) -> Result<Self> {
        state.validate()?;
        if state.shape.len() != 2 {
            bail!(InvalidArgument, "a linear weight must be 2-D [out, in], the quant state has shape {:?}", state.shape);
        }
        Weight4::new(packed, absmax, state.quant_type, state.blocksize, state.shape[0], state.shape[1])
    }

    pub fn validate(&self) -> Result<()> {
        check_blocksize(self.blocksize)?;
        if self.n == 0 || self.k == 0 {
            bail!(EmptyTensor, "weight has shape [{}, {}]", self.n, self.k);
        }
        let numel = mul(self.n, self.k, "4-bit weight")?;
        if self.packed.len() != numel.div_ceil(2) {
            bail!(LengthMismatch, "packed weight has {} bytes but [{}, {}] needs {}", self.packed.len(), self.n, self.k, numel.div_ceil(2));
        }
        if self.absmax.len() != numel.div_ceil(self.blocksize) {
            bail!(InconsistentState, "absmax has {} entries but {numel} elements in blocks of {} need {}", self.absmax.len(), self.blocksize, numel.div_ceil(self.blocksize));
        }
        Ok(())
    }

    #[inline(always)]
    fn weight(&self, values: &[f32; 16], flat: usize) -> f32 {
        let byte = self.packed[flat >> 1];
        let nib = if flat & 1 == 0 { byte >> 4 } else { byte & 0x0f };
        values[nib as usize] * self.absmax[flat / self.blocksize]
    }
}

fn check_io(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>, out: &[f32]) -> Result<()> {
    w.validate()?;
    if m == 0 {
        bail!(EmptyTensor, "matmul with 0 rows of activations");
    }
    check_len("activations x", x.len(), mul(m, w.k, "activations")?)?;
    check_len("output", out.len(), mul(m, w.n, "output")?)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), w.n)?;
    }
    Ok(())
}

/// Scalar reference: dequantize the whole weight to f32, then a naive f32 matmul summing in k
/// order, bias added last.
pub fn matmul4_reference(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    let mut out = vec![0f32; mul(m, w.n, "output")?];
    check_io(x, m, w, bias, &out)?;
    let mut wf = vec![0f32; w.n * w.k];
    crate::blockwise4::decode(w.packed, w.absmax, w.blocksize, w.quant_type, &mut wf, Kernel::Scalar)?;
    for i in 0..m {
        for j in 0..w.n {
            let mut acc = 0f32;
            for (a, b) in x[i * w.k..(i + 1) * w.k].iter().zip(&wf[j * w.k..(j + 1) * w.k]) {
                acc += a * b;
            }
            out[i * w.n + j] = acc + bias.map_or(0.0, |b| b[j]);
        }
    }
    Ok(out)
}

/// `out[m, n] = x[m, k] · W[n, k]ᵀ (+ bias)`: GEMV when m == 1, GEMM otherwise.
/// `Kernel::Scalar` gives exactly the bits of [`matmul4_reference`] without materializing W.
pub fn matmul4(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    check_io(x, m, w, bias, out)?;
    let values = &Codebook4::get(w.quant_type).values;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        simd::matmul4(x, m, w, values, out);
        add_bias(out, w.n, bias);
        return Ok(());
    }
    let _ = kernel;
    // Scalar: dequantize one weight row at a time, then dot it with every activation row.
    let mut row = vec![0f32; w.k];
    for j in 0..w.n {
        let base = j * w.k;
        for (kk, r) in row.iter_mut().enumerate() {
            *r = w.weight(values, base + kk);
        }
        for i in 0..m {
            let mut acc = 0f32;
            for (a, b) in x[i * w.k..(i + 1) * w.k].iter().zip(&row) {
                acc += a * b;
            }
            out[i * w.n + j] = acc;
        }
    }
    add_bias(out, w.n, bias);
    Ok(())
}

/// One token: `out[n] = x[k] · W[n, k]ᵀ (+ bias)`.
pub fn gemv4(x: &[f32], w: &Weight4, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    matmul4(x, 1, w, bias, out, kernel)
}

fn add_bias(out: &mut [f32], n: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in out.chunks_mut(n) {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::Weight4;
    use core::arch::wasm32::*;

    /// Byte planes of the 16 f32 values `values * amax` (plane p holds byte p of each entry).
    #[inline(always)]
    unsafe fn table(vals: &[v128; 4], amax: f32) -> [v128; 4] {
        let a = f32x4_splat(amax);
        let v = vals.map(|v| f32x4_mul(v, a));
        let t01a = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29>(v[0], v[1]);
        let t01b = i8x16_shuffle::<2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31>(v[0], v[1]);
        let t23a = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29>(v[2], v[3]);
        let t23b = i8x16_shuffle::<2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31>(v[2], v[3]);
        [
            i8x16_shuffle::<0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23>(t01a, t23a),
            i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31>(t01a, t23a),
            i8x16_shuffle::<0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23>(t01b, t23b),
            i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31>(t01b, t23b),
        ]
    }

    /// 16 weights (8 packed bytes at `p`) as four f32x4, elements in order.
    #[inline(always)]
    unsafe fn decode16(p: *const u8, planes: &[v128; 4]) -> [v128; 4] {
        let bytes = v128_load64_zero(p as *const u64);
        let hn = u8x16_shr(bytes, 4);
        let ln = v128_and(bytes, u8x16_splat(0x0f));
        let codes = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(hn, ln);
        let b = planes.map(|t| i8x16_swizzle(t, codes));
        let lo01 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b[0], b[1]);
        let hi01 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b[0], b[1]);
        let lo23 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b[2], b[3]);
        let hi23 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b[2], b[3]);
        [
            i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(lo01, lo23),
            i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(lo01, lo23),
            i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(hi01, hi23),
            i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(hi01, hi23),
        ]
    }

    #[inline(always)]
    fn hsum(v: v128) -> f32 {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v)) + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    }

    /// R activation rows (starting at `x[row0 * k]`) against weight row j.
    #[inline(always)]
    fn tile<const R: usize>(x: &[f32], row0: usize, w: &Weight4, values: &[f32; 16], vals: &[v128; 4], j: usize) -> [f32; R] {
        let k = w.k;
        let base = j * k;
        let end = base + k;
        let mut acc = [[f32x4_splat(0.0); 4]; R];
        let mut sacc = [0f32; R];
        let xs: [&[f32]; R] = core::array::from_fn(|r| &x[(row0 + r) * k..(row0 + r + 1) * k]);
        let mut f = base;
        while f < end {
            let b = f / w.blocksize;
            let e = end.min((b + 1) * w.blocksize);
            let amax = w.absmax[b];
            if f & 1 == 1 {
                let wv = w.weight(values, f);
                for r in 0..R {
                    sacc[r] += xs[r][f - base] * wv;
                }
                f += 1;
            }
            if f + 16 <= e {
                // SAFETY: f is even and f + 16 <= n * k, so the 8 bytes at f / 2 lie inside
                // `packed` (validated to hold ceil(n * k / 2) bytes); every x load reads 4
                // floats below x offset e - base <= k.
                unsafe {
                    let planes = table(vals, amax);
                    while f + 16 <= e {
                        let wv = decode16(w.packed.as_ptr().add(f / 2), &planes);
                        for r in 0..R {
                            let xp = xs[r].as_ptr().add(f - base);
                            for q in 0..4 {
                                acc[r][q] = f32x4_add(acc[r][q], f32x4_mul(wv[q], v128_load(xp.add(4 * q) as *const v128)));
                            }
                        }
                        f += 16;
                    }
                }
            }
            while f < e {
                let wv = w.weight(values, f);
                for r in 0..R {
                    sacc[r] += xs[r][f - base] * wv;
                }
                f += 1;
            }
        }
        core::array::from_fn(|r| {
            let a = &acc[r];
            hsum(f32x4_add(f32x4_add(a[0], a[1]), f32x4_add(a[2], a[3]))) + sacc[r]
        })
    }

    pub fn matmul4(x: &[f32], m: usize, w: &Weight4, values: &[f32; 16], out: &mut [f32]) {
        // SAFETY: values has 16 floats.
        let vals: [v128; 4] = core::array::from_fn(|q| unsafe { v128_load(values.as_ptr().add(4 * q) as *const v128) });
        let n = w.n;
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(4);
            for j in 0..n {
                match rows {
                    4 => {
                        let y = tile::<4>(x, i, w, values, &vals, j);
                        for r in 0..4 {
                            out[(i + r) * n + j] = y[r];
                        }
                    }
                    3 => {
                        let y = tile::<3>(x, i, w, values, &vals, j);
                        for r in 0..3 {
                            out[(i + r) * n + j] = y[r];
                        }
                    }
                    2 => {
                        let y = tile::<2>(x, i, w, values, &vals, j);
                        for r in 0..2 {
                            out[(i + r) * n + j] = y[r];
                        }
                    }
                    _ => out[i * n + j] = tile::<1>(x, i, w, values, &vals, j)[0],
                }
            }
            i += rows;
        }
    }
}
