//! attention.wgsl against lowbit-core's kernels/attention.rs, through a sequence of calls on
//! one KV cache (prefill chunks, then decode steps) as the backend makes them: GQA / MQA / MHA,
//! head_dim below, at and above the 64-wide workgroup (up to the 256 maximum), contexts that
//! cross the 512-position chunk of the online softmax, default and explicit scale.
//!
//! Bound, per output (t, h, d) with the reference's weights w_p = softmax(s)_p (u = 2^-24):
//! - scores: the same f32 products q·k summed in the same order, up to FMA contraction:
//!   |Δs| <= E_s = (hd + 1)·4u·scale·max_p Σ_d |q_d k_pd|; a weight moves by 2·E_s relatively
//!   (its score and the maximum);
//! - WGSL's exp is within (3 + 2|x|) ULP (spec): (6 + 2·range)·u per chunk of 512 positions
//!   (the score's exp and the online rescale), range = max s - min s;
//! - the weight sum is reassociated (64 lanes + tree vs in order): (len + len/64 + 8)·u; the
//!   weighted V sum runs in the same order on both sides: 2·(len + 2)·u; the final division
//!   2.5 ULP: |Δo_d| <= Σ_p w_p |v_pd|·(all of the above) + 3u·|o_d|.
mod common;
use common::{check_within, gpu, Rng, U};
use lowbit_core::kernels::attention::{attention, AttentionShape};
use lowbit_gpu::kernels::KvCache;

struct Case {
    n_heads: usize,
    n_kv: usize,
    head_dim: usize,
    max_pos: usize,
    /// (start, n) of each call
    calls: &'static [(usize, usize)],
    scale: Option<f32>,
}

#[test]
fn attention_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0x6a09e667f3bcc909);
    let cases = [
        Case { n_heads: 4, n_kv: 2, head_dim: 64, max_pos: 40, calls: &[(0, 5), (5, 1), (6, 1)], scale: None },
        Case { n_heads: 4, n_kv: 2, head_dim: 64, max_pos: 40, calls: &[(0, 3), (3, 2)], scale: Some(0.3) },
        Case { n_heads: 8, n_kv: 2, head_dim: 80, max_pos: 30, calls: &[(0, 3), (3, 1)], scale: None },
        Case { n_heads: 2, n_kv: 2, head_dim: 256, max_pos: 20, calls: &[(0, 4), (4, 1)], scale: None },
        Case { n_heads: 3, n_kv: 1, head_dim: 16, max_pos: 10, calls: &[(0, 1), (1, 2), (3, 1)], scale: None },
        Case { n_heads: 2, n_kv: 1, head_dim: 64, max_pos: 600, calls: &[(0, 530), (530, 1), (531, 40)], scale: None },
    ];
    let mut worst = 0f64;
    for c in &cases {
        let shape = AttentionShape { n_heads: c.n_heads, n_kv_heads: c.n_kv, head_dim: c.head_dim, max_pos: c.max_pos };
        let (hd, q_row, kv_row) = (c.head_dim, c.n_heads * c.head_dim, c.n_kv * c.head_dim);
        let cache = KvCache::new(&gpu, c.max_pos, c.n_kv, hd).unwrap();
        let (mut k_cpu, mut v_cpu) = (vec![0f32; c.max_pos * kv_row], vec![0f32; c.max_pos * kv_row]);
        for &(start, n) in c.calls {
            let q = rng.vec(n * q_row, 1.0);
            let k = rng.vec(n * kv_row, 1.0);
            let v = rng.vec(n * kv_row, 1.0);
            k_cpu[start * kv_row..(start + n) * kv_row].copy_from_slice(&k);
            v_cpu[start * kv_row..(start + n) * kv_row].copy_from_slice(&v);
            let mut want = vec![0f32; n * q_row];
            attention(&q, n, start, &k_cpu, &v_cpu, &shape, c.scale, &mut want).unwrap();
            let got = cache.attention(&gpu, &q, &k, &v, n, start, c.n_heads, c.scale).unwrap();
            let scale = c.scale.unwrap_or(1.0 / (hd as f32).sqrt()) as f64;
            let bounds = bounds(&q, &k_cpu, &v_cpu, n, start, c.n_heads, c.n_heads / c.n_kv, hd, kv_row, scale, &want);
            let what = format!("attention heads={} kv={} head_dim={hd} start={start} n={n} scale={:?}", c.n_heads, c.n_kv, c.scale);
            worst = worst.max(check_within(&what, &got, &want, |i| bounds[i]));
        }
    }
    eprintln!("attention: largest |Δ| / bound {worst:.3e}");
}

/// The bound of the module comment for every output of one call.
#[allow(clippy::too_many_arguments)]
fn bounds(q: &[f32], kc: &[f32], vc: &[f32], n: usize, start: usize, n_heads: usize, group: usize, hd: usize, kv_row: usize, scale: f64, want: &[f32]) -> Vec<f64> {
    let mut out = vec![0f64; want.len()];
    for t in 0..n {
        let len = start + t + 1;
        for h in 0..n_heads {
            let kvo = (h / group) * hd;
            let qv = &q[(t * n_heads + h) * hd..][..hd];
            let (mut s, mut mag) = (vec![0f64; len], 0f64);
            for (p, sp) in s.iter_mut().enumerate() {
                let kv = &kc[p * kv_row + kvo..][..hd];
                *sp = scale * qv.iter().zip(kv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();
                mag = mag.max(qv.iter().zip(kv).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum::<f64>());
            }
            let smax = s.iter().cloned().fold(f64::MIN, f64::max);
            let smin = s.iter().cloned().fold(f64::MAX, f64::min);
            let sum: f64 = s.iter().map(|v| (v - smax).exp()).sum();
            let e_s = (hd as f64 + 1.0) * 4.0 * U * scale * mag;
            let chunks = len.div_ceil(512) as f64;
            let rel = 2.0 * e_s + (6.0 + 2.0 * (smax - smin)) * U * chunks + (len as f64 * (1.0 + 1.0 / 64.0) + 8.0) * U + 2.0 * (len as f64 + 2.0) * U;
            for d in 0..hd {
                let wv: f64 = s.iter().enumerate().map(|(p, sp)| (sp - smax).exp() / sum * (vc[p * kv_row + kvo + d] as f64).abs()).sum();
                let i = (t * n_heads + h) * hd + d;
                out[i] = wv * rel + 3.0 * U * want[i].abs() as f64;
            }
        }
    }
    out
}

#[test]
fn attention_refuses_bad_arguments() {
    let Some(gpu) = gpu() else { return };
    assert!(KvCache::new(&gpu, 8, 2, 257).unwrap_err().contains("headDim"));
    let cache = KvCache::new(&gpu, 8, 2, 4).unwrap();
    let (q, kv) = (vec![0f32; 16], vec![0f32; 8]);
    assert!(cache.attention(&gpu, &q, &kv, &kv, 1, 7, 4, None).is_ok());
    assert!(cache.attention(&gpu, &q, &kv, &kv, 1, 8, 4, None).unwrap_err().contains("capacity"));
    assert!(cache.attention(&gpu, &q[..12], &kv, &kv, 1, 0, 3, None).unwrap_err().contains("multiple"));
    assert!(cache.attention(&gpu, &q, &kv, &kv, 1, 0, 4, Some(f32::INFINITY)).unwrap_err().contains("finite"));
}
