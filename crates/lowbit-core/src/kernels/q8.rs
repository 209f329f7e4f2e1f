//! Activations quantized to int8 for the integer-dot linear kernels ([`super::matmul4_q8`]):
//! each row of `x [m, k]` in blocks of [`QK`] = 32 values (llama.cpp's Q8_0 shape), one f32
//! scale per block, `d = max|x| / 127`, `q = round_ties_even(x · 127 / max|x|)` in -127..=127.
//! A row is quantized once per matmul and read by every weight row (and, through
//! [`Q8Activations`], by every layer that takes the same input).
//!
//! Error: |x − d·q| <= d / 2 for every element (plus one f32 rounding of x · 127 / max|x|).
//! Non-finite activations give a NaN scale for their block, so NaN reaches the output as it
//! would through the exact kernels.
//!
//! Besides the element-order codes, the SIMD kernels get their own copy of each 32-block in
//! nibble order: the 16 even elements first, then the 16 odd ones, because a packed byte holds
//! element 2j in its high nibble and 2j + 1 in its low one (so no nibble interleave is needed).
//! The SIMD128 build keeps that copy widened to i16 (for `i32x4.dot_i16x8_s`); the relaxed build
//! keeps it as i8 (`i32x4.relaxed_dot_i8x16_i7x16_add_s` takes bytes).

use super::{check_len, mul};
use crate::error::{bail, Result};

/// Values per activation block.
pub const QK: usize = 32;

/// `x [m, k]` quantized per block of 32 (k a multiple of 32).
#[derive(Debug, Clone)]
pub struct Q8Activations {
    pub m: usize,
    pub k: usize,
    /// Codes in element order, `[m, k]`.
    pub q: Vec<i8>,
    /// One scale per block, `[m, k / 32]`.
    pub d: Vec<f32>,
    /// Codes in nibble order (see the module docs), `[m, k]`: i16 on SIMD128, i8 on relaxed.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(target_feature = "relaxed-simd")))]
    pub(crate) nibble_order: Vec<i16>,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd"))]
    pub(crate) nibble_order: Vec<i8>,
}

impl Q8Activations {
    /// Quantizes `x [m, k]`; `k` must be a positive multiple of 32.
    pub fn new(x: &[f32], m: usize, k: usize) -> Result<Q8Activations> {
        if m == 0 || k == 0 {
            bail!(EmptyTensor, "activations have shape [{m}, {k}]");
        }
        if !k.is_multiple_of(QK) {
            bail!(InvalidArgument, "int8 activations need a row length that is a multiple of {QK}, got {k}");
        }
        check_len("activations x", x.len(), mul(m, k, "activations")?)?;
        let mut q = vec![0i8; x.len()];
        let mut d = vec![0f32; x.len() / QK];
        for ((xb, qb), db) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).zip(d.iter_mut()) {
            *db = quantize_block(xb, qb);
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let nibble_order = {
            let mut v = vec![0; x.len()];
            for (dst, src) in v.chunks_exact_mut(QK).zip(q.chunks_exact(QK)) {
                for i in 0..QK / 2 {
                    dst[i] = src[2 * i].into();
                    dst[QK / 2 + i] = src[2 * i + 1].into();
                }
            }
            v
        };
        Ok(Q8Activations {
            m,
            k,
            q,
            d,
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            nibble_order,
        })
    }

    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.k / QK
    }

    /// The dequantized activations `d · q` (what the integer kernels multiply by).
    pub fn dequantize(&self) -> Vec<f32> {
        self.q.iter().enumerate().map(|(i, &q)| self.d[i / QK] * q as f32).collect()
    }
}

/// Quantizes one block of 32 into `q`; returns its scale.
fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    let mut amax = 0f32;
    for &v in x {
        let a = v.abs();
        if !(a <= amax) {
            amax = a; // NaN sticks: NaN <= anything is false
        }
    }
    if !amax.is_finite() {
        q.fill(0);
        return f32::NAN;
    }
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let id = 127.0 / amax;
    for (qi, &v) in q.iter_mut().zip(x) {
        // |v · id| <= 127 up to one rounding; the clamp keeps a 127.00001 in range
        *qi = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    amax / 127.0
}
