//! 8-bit block-wise quantization with a 256-entry code (bitsandbytes `quantize_blockwise` /
//! `dequantize_blockwise`, spec §4.4–4.5).
//!
//! Quantization: absmax per block, y = x * (1 / absmax), code index = the nearest entry of the
//! sorted code (ties to the lower index, as bitsandbytes' default backend and its CPU builds up
//! to 0.49 do). An all-zero block gives index 0 and absmax 0, as both the CUDA kernel and the
//! CPU kernel do. bitsandbytes 0.50's CPU kernel instead approximates the search with a
//! 65 536-bin lookup table; where that approximation picks another index we do not follow it
//! (the golden-vector tests count those codes).
//! Dequantization: one f32 multiply `code[q] * absmax`, rounded to the output dtype.

use crate::blockwise4::{absmax_scalar, first_non_finite};
use crate::codebook::{encode_sorted, midpoints_256};
use crate::dtype::Float;
use crate::error::{bail, Error, ErrorKind, Result};
use crate::BLOCKSIZES_8BIT;

pub fn check_blocksize(blocksize: usize) -> Result<()> {
    if !BLOCKSIZES_8BIT.contains(&blocksize) {
        bail!(UnsupportedBlocksize, "blocksize {blocksize} is not supported for 8-bit block-wise quantization (use one of {BLOCKSIZES_8BIT:?})");
    }
    Ok(())
}

pub fn check_code(code: &[f32]) -> Result<&[f32; 256]> {
    let code: &[f32; 256] = match code.try_into() {
        Ok(c) => c,
        Err(_) => bail!(InvalidArgument, "an 8-bit code must have 256 entries, got {}", code.len()),
    };
    if !code.windows(2).all(|w| w[0] < w[1]) {
        bail!(InvalidArgument, "the 8-bit code must be sorted strictly ascending (bitsandbytes' dynamic map is)");
    }
    Ok(code)
}

/// Quantize with a sorted 256-entry code. Returns (indices, absmax per block).
/// `blocksize` is not restricted here because double quantization uses 256 internally;
/// public callers check it with [`check_blocksize`].
pub fn quantize_blockwise<T: Float>(input: &[T], code: &[f32], blocksize: usize, allow_non_finite: bool) -> Result<(Vec<u8>, Vec<f32>)> {
    let code = check_code(code)?;
    if input.is_empty() {
        bail!(EmptyTensor, "cannot quantize an empty tensor");
    }
    if blocksize == 0 {
        bail!(UnsupportedBlocksize, "blocksize must be positive");
    }
    let mids = midpoints_256(code);
    let mut q = Vec::with_capacity(input.len());
    let mut absmax = Vec::with_capacity(input.len().div_ceil(blocksize));
    for (b, block) in input.chunks(blocksize).enumerate() {
        let amax = absmax_scalar(block);
        if !amax.is_finite() && !allow_non_finite {
            let i = first_non_finite(block).unwrap_or(0) + b * blocksize;
            return Err(Error::new(ErrorKind::NonFinite, format!("input element {i} is not finite (NaN/Inf cannot be quantized)")).with_index(i));
        }
        absmax.push(amax);
        if amax == 0.0 {
            q.extend(std::iter::repeat_n(0u8, block.len()));
            continue;
        }
        let recip = 1.0 / amax;
        q.extend(block.iter().map(|v| encode_sorted(&mids, v.to_f32() * recip)));
    }
    Ok((q, absmax))
}

/// out[k] = round(code[q[k]] * absmax[k / blocksize]).
pub fn dequantize_blockwise<O: Float>(q: &[u8], absmax: &[f32], code: &[f32], blocksize: usize, out: &mut [O]) -> Result<()> {
    let code: &[f32; 256] = match code.try_into() {
        Ok(c) => c,
        Err(_) => bail!(InvalidArgument, "an 8-bit code must have 256 entries, got {}", code.len()),
    };
    if blocksize == 0 {
        bail!(UnsupportedBlocksize, "blocksize must be positive");
    }
    if out.len() != q.len() {
        bail!(LengthMismatch, "output has {} elements but there are {} codes", out.len(), q.len());
    }
    if absmax.len() != q.len().div_ceil(blocksize) {
        bail!(InconsistentState, "absmax has {} entries but {} codes in blocks of {blocksize} need {}", absmax.len(), q.len(), q.len().div_ceil(blocksize));
    }
    for (b, (qb, ob)) in q.chunks(blocksize).zip(out.chunks_mut(blocksize)).enumerate() {
        let a = absmax[b];
        for (o, &c) in ob.iter_mut().zip(qb) {
            *o = O::from_f32(code[c as usize] * a);
        }
    }
    Ok(())
}
