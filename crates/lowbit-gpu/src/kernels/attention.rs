//! attention.wgsl: causal GQA attention of n new positions against a KV cache (index.ts
//! `kvCache` / `attention`): the new K / V rows are copied into the cache at `start`, then one
//! workgroup per (query head, new token), or, for decode against a long context, one per
//! (query head, new token, split of the context) and a combine (`attention_splits`).
use super::run_read_f32;
use crate::{Gpu, Step};

/// attention.wgsl: 64 invocations x 4 outputs each.
pub const MAX_HEAD_DIM: usize = 256;

/// The split rule of ts/backends/webgpu/attention-split.ts (see there for why): calls of at most
/// `MAX_TOKENS` tokens split the `span` positions they see into enough pieces for
/// `TARGET_WORKGROUPS` workgroups, none shorter than `MIN_SPLIT`, at most `MAX_SPLITS`.
pub mod split {
    pub const MAX_TOKENS: usize = 4;
    pub const TARGET_WORKGROUPS: usize = 256;
    pub const MIN_SPLIT: usize = 128;
    pub const MAX_SPLITS: usize = 64;
}

/// Splits for `n` tokens over `span` positions with `n_heads` query heads (1: the ordinary
/// kernel); `force` overrides the rule, capped at one position per split.
pub fn attention_splits(span: usize, n_heads: usize, n: usize, force: Option<usize>) -> usize {
    if let Some(f) = force {
        return f.min(span).max(1);
    }
    if n > split::MAX_TOKENS {
        return 1;
    }
    let for_work = split::TARGET_WORKGROUPS.div_ceil(n_heads * n);
    let for_length = span / split::MIN_SPLIT;
    for_work.min(for_length).clamp(1, split::MAX_SPLITS)
}

/// Soft-capping and sliding window of the calls (lowbit-core's AttentionExtras; 0 = off).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    pub softcap: f32,
    pub window: usize,
}

/// K and V caches `[max_pos, n_kv_heads, head_dim]` in f32.
#[derive(Debug)]
pub struct KvCache {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub max_pos: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Splits forced on every call (index.ts option `attentionSplits`); None: `attention_splits`' rule.
    pub splits: Option<usize>,
    pub extras: Extras,
}

impl KvCache {
    pub fn new(gpu: &Gpu, max_pos: usize, n_kv_heads: usize, head_dim: usize) -> Result<KvCache, String> {
        if max_pos == 0 || n_kv_heads == 0 || head_dim == 0 {
            return Err(format!("kv cache of {max_pos} positions x {n_kv_heads} x {head_dim}"));
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(format!("headDim {head_dim} is above the WebGPU attention kernel's {MAX_HEAD_DIM}"));
        }
        let bytes = (max_pos * n_kv_heads * head_dim * 4) as u64;
        if bytes > gpu.device.limits().max_storage_buffer_binding_size {
            return Err(format!("a kv cache of {bytes} bytes exceeds the storage binding limit"));
        }
        Ok(KvCache { k: gpu.zeroed("k cache", bytes), v: gpu.zeroed("v cache", bytes), max_pos, n_kv_heads, head_dim, splits: None, extras: Extras::default() })
    }

    /// The copies and the dispatch of one attention call: q `[n, n_heads * head_dim]`, the new
    /// k / v rows `[n, n_kv_heads * head_dim]` at positions start .. start + n, into `out`.
    /// `scale`: None = f32(1 / f32(sqrt(head_dim))), the CPU kernel's default.
    #[allow(clippy::too_many_arguments)]
    pub fn steps(&self, gpu: &Gpu, q: &wgpu::Buffer, k: &wgpu::Buffer, v: &wgpu::Buffer, n: usize, start: usize, n_heads: usize, scale: Option<f32>, out: &wgpu::Buffer) -> Result<Vec<Step>, String> {
        if n == 0 || n_heads == 0 {
            return Err(format!("attention: {n} tokens, {n_heads} heads"));
        }
        if !n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!("attention: {n_heads} query heads are not a multiple of the cache's {} kv heads", self.n_kv_heads));
        }
        if start + n > self.max_pos {
            return Err(format!("attention: positions {start}..{} exceed the kv cache capacity of {} positions", start + n, self.max_pos));
        }
        if n_heads > super::MAX_GROUPS || n > super::MAX_GROUPS {
            return Err(format!("attention: {n_heads} heads x {n} tokens exceed one dispatch"));
        }
        if scale.is_some_and(|s| !s.is_finite()) {
            return Err(format!("attention: scale must be finite, got {scale:?}"));
        }
        if u32::try_from(self.extras.window).is_err() || !(self.extras.softcap >= 0.0 && self.extras.softcap.is_finite()) {
            return Err(format!("attention: window {} / softcap {} out of range", self.extras.window, self.extras.softcap));
        }
        if self.splits.is_some_and(|s| s == 0 || s > super::MAX_GROUPS) {
            return Err(format!("attention: {:?} forced splits", self.splits));
        }
        let scale = scale.unwrap_or(1.0 / (self.head_dim as f32).sqrt());
        let kv_cols = self.n_kv_heads * self.head_dim;
        let row_bytes = (kv_cols * 4) as u64;
        let Extras { softcap, window } = self.extras;
        // the positions the call's tokens see together, from the first one token 0 sees
        let span = start + n - if window > 0 { (start + 1).saturating_sub(window) } else { 0 };
        let split_len = span.div_ceil(attention_splits(span, n_heads, n, self.splits));
        let n_split = span.div_ceil(split_len);
        let single = gpu.kernel("attention.wgsl", "attention", &[])?;
        let p = single.params().u("n", n).u("start", start).u("n_heads", n_heads).u("group", n_heads / self.n_kv_heads).u("head_dim", self.head_dim).u("kv_row", kv_cols);
        let uni = gpu.params(p.f("scale", scale).u("window", window).f("softcap", softcap).u("split_len", split_len).u("n_split", n_split))?;
        let mut steps = vec![
            Step::Copy { src: k.clone(), src_offset: 0, dst: self.k.clone(), dst_offset: start as u64 * row_bytes, size: n as u64 * row_bytes },
            Step::Copy { src: v.clone(), src_offset: 0, dst: self.v.clone(), dst_offset: start as u64 * row_bytes, size: n as u64 * row_bytes },
        ];
        let groups = (n_heads as u32, n as u32, 1);
        if n_split == 1 {
            steps.push(gpu.step(&single, &[("p", &uni), ("q", q), ("k_cache", &self.k), ("v_cache", &self.v), ("y", out)], groups)?);
        } else {
            // partial max, sum of exp and output per (token, head, split), then the combine
            let part = gpu.zeroed("attention partials", (n * n_heads * n_split * (self.head_dim + 2) * 4) as u64);
            let split = gpu.kernel("attention.wgsl", "attention_split", &[])?;
            let combine = gpu.kernel("attention.wgsl", "attention_combine", &[])?;
            steps.push(gpu.step(&split, &[("p", &uni), ("q", q), ("k_cache", &self.k), ("v_cache", &self.v), ("part", &part)], (n_heads as u32, n as u32, n_split as u32))?);
            steps.push(gpu.step(&combine, &[("p", &uni), ("y", out), ("part", &part)], groups)?);
        }
        Ok(steps)
    }

    /// One attention call from host data; returns `[n, n_heads * head_dim]`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(&self, gpu: &Gpu, q: &[f32], k: &[f32], v: &[f32], n: usize, start: usize, n_heads: usize, scale: Option<f32>) -> Result<Vec<f32>, String> {
        let (q_cols, kv_cols) = (n_heads * self.head_dim, self.n_kv_heads * self.head_dim);
        if q.len() != n * q_cols || k.len() != n * kv_cols || v.len() != n * kv_cols {
            return Err(format!("attention: q / k / v have {} / {} / {} values for {n} tokens of [{q_cols}] / [{kv_cols}]", q.len(), k.len(), v.len()));
        }
        let (qb, kb, vb) = (gpu.storage_f32("q", q), gpu.storage_f32("k", k), gpu.storage_f32("v", v));
        let out = gpu.zeroed("attention out", (q.len() * 4) as u64);
        let steps = self.steps(gpu, &qb, &kb, &vb, n, start, n_heads, scale, &out)?;
        Ok(run_read_f32(gpu, &steps, &out, q.len()))
    }
}
