//! Rotary position embeddings, "rotate half" convention of transformers' Llama / Qwen2 / Mistral
//! (`apply_rotary_pos_emb`): for a head vector q of length d and i < d/2,
//! `q'[i] = q[i] cos θ_i - q[i + d/2] sin θ_i`, `q'[i + d/2] = q[i + d/2] cos θ_i + q[i] sin θ_i`,
//! θ_i = position · inv_freq[i], inv_freq[i] = theta^(-2i/d).
//!
//! `inv_freq` follows transformers `modeling_rope_utils.py`: `_compute_default_rope_parameters`
//! (`1 / base ** (arange(0, d, 2) / d)` in f32) and, for `rope_type == "llama3"`,
//! `_compute_llama3_parameters`: with wavelen = 2π / inv_freq, low = original_max / low_freq_factor
//! and high = original_max / high_freq_factor, frequencies with wavelen > low are divided by
//! `factor`, those with wavelen < high are kept, and the ones in between are interpolated with
//! smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor),
//! `(1 - smooth) * f / factor + smooth * f`. The arithmetic is f32 like torch's, except that the
//! power and cos / sin are evaluated in f64 and rounded once (torch's f32 pow / cos may differ by
//! an ulp); positions are converted to f32 and multiplied by inv_freq in f32, as torch does.

// `!(a > b)` is deliberate: it also rejects NaN, and mirrors torch's `~(a < b)` masks.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::error::{bail, Result};

/// `rope_scaling` of a Llama 3.x config (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: f32,
}

/// inv_freq for a rotary dimension `dim` (even) and base `theta`, with optional Llama 3 scaling.
pub fn inv_freq(dim: usize, theta: f32, llama3: Option<&Llama3Scaling>) -> Result<Vec<f32>> {
    if dim == 0 || !dim.is_multiple_of(2) {
        bail!(InvalidArgument, "rotary dimension must be even and > 0, got {dim}");
    }
    if !(theta > 0.0) || !theta.is_finite() {
        bail!(InvalidArgument, "rope theta must be a finite number > 0, got {theta}");
    }
    let mut f: Vec<f32> = (0..dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / dim as f32; // arange(...).float() / dim, in f32
            let p = (theta as f64).powf(e as f64) as f32; // base ** e (f32 result)
            1.0 / p
        })
        .collect();
    if let Some(s) = llama3 {
        if !(s.factor > 0.0) || !(s.low_freq_factor > 0.0) || !(s.high_freq_factor > s.low_freq_factor) || !(s.original_max_position_embeddings > 0.0) {
            bail!(InvalidArgument, "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0, got {s:?}");
        }
        let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
        let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
        for v in f.iter_mut() {
            let wavelen = (2.0 * std::f64::consts::PI) as f32 / *v;
            let base = if wavelen > low_wavelen { *v / s.factor } else { *v };
            if !(wavelen < high_wavelen) && !(wavelen > low_wavelen) {
                let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                *v = (1.0 - smooth) * base / s.factor + smooth * base;
            } else {
                *v = base;
            }
        }
    }
    Ok(f)
}

/// cos / sin of position · inv_freq (each `inv_freq.len()` long), times `attention_scaling`
/// (1.0 for default and llama3 RoPE).
pub fn cos_sin(inv_freq: &[f32], position: usize, attention_scaling: f32, cos: &mut [f32], sin: &mut [f32]) -> Result<()> {
    if cos.len() != inv_freq.len() || sin.len() != inv_freq.len() {
        bail!(LengthMismatch, "cos / sin hold {} / {} values but inv_freq has {}", cos.len(), sin.len(), inv_freq.len());
    }
    let p = position as f32;
    for ((c, s), f) in cos.iter_mut().zip(sin.iter_mut()).zip(inv_freq) {
        let a = (p * f) as f64;
        *c = a.cos() as f32 * attention_scaling;
        *s = a.sin() as f32 * attention_scaling;
    }
    Ok(())
}

/// Applies RoPE in place to `x` `[n_tokens, n_heads, head_dim]`, token t at `positions[t]`,
/// over the whole head (`head_dim == 2 * inv_freq.len()`).
pub fn apply_rope(x: &mut [f32], n_heads: usize, head_dim: usize, positions: &[usize], inv_freq: &[f32]) -> Result<()> {
    if head_dim != 2 * inv_freq.len() || head_dim == 0 {
        bail!(InvalidArgument, "head_dim {head_dim} must be twice the {} inverse frequencies", inv_freq.len());
    }
    let per_tok = super::mul(n_heads, head_dim, "rope")?;
    super::check_len("x", x.len(), super::mul(positions.len(), per_tok, "rope")?)?;
    let half = head_dim / 2;
    let mut cos = vec![0f32; half];
    let mut sin = vec![0f32; half];
    for (tok, &pos) in x.chunks_mut(per_tok.max(1)).zip(positions) {
        cos_sin(inv_freq, pos, 1.0, &mut cos, &mut sin)?;
        for h in tok.chunks_mut(head_dim) {
            let (a, b) = h.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
    Ok(())
}
