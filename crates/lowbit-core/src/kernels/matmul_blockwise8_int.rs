//! Block-wise 8-bit linear layer with the int8 code (GGUF Q8_0) on integer activations: the fast
//! CPU path for 8-bit block-wise weights, llama.cpp's Q8_0 × Q8_0 with our 14-bit activations
//! ([`super::int_activations`]):
//!
//!   y[r, j] = Σ_b absmax_b · Σ_{c in b} d_{r,c} · I_{r,j,c},   I = Σ_{k in c} code_jk · q_{r,k}
//!
//! (`code` the int8 byte itself, I an exact i32 sum). Weights are exact here, so the only
//! rounding beyond f32 arithmetic is the activations': |Σ x·w − ours| <= Σ_k (d_c / 2)·|w_k|.
//! Needs the int8 code, K % 32 == 0 and blocks that are multiples of 32 ([`supports`]); other
//! 8-bit codes (bitsandbytes' dynamic map) are non-linear and take the exact kernel.
//!
//! SIMD128 (and the relaxed build, the same code): per 32 weights two 16-byte loads, four
//! widenings to i16 and four `i32x4.dot_i16x8_s` against the activation codes in element order;
//! one convert, multiply and add per chunk. Lane sums differ in order from the scalar
//! reference's chunk sums; the integers do not.

use super::matmul_blockwise8::Weight8;
use super::int_activations::{IntActivations, QK};
use super::{add_bias, check_len, mul};
use crate::error::{bail, Result};
use crate::Kernel;

/// Whether the integer path applies (the int8 code, K and the blocksize multiples of 32).
pub fn supports(w: &Weight8) -> bool {
    w.is_int8_code() && w.k().is_multiple_of(QK) && w.blocksize().is_multiple_of(QK)
}

fn check(xq: &IntActivations, w: &Weight8, bias: Option<&[f32]>, out: &[f32]) -> Result<()> {
    if !supports(w) {
        bail!(InvalidArgument, "the integer 8-bit kernel needs the int8 code and K, blocksize multiples of {QK} (K = {}, blocksize = {})", w.k(), w.blocksize());
    }
    if xq.k != w.k() {
        bail!(LengthMismatch, "activations have {} columns but the weight has {} inputs", xq.k, w.k());
    }
    check_len("output", out.len(), mul(xq.m, w.n(), "output")?)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), w.n())?;
    }
    Ok(())
}

/// `out[m, n] = x · Wᵀ (+ bias)` with x quantized here.
pub fn matmul_blockwise8_int(x: &[f32], m: usize, w: &Weight8, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    if m == 0 {
        bail!(EmptyTensor, "matmul with 0 rows of activations");
    }
    check_len("activations x", x.len(), mul(m, w.k(), "activations")?)?;
    let xq = IntActivations::new(x, m, w.k())?;
    matmul_blockwise8_int_quantized(&xq, w, bias, out, kernel)
}

/// The same with activations already quantized.
pub fn matmul_blockwise8_int_quantized(xq: &IntActivations, w: &Weight8, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    check(xq, w, bias, out)?;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        for r in 0..xq.m {
            simd::row(xq, r, w, out);
        }
        add_bias(out, w.n(), bias);
        return Ok(());
    }
    let _ = kernel;
    scalar(xq, w, out);
    add_bias(out, w.n(), bias);
    Ok(())
}

/// Scalar reference (also the non-wasm kernel).
pub fn matmul_blockwise8_int_reference(xq: &IntActivations, w: &Weight8, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    let mut out = vec![0f32; mul(xq.m, w.n(), "output")?];
    check(xq, w, bias, &out)?;
    scalar(xq, w, &mut out);
    add_bias(&mut out, w.n(), bias);
    Ok(out)
}

fn scalar(xq: &IntActivations, w: &Weight8, out: &mut [f32]) {
    let (k, q, absmax) = (w.k(), w.q(), w.absmax());
    super::int_activations::scalar_rows(xq, w.n(), w.blocksize(), out, |b| absmax[b], |j, kk, x| {
        (0..QK).map(|i| (q[j * k + kk + i] as i8) as i32 * xq.q[x + i] as i32).sum()
    });
}

/// A bound on |kernel − reference| from the float operations alone, as
/// [`super::matmul4_int::float_bound`]: (C + 6)·2^-22·S, S = Σ_b |absmax_b| Σ_c |d_c| Σ_k |code·q|.
pub fn float_bound(xq: &IntActivations, w: &Weight8, bias: Option<&[f32]>, r: usize, j: usize) -> f32 {
    let (k, bs) = (w.k(), w.blocksize());
    super::int_activations::float_bound_of(xq, r, bias.map_or(0.0, |b| b[j]), |c| {
        let sum: f64 = (c * QK..(c + 1) * QK).map(|kk| ((w.q()[j * k + kk] as i8) as f64 * xq.q[r * k + kk] as f64).abs()).sum();
        (w.absmax()[(j * k + c * QK) / bs] as f64, sum)
    })
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::Weight8;
    use crate::kernels::int_activations::{IntActivations, QK};
    use crate::simd::wasm128::{hsum, madd};
    use core::arch::wasm32::*;


    /// Activation row r against every weight row.
    pub fn row(xq: &IntActivations, r: usize, w: &Weight8, out: &mut [f32]) {
        let (n, k, bs) = (w.n(), w.k(), w.blocksize());
        let (q, absmax) = (w.q(), w.absmax());
        let cpr = k / QK;
        let cpb = bs / QK;
        assert!(k % QK == 0 && bs % QK == 0 && r < xq.m && xq.k == k && out.len() == xq.m * n);
        assert!(q.len() == n * k && xq.q.len() == xq.m * k && xq.d.len() == xq.m * cpr);
        let xs = xq.q.as_ptr();
        for j in 0..n {
            let mut tot = f32x4_splat(0.0);
            let mut b = j * k / bs;
            let mut c = 0;
            let mut c_end = cpr.min(cpb - (j * k % bs) / QK);
            while c < cpr {
                let mut acc = f32x4_splat(0.0);
                while c < c_end {
                    // SAFETY: chunk c < k / 32 of row j reads q[j·k + 32c ..+ 32] (inside the
                    // n·k codes, asserted) and xq.q[r·k + 32c ..+ 32] with r < m.
                    unsafe {
                        let p = q.as_ptr().add(j * k + c * QK) as *const v128;
                        let (w0, w1) = (v128_load(p), v128_load(p.add(1)));
                        let x = xs.add(r * k + c * QK) as *const v128;
                        let s0 = i32x4_add(i32x4_dot_i16x8(i16x8_extend_low_i8x16(w0), v128_load(x)), i32x4_dot_i16x8(i16x8_extend_high_i8x16(w0), v128_load(x.add(1))));
                        let s1 = i32x4_add(i32x4_dot_i16x8(i16x8_extend_low_i8x16(w1), v128_load(x.add(2))), i32x4_dot_i16x8(i16x8_extend_high_i8x16(w1), v128_load(x.add(3))));
                        let d = f32x4_splat(*xq.d.get_unchecked(r * cpr + c));
                        acc = madd(f32x4_convert_i32x4(i32x4_add(s0, s1)), d, acc);
                    }
                    c += 1;
                }
                tot = madd(acc, f32x4_splat(absmax[b]), tot);
                b += 1;
                c_end = cpr.min(c + cpb);
            }
            out[r * n + j] = hsum(tot);
        }
    }
}
