//! attention.wgsl against lowbit-core's kernels/attention.rs, through a sequence of calls on
//! one KV cache (prefill chunks, then decode steps) as the backend makes them: GQA / MQA / MHA,
//! head_dim below, at and above the 64-wide workgroup (up to the 256 maximum), contexts that
//! cross the 512-position chunk of the online softmax, default and explicit scale; and the split
//! (flash-decoding) path: decode against long contexts under the split rule, splits forced on
//! calls of any length (split counts that do not divide the span, splits outside a sliding
//! window) and forced off, with Gemma's soft-capping and window.
//!
//! Bound, per output (t, h, d) with the reference's weights w_p = softmax(s)_p (u = 2^-24):
//! - scores: the same f32 products q·k summed in the same order, up to FMA contraction:
//!   |Δs| <= E_s = (hd + 1)·4u·scale·max_p Σ_d |q_d k_pd|; a weight moves by 2·E_s relatively
//!   (its score and the maximum);
//! - soft-capping: tanh from exp(-2|v|) (within (3 + 4|v|) ULP, and t·|v| <= 1/2e) and a
//!   division: |Δ| <= 16u·cap on top of the capped score's |Δs|;
//! - WGSL's exp is within (3 + 2|x|) ULP (spec): (6 + 2·range)·u per chunk of 512 positions
//!   (the score's exp and the online rescale), range = max s - min s, and as much again per
//!   split (its rescale in the combine);
//! - the weight sum is reassociated (64 lanes + tree vs in order): (len + len/64 + 8)·u; the
//!   weighted V sum runs in the same order on both sides: 2·(len + 2)·u, plus 2u per split for
//!   the combine's sum; the final division
//!   2.5 ULP: |Δo_d| <= Σ_p w_p |v_pd|·(all of the above) + 3u·|o_d|.
mod common;
use common::{check_within, gpu, Rng, U};
use lowbit_core::kernels::attention::{attention_with, AttentionExtras, AttentionShape};
use lowbit_gpu::kernels::attention::{attention_splits, Extras};
use lowbit_gpu::kernels::KvCache;

struct Case {
    n_heads: usize,
    n_kv: usize,
    head_dim: usize,
    max_pos: usize,
    /// (start, n) of each call
    calls: &'static [(usize, usize)],
    scale: Option<f32>,
    /// KvCache::splits: None = the split rule
    splits: Option<usize>,
    extras: Extras,
}

const NO: Extras = Extras { softcap: 0.0, window: 0 };

#[test]
fn attention_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0x6a09e667f3bcc909);
    let cases = [
        Case { n_heads: 4, n_kv: 2, head_dim: 64, max_pos: 40, calls: &[(0, 5), (5, 1), (6, 1)], scale: None, splits: None, extras: NO },
        Case { n_heads: 4, n_kv: 2, head_dim: 64, max_pos: 40, calls: &[(0, 3), (3, 2)], scale: Some(0.3), splits: None, extras: NO },
        Case { n_heads: 8, n_kv: 2, head_dim: 80, max_pos: 30, calls: &[(0, 3), (3, 1)], scale: None, splits: None, extras: NO },
        Case { n_heads: 2, n_kv: 2, head_dim: 256, max_pos: 20, calls: &[(0, 4), (4, 1)], scale: None, splits: None, extras: NO },
        Case { n_heads: 3, n_kv: 1, head_dim: 16, max_pos: 10, calls: &[(0, 1), (1, 2), (3, 1)], scale: None, splits: None, extras: NO },
        Case { n_heads: 2, n_kv: 1, head_dim: 64, max_pos: 600, calls: &[(0, 530), (530, 1), (531, 40)], scale: None, splits: Some(1), extras: NO },
        // the split rule: decode (1 and 3 tokens) against 1030 positions splits, the prefill does not
        Case { n_heads: 3, n_kv: 1, head_dim: 64, max_pos: 1100, calls: &[(0, 1030), (1030, 1), (1031, 3), (1034, 1)], scale: None, splits: None, extras: NO },
        // forced splits that do not divide the span, on prefill and decode, GQA, head_dim 256 and 80
        Case { n_heads: 4, n_kv: 2, head_dim: 256, max_pos: 700, calls: &[(0, 600), (600, 1), (601, 2)], scale: None, splits: Some(7), extras: NO },
        Case { n_heads: 6, n_kv: 2, head_dim: 80, max_pos: 40, calls: &[(0, 13), (13, 1), (14, 5)], scale: Some(0.7), splits: Some(3), extras: NO },
        // Gemma: soft-capping and a sliding window, with splits wholly outside some tokens' window
        Case { n_heads: 4, n_kv: 2, head_dim: 16, max_pos: 60, calls: &[(0, 12), (12, 1), (13, 7)], scale: Some(0.9), splits: Some(4), extras: Extras { softcap: 1.5, window: 5 } },
        Case { n_heads: 4, n_kv: 1, head_dim: 32, max_pos: 700, calls: &[(0, 640), (640, 1), (641, 2)], scale: None, splits: None, extras: Extras { softcap: 0.0, window: 300 } },
        Case { n_heads: 2, n_kv: 1, head_dim: 64, max_pos: 700, calls: &[(0, 650), (650, 1)], scale: Some(0.5), splits: None, extras: Extras { softcap: 2.0, window: 0 } },
    ];
    // the cases reach both paths
    assert_eq!(attention_splits(1031, 3, 1, None), 8);
    assert_eq!(attention_splits(1030, 3, 1030, None), 1);
    assert_eq!(attention_splits(300, 4, 1, None), 2);
    let mut worst = 0f64;
    for c in &cases {
        let shape = AttentionShape { n_heads: c.n_heads, n_kv_heads: c.n_kv, head_dim: c.head_dim, max_pos: c.max_pos };
        let (hd, q_row, kv_row) = (c.head_dim, c.n_heads * c.head_dim, c.n_kv * c.head_dim);
        let mut cache = KvCache::new(&gpu, c.max_pos, c.n_kv, hd).unwrap();
        (cache.splits, cache.extras) = (c.splits, c.extras);
        let extras = AttentionExtras { softcap: (c.extras.softcap > 0.0).then_some(c.extras.softcap), window: (c.extras.window > 0).then_some(c.extras.window) };
        let (mut k_cpu, mut v_cpu) = (vec![0f32; c.max_pos * kv_row], vec![0f32; c.max_pos * kv_row]);
        for &(start, n) in c.calls {
            let q = rng.vec(n * q_row, 1.0);
            let k = rng.vec(n * kv_row, 1.0);
            let v = rng.vec(n * kv_row, 1.0);
            k_cpu[start * kv_row..(start + n) * kv_row].copy_from_slice(&k);
            v_cpu[start * kv_row..(start + n) * kv_row].copy_from_slice(&v);
            let mut want = vec![0f32; n * q_row];
            attention_with(&q, n, start, &k_cpu, &v_cpu, &shape, c.scale, extras, &mut want).unwrap();
            let got = cache.attention(&gpu, &q, &k, &v, n, start, c.n_heads, c.scale).unwrap();
            let scale = c.scale.unwrap_or(1.0 / (hd as f32).sqrt()) as f64;
            let window = if c.extras.window > 0 { c.extras.window } else { usize::MAX };
            let span = start + n - (start + 1).saturating_sub(window);
            let splits = span.div_ceil(span.div_ceil(attention_splits(span, c.n_heads, n, c.splits)));
            let call = Call { n, start, n_heads: c.n_heads, group: c.n_heads / c.n_kv, hd, kv_row, scale, softcap: c.extras.softcap as f64, window, splits };
            let bounds = bounds(&q, &k_cpu, &v_cpu, &call, &want);
            let what = format!("attention heads={} kv={} head_dim={hd} start={start} n={n} scale={:?} splits={splits} {:?}", c.n_heads, c.n_kv, c.scale, c.extras);
            worst = worst.max(check_within(&what, &got, &want, |i| bounds[i]));
        }
    }
    eprintln!("attention: largest |Δ| / bound {worst:.3e}");
}

/// One attention call's shape, for its bound.
struct Call {
    n: usize,
    start: usize,
    n_heads: usize,
    group: usize,
    hd: usize,
    kv_row: usize,
    scale: f64,
    /// 0: none
    softcap: f64,
    /// usize::MAX: none
    window: usize,
    /// the dispatch's splits (1: the ordinary kernel)
    splits: usize,
}

/// The bound of the module comment for every output of one call.
fn bounds(q: &[f32], kc: &[f32], vc: &[f32], c: &Call, want: &[f32]) -> Vec<f64> {
    let (hd, kv_row) = (c.hd, c.kv_row);
    let mut out = vec![0f64; want.len()];
    for t in 0..c.n {
        let len = c.start + t + 1;
        let lo = len.saturating_sub(c.window);
        for h in 0..c.n_heads {
            let kvo = (h / c.group) * hd;
            let qv = &q[(t * c.n_heads + h) * hd..][..hd];
            let (mut s, mut mag) = (vec![0f64; len - lo], 0f64);
            for (i, sp) in s.iter_mut().enumerate() {
                let kv = &kc[(lo + i) * kv_row + kvo..][..hd];
                *sp = c.scale * qv.iter().zip(kv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();
                if c.softcap > 0.0 {
                    *sp = c.softcap * (*sp / c.softcap).tanh();
                }
                mag = mag.max(qv.iter().zip(kv).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum::<f64>());
            }
            let smax = s.iter().cloned().fold(f64::MIN, f64::max);
            let smin = s.iter().cloned().fold(f64::MAX, f64::min);
            let sum: f64 = s.iter().map(|v| (v - smax).exp()).sum();
            let e_s = (hd as f64 + 1.0) * 4.0 * U * c.scale * mag + 16.0 * U * c.softcap;
            let seen = s.len() as f64;
            let rescales = (s.len().div_ceil(512) + 2 * c.splits) as f64;
            let rel = 2.0 * e_s + (6.0 + 2.0 * (smax - smin)) * U * rescales + (seen * (1.0 + 1.0 / 64.0) + 8.0) * U + 2.0 * (seen + 2.0 + c.splits as f64) * U;
            for d in 0..hd {
                let wv: f64 = s.iter().enumerate().map(|(i, sp)| (sp - smax).exp() / sum * (vc[(lo + i) * kv_row + kvo + d] as f64).abs()).sum();
                let i = (t * c.n_heads + h) * hd + d;
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
    let mut forced = KvCache::new(&gpu, 8, 2, 4).unwrap();
    forced.splits = Some(0);
    assert!(forced.attention(&gpu, &q, &kv, &kv, 1, 0, 4, None).unwrap_err().contains("splits"));
    forced.splits = Some(2);
    forced.extras.softcap = -1.0;
    assert!(forced.attention(&gpu, &q, &kv, &kv, 1, 0, 4, None).unwrap_err().contains("softcap"));
}
