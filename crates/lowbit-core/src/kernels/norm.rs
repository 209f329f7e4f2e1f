//! RMSNorm and LayerNorm over the last dimension, computed in f32 (scalar).
//!
//! - RMSNorm (Llama / Qwen2 / Mistral, transformers `LlamaRMSNorm`): the input is upcast to f32,
//!   `x * rsqrt(mean(x²) + eps)`, then multiplied by the weight. We take `rsqrt` as
//!   `1 / sqrt(v)` (two IEEE roundings; torch's rsqrt may differ by an ulp) and sum the squares
//!   in index order (torch reduces in another order). For bf16 / f16 models transformers casts
//!   the normalized value to the input dtype before the weight multiply; callers wanting that
//!   rounding apply it to the output.
//! - LayerNorm (GPT-2 / `nn.LayerNorm`): biased variance `mean((x - mean)²)`,
//!   `(x - mean) / sqrt(var + eps) * weight + bias`.

use super::check_len;
use crate::error::{bail, Result};

fn check(x: &[f32], hidden: usize, weight: &[f32], out: &[f32]) -> Result<()> {
    if hidden == 0 || x.is_empty() {
        bail!(EmptyTensor, "normalization over an empty dimension");
    }
    if !x.len().is_multiple_of(hidden) {
        bail!(LengthMismatch, "input has {} elements, not a multiple of the hidden size {hidden}", x.len());
    }
    check_len("weight", weight.len(), hidden)?;
    check_len("output", out.len(), x.len())
}

/// RMSNorm of each row of `x` (`[rows, hidden]`) into `out`.
pub fn rms_norm(x: &[f32], hidden: usize, weight: &[f32], eps: f32, out: &mut [f32]) -> Result<()> {
    check(x, hidden, weight, out)?;
    for (xr, or) in x.chunks(hidden).zip(out.chunks_mut(hidden)) {
        let mut ss = 0f32;
        for v in xr {
            ss += v * v;
        }
        let inv = 1.0 / (ss / hidden as f32 + eps).sqrt();
        for ((o, v), w) in or.iter_mut().zip(xr).zip(weight) {
            *o = w * (v * inv);
        }
    }
    Ok(())
}

/// LayerNorm of each row of `x` (`[rows, hidden]`) into `out`, with optional bias.
pub fn layer_norm(x: &[f32], hidden: usize, weight: &[f32], bias: Option<&[f32]>, eps: f32, out: &mut [f32]) -> Result<()> {
    check(x, hidden, weight, out)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), hidden)?;
    }
    for (xr, or) in x.chunks(hidden).zip(out.chunks_mut(hidden)) {
        let mut s = 0f32;
        for v in xr {
            s += v;
        }
        let mean = s / hidden as f32;
        let mut ss = 0f32;
        for v in xr {
            let d = v - mean;
            ss += d * d;
        }
        let inv = 1.0 / (ss / hidden as f32 + eps).sqrt();
        for (j, (o, v)) in or.iter_mut().zip(xr).enumerate() {
            *o = (v - mean) * inv * weight[j] + bias.map_or(0.0, |b| b[j]);
        }
    }
    Ok(())
}
