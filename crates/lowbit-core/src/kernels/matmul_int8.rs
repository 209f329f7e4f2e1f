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
//! want those roundings apply them. Scalar only.

use super::{check_len, mul};
use crate::dtype::f16;
use crate::error::{bail, Result};
use crate::int8::vectorwise_quant;

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
pub fn matmul_int8(a: &[f32], m: usize, w: &WeightInt8, threshold: f32, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
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
    for i in 0..m {
        let ca = &q.cb[i * k..(i + 1) * k];
        for j in 0..n {
            let mut acc = 0i32;
            for (x, y) in ca.iter().zip(&cb[j * k..(j + 1) * k]) {
                acc += *x as i32 * *y as i32; // |acc| <= 127² k <= i32::MAX (check_k)
            }
            let mut v = acc as f32 * (q.scb[i] * scb[j]) * BNB_CPU_MM_DEQUANT_SCALE;
            if let Some(b) = bias {
                v += b[j];
            }
            out[i * n + j] = v;
        }
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
