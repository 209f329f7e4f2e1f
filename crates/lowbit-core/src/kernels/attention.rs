//! Causal scaled-dot-product attention of a chunk of new positions against a KV cache, with
//! grouped-query heads (scalar, f32). One layer at a time; the caller has already written the
//! new positions' K and V (after RoPE) into the cache.
//!
//! q `[n_new, n_heads, head_dim]`, token t at absolute position `start + t`;
//! k / v cache `[max_pos, n_kv_heads, head_dim]`; head h reads kv head `h / (n_heads / n_kv_heads)`
//! (transformers' `repeat_kv`). Query t attends to positions `0..=start + t`:
//! `softmax(q·k * scale) · v`, scale defaults to `1 / sqrt(head_dim)`, as in transformers'
//! eager attention (dot product in f32, then times the scale, softmax in f32).
//!
//! `attention_with` adds what Gemma 2 / 3 need (`AttentionExtras`): logit soft-capping
//! (`cap * tanh(score / cap)` after the scale, before the softmax: transformers'
//! attn_logit_softcapping) and a sliding window (query at position p sees positions
//! `p - window < j <= p` only: transformers' sliding_attention layers).

use super::{check_len, mul, softmax::softmax_inplace};
use crate::error::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Capacity of the cache in positions.
    pub max_pos: usize,
}

/// Soft-capping and sliding window of one attention call (None: neither).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttentionExtras {
    /// Scores become `cap * tanh(score / cap)` (cap > 0).
    pub softcap: Option<f32>,
    /// A query at position p attends to positions `p - window < j <= p` (window >= 1).
    pub window: Option<usize>,
}

/// Writes `out` `[n_new, n_heads, head_dim]`. `scale`: None = 1 / sqrt(head_dim).
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], n_new: usize, start: usize, k_cache: &[f32], v_cache: &[f32], shape: &AttentionShape, scale: Option<f32>, out: &mut [f32]) -> Result<()> {
    attention_with(q, n_new, start, k_cache, v_cache, shape, scale, AttentionExtras::default(), out)
}

/// `attention` with soft-capping and / or a sliding window.
#[allow(clippy::too_many_arguments)]
pub fn attention_with(q: &[f32], n_new: usize, start: usize, k_cache: &[f32], v_cache: &[f32], shape: &AttentionShape, scale: Option<f32>, extras: AttentionExtras, out: &mut [f32]) -> Result<()> {
    let AttentionShape { n_heads, n_kv_heads, head_dim, max_pos } = *shape;
    if extras.softcap.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        bail!(InvalidArgument, "attention softcap must be a positive finite number, got {:?}", extras.softcap);
    }
    if extras.window == Some(0) {
        bail!(InvalidArgument, "attention window must be at least 1");
    }
    if n_heads == 0 || n_kv_heads == 0 || head_dim == 0 || n_new == 0 {
        bail!(EmptyTensor, "attention with {n_new} tokens, {n_heads} heads, {n_kv_heads} kv heads, head_dim {head_dim}");
    }
    if !n_heads.is_multiple_of(n_kv_heads) {
        bail!(InvalidArgument, "{n_heads} query heads are not a multiple of {n_kv_heads} kv heads");
    }
    let end = match start.checked_add(n_new) {
        Some(e) if e <= max_pos => e,
        _ => bail!(InvalidArgument, "positions {start}..{start}+{n_new} exceed the cache capacity {max_pos}"),
    };
    let q_row = mul(n_heads, head_dim, "attention q")?;
    let kv_row = mul(n_kv_heads, head_dim, "attention kv")?;
    check_len("q", q.len(), mul(n_new, q_row, "attention q")?)?;
    check_len("output", out.len(), q.len())?;
    let cache = mul(max_pos, kv_row, "kv cache")?;
    check_len("k cache", k_cache.len(), cache)?;
    check_len("v cache", v_cache.len(), cache)?;
    let scale = scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
    let group = n_heads / n_kv_heads;
    let mut scores = vec![0f32; end];
    for t in 0..n_new {
        let len = start + t + 1;
        // first position the window lets this query see
        let lo = extras.window.map_or(0, |w| len.saturating_sub(w));
        for h in 0..n_heads {
            let kvh = h / group;
            let qv = &q[t * q_row + h * head_dim..][..head_dim];
            for (p, s) in scores[lo..len].iter_mut().enumerate().map(|(i, s)| (i + lo, s)) {
                let kv = &k_cache[p * kv_row + kvh * head_dim..][..head_dim];
                let mut d = 0f32;
                for (a, b) in qv.iter().zip(kv) {
                    d += a * b;
                }
                *s = d * scale;
                if let Some(cap) = extras.softcap {
                    *s = (*s / cap).tanh() * cap;
                }
            }
            softmax_inplace(&mut scores[lo..len]);
            let o = &mut out[t * q_row + h * head_dim..][..head_dim];
            o.iter_mut().for_each(|v| *v = 0.0);
            for (p, &w) in scores[lo..len].iter().enumerate().map(|(i, w)| (i + lo, w)) {
                let vv = &v_cache[p * kv_row + kvh * head_dim..][..head_dim];
                for (a, b) in o.iter_mut().zip(vv) {
                    *a += w * b;
                }
            }
        }
    }
    Ok(())
}
