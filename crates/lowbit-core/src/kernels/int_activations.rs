//! Activations quantized to integers for the integer-dot linear kernels ([`super::matmul4_int`]):
//! each row of `x [m, k]` in blocks of [`QK`] = 32 values (llama.cpp's Q8_0 shape), one f32
//! scale per block, `d = max|x| / L`, `q = round_ties_even(x · L / max|x|)` in -L..=L with
//! L = [`LEVELS`] = 8191 (14 bits, held in i16).
//!
//! Why 14 bits and not llama.cpp's 8: LLM hidden states have outlier channels, and one outlier
//! in a block of 32 leaves the other 31 values a handful of 8-bit levels. Measured on the
//! default model (README, accuracy): 8-bit activations moved NF4 perplexity by 1.2 % and top-1
//! agreement with the exact kernels to 95.8 %. wasm SIMD128's integer dot takes i16 anyway
//! (`i32x4.dot_i16x8_s`), so the extra bits cost nothing there; sums stay exact in i32 and below
//! 2^24 (8 products of at most 127 · 8191 per lane per chunk), so their f32 conversion is exact.
//! A row is quantized once per matmul and read by every weight row (and, through
//! [`IntActivations`], by every layer that takes the same input).
//!
//! Error: |x − d·q| <= d / 2 for every element (plus one f32 rounding of x · L / max|x|).
//! Non-finite activations give a NaN scale for their block, so NaN reaches the output as it
//! would through the exact kernels.
//!
//! Besides the element-order codes, the SIMD kernels get their own copy of each 32-block in
//! nibble order: the 16 even elements first, then the 16 odd ones, because a packed byte holds
//! element 2j in its high nibble and 2j + 1 in its low one (so no nibble interleave is needed).


use super::{check_len, mul};
use crate::error::{bail, Result};

/// Values per activation block.
pub const QK: usize = 32;
/// Largest code: codes are in -LEVELS..=LEVELS.
pub const LEVELS: f32 = 8191.0;

/// `x [m, k]` quantized per block of 32 (k a multiple of 32).
#[derive(Debug, Clone)]
pub struct IntActivations {
    pub m: usize,
    pub k: usize,
    /// Codes in element order, `[m, k]`.
    pub q: Vec<i16>,
    /// One scale per block, `[m, k / 32]`.
    pub d: Vec<f32>,
    /// Codes in nibble order (see the module docs), `[m, k]`.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub(crate) nibble_order: Vec<i16>,
}

impl IntActivations {
    /// Quantizes `x [m, k]`; `k` must be a positive multiple of 32.
    pub fn new(x: &[f32], m: usize, k: usize) -> Result<IntActivations> {
        if m == 0 || k == 0 {
            bail!(EmptyTensor, "activations have shape [{m}, {k}]");
        }
        if !k.is_multiple_of(QK) {
            bail!(InvalidArgument, "integer activations need a row length that is a multiple of {QK}, got {k}");
        }
        check_len("activations x", x.len(), mul(m, k, "activations")?)?;
        let mut q = vec![0i16; x.len()];
        let mut d = vec![0f32; x.len() / QK];
        for ((xb, qb), db) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).zip(d.iter_mut()) {
            *db = quantize_block(xb, qb);
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let nibble_order = {
            let mut v = vec![0; x.len()];
            for (dst, src) in v.chunks_exact_mut(QK).zip(q.chunks_exact(QK)) {
                for i in 0..QK / 2 {
                    dst[i] = src[2 * i];
                    dst[QK / 2 + i] = src[2 * i + 1];
                }
            }
            v
        };
        Ok(IntActivations {
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

/// The float-rounding bound of the integer kernels for one output of activation row `r`:
/// (C + 6)·2^-22·S with S = Σ_c |scale_c|·|d_c|·Σ_(k in c) |w_k·q_k| + |bias| (see
/// `matmul4_int::float_bound`); `chunk(c)` gives chunk c's weight scale and Σ |w_k·q_k|.
pub fn float_bound_of(xq: &IntActivations, r: usize, bias: f32, chunk: impl Fn(usize) -> (f64, f64)) -> f32 {
    let cpr = xq.k / QK;
    let mut s = bias.abs() as f64;
    for c in 0..cpr {
        let (scale, sum) = chunk(c);
        s += scale.abs() * (xq.d[r * cpr + c] as f64).abs() * sum;
    }
    ((cpr + 6) as f64 * 2f64.powi(-22) * s) as f32
}

/// The scalar reference loop of the integer kernels, `out[m, n]` for a weight `[n, k]` in blocks
/// of `bs` over its flattened elements: per chunk c of 32 the exact i32 sum `chunk(j, r·k + 32c)`
/// (weight row j against activation codes from that index), times d, summed per weight block,
/// times `block_scale(b)`, summed over the row in chunk order.
pub(crate) fn scalar_rows(xq: &IntActivations, n: usize, bs: usize, out: &mut [f32], block_scale: impl Fn(usize) -> f32, chunk: impl Fn(usize, usize, usize) -> i32) {
    let (k, cpr) = (xq.k, xq.k / QK);
    for r in 0..xq.m {
        for j in 0..n {
            let mut tot = 0f32;
            let mut c = 0;
            while c < cpr {
                let b = (j * k + c * QK) / bs;
                let c_end = cpr.min(((b + 1) * bs - j * k) / QK);
                let mut acc = 0f32;
                while c < c_end {
                    acc += chunk(j, c * QK, r * k + c * QK) as f32 * xq.d[r * cpr + c];
                    c += 1;
                }
                tot += acc * block_scale(b);
            }
            out[r * n + j] = tot;
        }
    }
}

/// Quantizes one block of 32 into `q`; returns its scale.
fn quantize_block(x: &[f32], q: &mut [i16]) -> f32 {
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
    let id = LEVELS / amax;
    for (qi, &v) in q.iter_mut().zip(x) {
        // |v · id| <= LEVELS up to one rounding; the clamp keeps a LEVELS + ulp in range
        *qi = (v * id).round_ties_even().clamp(-LEVELS, LEVELS) as i16;
    }
    amax / LEVELS
}
