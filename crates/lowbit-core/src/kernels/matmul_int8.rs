//! LLM.int8() linear layer forward (`Linear8bitLt` inference, has_fp16_weights=False) as
//! bitsandbytes' default (CPU) backend computes it (spec ../shared/spec/bnb-format.md §6.2):
//!
//! 1. A is cast to f16 (bitsandbytes does this for every input dtype).
//! 2. `CA, SCA, outlier_cols = int8_vectorwise_quant(A, threshold)` ([`crate::int8::vectorwise_quant`]).
//! 3. `acc = CA · CBᵀ` with exact i32 accumulation (bnb's CPU fallback without AVX-512 runs an
//!    f32 matmul cast to i32, inexact once partial sums pass 2^24; torch._int_mm is exact).
//! 4. `out = f32(acc) * (SCA[i] * SCB[j]) * 6.200124e-05 (+ bias[j])`, in f32. 6.200124e-05 is
//!    bitsandbytes' CPU constant, a typo for 1/127² = 6.2000124e-05 (1.8e-5 relative too large,
//!    spec §6.2); we keep it to match bitsandbytes' CPU outputs. CUDA uses f32(1/16129).
//! 5. Outlier columns c (threshold > 0): `out[i, j] += Σ_c A16[i, c] * subB[j, c]` with
//!    `subB = f16((CB[j, c] * SCB[j]) * f32(1/127))` as bitsandbytes rounds it; bitsandbytes does
//!    this addmm in f16, we accumulate in f32 (more accurate; outputs can differ in f16 ulps).
//!
//! The output stays f32; bitsandbytes returns f16 then casts to the input dtype — callers that
//! want those roundings apply them.
//!
//! Step 3 is the only hot loop. The SIMD128 kernel widens both int8 operands to i16 and sums
//! pairs with `i32x4.dot_i16x8_s` into i32 lanes: exact integer arithmetic (|Σ| <= 127² K fits,
//! see [`MAX_K_INT8`]), so every `acc` — and with it the output — has the same bits as the
//! scalar kernel. GEMV (m = 1) widens x once and each weight row on the fly; m >= 2 widens each
//! weight row once and dots it with 4 activation rows at a time.

use super::{check_len, mul};
use crate::dtype::f16;
use crate::error::{bail, Result};
use crate::int8::vectorwise_quant;
use crate::Kernel;

/// bitsandbytes' default-backend `int8_mm_dequant` constant (see the module docs).
pub const BNB_CPU_MM_DEQUANT_SCALE: f32 = 6.200124e-05;
/// f32(1/127), bitsandbytes' dequantization constant (spec §6.1).
#[allow(clippy::excessive_precision)]
pub const INV127: f32 = 7.874015718698502e-3;

/// Borrowed LLM.int8 weight: CB `[n, k]` int8 row-major, SCB `[n]`.
#[derive(Debug, Clone, Copy)]
pub struct WeightInt8<'a> {
    pub cb: &'a [i8],
    pub scb: &'a [f32],
    pub n: usize,
    pub k: usize,
}

impl<'a> WeightInt8<'a> {
    pub fn new(cb: &'a [i8], scb: &'a [f32], n: usize, k: usize) -> Result<Self> {
        if n == 0 || k == 0 {
            bail!(EmptyTensor, "int8 weight has shape [{n}, {k}]");
        }
        check_len("CB", cb.len(), mul(n, k, "int8 weight")?)?;
        check_len("SCB", scb.len(), n)?;
        check_k(k)?;
        Ok(WeightInt8 { cb, scb, n, k })
    }
}

/// Largest K whose i32 accumulation cannot overflow (127² K <= i32::MAX).
pub const MAX_K_INT8: usize = i32::MAX as usize / (127 * 127);

fn check_k(k: usize) -> Result<()> {
    if k > MAX_K_INT8 {
        bail!(InvalidArgument, "K = {k} in-features could overflow the i32 accumulator (at most {MAX_K_INT8})");
    }
    Ok(())
}

/// `out[m, n]` = LLM.int8 forward of activations `a[m, k]` with `threshold`
/// (`llm_int8_threshold`, 0 = no outlier decomposition) and optional bias.
#[allow(clippy::too_many_arguments)]
pub fn matmul_int8(a: &[f32], m: usize, w: &WeightInt8, threshold: f32, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    let WeightInt8 { cb, scb, n, k } = *w;
    check_len("CB", cb.len(), mul(n, k, "int8 weight")?)?;
    check_len("SCB", scb.len(), n)?;
    check_k(k)?;
    if m == 0 {
        bail!(EmptyTensor, "matmul with 0 rows of activations");
    }
    check_len("activations", a.len(), mul(m, k, "activations")?)?;
    check_len("output", out.len(), mul(m, n, "output")?)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), n)?;
    }
    let a16: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
    let q = vectorwise_quant(&a16, &[m, k], threshold)?;
    let dequant = |i: usize, j: usize, acc: i32| {
        let mut v = acc as f32 * (q.scb[i] * scb[j]) * BNB_CPU_MM_DEQUANT_SCALE;
        if let Some(b) = bias {
            v += b[j];
        }
        v
    };
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        simd::dots(&q.cb, m, cb, n, k, |i, j, acc| out[i * n + j] = dequant(i, j, acc));
    } else {
        scalar_dots(&q.cb, m, cb, n, k, |i, j, acc| out[i * n + j] = dequant(i, j, acc));
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let _ = kernel;
        scalar_dots(&q.cb, m, cb, n, k, |i, j, acc| out[i * n + j] = dequant(i, j, acc));
    }
    if let Some(cols) = q.outlier_cols.as_ref().filter(|c| !c.is_empty()) {
        // subB[j, c] rounded to f16 as bitsandbytes does, kept as f32
        let mut sub_b = vec![0f32; mul(n, cols.len(), "outlier weights")?];
        for j in 0..n {
            for (t, &c) in cols.iter().enumerate() {
                sub_b[j * cols.len() + t] = f16::from_f32(cb[j * k + c as usize] as f32 * scb[j] * INV127).to_f32();
            }
        }
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f32;
                for (t, &c) in cols.iter().enumerate() {
                    s += a16[i * k + c as usize].to_f32() * sub_b[j * cols.len() + t];
                }
                out[i * n + j] += s;
            }
        }
    }
    Ok(())
}

/// `emit(i, j, Σ_k ca[i, k] · cb[j, k])` for every output, exact in i32.
fn scalar_dots(ca: &[i8], m: usize, cb: &[i8], n: usize, k: usize, mut emit: impl FnMut(usize, usize, i32)) {
    for i in 0..m {
        let ca = &ca[i * k..(i + 1) * k];
        for j in 0..n {
            let mut acc = 0i32;
            for (x, y) in ca.iter().zip(&cb[j * k..(j + 1) * k]) {
                acc += *x as i32 * *y as i32; // |acc| <= 127² k <= i32::MAX (check_k)
            }
            emit(i, j, acc);
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    #[inline(always)]
    fn hsum(v: v128) -> i32 {
        i32x4_extract_lane::<0>(v).wrapping_add(i32x4_extract_lane::<1>(v)).wrapping_add(i32x4_extract_lane::<2>(v).wrapping_add(i32x4_extract_lane::<3>(v)))
    }

    fn widen(src: &[i8]) -> Vec<i16> {
        src.iter().map(|&v| v as i16).collect()
    }

    /// Same contract as `scalar_dots`. Every partial sum is a sum of products of int8 values
    /// with at most k terms, so |partial| <= 127² k <= i32::MAX: no lane overflows and the
    /// integer result does not depend on the order (the wrapping adds never wrap).
    pub fn dots(ca: &[i8], m: usize, cb: &[i8], n: usize, k: usize, mut emit: impl FnMut(usize, usize, i32)) {
        assert!(ca.len() == m * k && cb.len() == n * k);
        let k16 = k - k % 16;
        let tail = |x: &[i8], wr: &[i8]| x[k16..].iter().zip(&wr[k16..]).map(|(a, b)| *a as i32 * *b as i32).sum::<i32>();
        if m == 1 {
            let x16 = widen(ca);
            for j in 0..n {
                let wr = &cb[j * k..(j + 1) * k];
                let mut acc = [i32x4_splat(0); 2];
                // SAFETY: loads read wr[c .. c + 16] and x16[c .. c + 16] with c + 16 <= k16 <= k.
                unsafe {
                    for c in (0..k16).step_by(16) {
                        let wb = v128_load(wr.as_ptr().add(c) as *const v128);
                        let xq = x16.as_ptr().add(c) as *const v128;
                        acc[0] = i32x4_add(acc[0], i32x4_dot_i16x8(i16x8_extend_low_i8x16(wb), v128_load(xq)));
                        acc[1] = i32x4_add(acc[1], i32x4_dot_i16x8(i16x8_extend_high_i8x16(wb), v128_load(xq.add(1))));
                    }
                }
                emit(0, j, hsum(i32x4_add(acc[0], acc[1])) + tail(ca, wr));
            }
            return;
        }
        let x16 = widen(ca);
        let mut w16 = vec![0i16; k];
        for j in 0..n {
            let wr = &cb[j * k..(j + 1) * k];
            for (d, s) in w16.iter_mut().zip(wr) {
                *d = *s as i16;
            }
            let mut i0 = 0;
            while i0 < m {
                let r = (m - i0).min(4);
                let xs = &x16[i0 * k..(i0 + r) * k];
                let acc = match r {
                    4 => tile::<4>(xs, &w16, k16),
                    3 => pad(tile::<3>(xs, &w16, k16)),
                    2 => pad(tile::<2>(xs, &w16, k16)),
                    _ => pad(tile::<1>(xs, &w16, k16)),
                };
                for (q, a) in acc.iter().take(r).enumerate() {
                    let i = i0 + q;
                    emit(i, j, a + tail(&ca[i * k..(i + 1) * k], wr));
                }
                i0 += r;
            }
        }
    }

    fn pad<const R: usize>(a: [i32; R]) -> [i32; 4] {
        core::array::from_fn(|q| if q < R { a[q] } else { 0 })
    }

    /// Dot products of R widened activation rows (`xs`, R·k values) with one widened weight
    /// row, over the first k16 elements.
    #[inline(always)]
    fn tile<const R: usize>(xs: &[i16], w16: &[i16], k16: usize) -> [i32; R] {
        let k = w16.len();
        assert!(xs.len() == R * k && k16 <= k && k16.is_multiple_of(8));
        let mut acc = [i32x4_splat(0); R];
        // SAFETY: loads read w16[c .. c + 8] and xs[r * k + c .. + 8] with c + 8 <= k16 <= k.
        unsafe {
            for c in (0..k16).step_by(8) {
                let wv = v128_load(w16.as_ptr().add(c) as *const v128);
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = i32x4_add(*a, i32x4_dot_i16x8(wv, v128_load(xs.as_ptr().add(r * k + c) as *const v128)));
                }
            }
        }
        acc.map(hsum)
    }
}
