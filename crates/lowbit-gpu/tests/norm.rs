//! norm.wgsl (rms_norm, layer_norm) against lowbit-core's kernels/norm.rs. The GPU sums a row
//! in 256 strided lanes and a tree, the CPU in index order, and WGSL's sqrt / division are not
//! correctly rounded (WGSL spec accuracy: x / y 2.5 ULP, sqrt as 1 / inverseSqrt, inverseSqrt
//! 2 ULP), so the bounds below follow from those, per element (u = 2^-24, n = hidden):
//! - a sum of n terms: each side is within (n-1)·u (CPU) and (n/256 + 8)·u (GPU) of Σ|terms|:
//!   E_sum = (n + n/256 + 8)·u relative to Σ|terms|;
//! - rms_norm: inv = 1 / sqrt(ss / n + eps) takes half the relative error of its argument
//!   plus about 10 ULP of divisions and square roots: E_inv = E_sum / 2 + 10·u; then two
//!   correctly rounded multiplies: |Δy| <= (E_inv + 3u)·|y|;
//! - layer_norm: the mean is off by δm <= E_sum·Σ|x| / n + 3u·|mean| on each side; (x - mean)
//!   is then off by 2δm absolutely, and |Δy| <= |w|·inv·(2δm + |x - mean|·(E_inv + 3u)) +
//!   2u·|y| (the variance moves only by n·δm², second order, folded into E_inv's slack).
//!
//! With the hidden sizes here (<= 1000) that is a relative error of at most ~3e-5.
mod common;
use common::{check_within, gpu, Rng, U};
use lowbit_core::kernels::norm::{layer_norm, rms_norm};
use lowbit_gpu::kernels::norm;

fn e_sum(n: usize) -> f64 {
    (n as f64 + n as f64 / 256.0 + 8.0) * U
}

#[test]
fn norms_match_the_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0xda942042e4dd58b5);
    let (mut worst_rms, mut worst_ln) = (0f64, 0f64);
    for &(rows, hidden) in &[(1, 1), (3, 37), (2, 256), (5, 300), (1, 576), (4, 1000)] {
        let mut x = rng.vec(rows * hidden, 1.0);
        // a row with an offset (LayerNorm subtracts a large mean), and an all-zero row
        if rows > 2 {
            x[hidden..2 * hidden].iter_mut().for_each(|v| *v += 3.0);
            x[2 * hidden..3 * hidden].iter_mut().for_each(|v| *v = 0.0);
        }
        let w: Vec<f32> = rng.vec(hidden, 0.3).iter().map(|v| v + 1.0).collect();
        let b = rng.vec(hidden, 0.1);
        for eps in [1e-5f32, 1e-6] {
            let mut want = vec![0f32; x.len()];
            rms_norm(&x, hidden, &w, eps, &mut want).unwrap();
            let got = norm::rms_norm(&gpu, &x, rows, hidden, &w, eps).unwrap();
            let bound = e_sum(hidden) / 2.0 + 13.0 * U;
            worst_rms = worst_rms.max(check_within(&format!("rms_norm [{rows}, {hidden}] eps={eps}"), &got, &want, |i| bound * want[i].abs() as f64));

            for bias in [None, Some(&b[..])] {
                let mut want = vec![0f32; x.len()];
                layer_norm(&x, hidden, &w, bias, eps, &mut want).unwrap();
                let got = norm::layer_norm(&gpu, &x, rows, hidden, &w, bias, eps).unwrap();
                // per-row statistics in f64 for the bound
                let stats: Vec<(f64, f64, f64)> = x
                    .chunks(hidden)
                    .map(|r| {
                        let n = hidden as f64;
                        let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n;
                        let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                        let dm = e_sum(hidden) * r.iter().map(|v| v.abs() as f64).sum::<f64>() / n + 3.0 * U * mean.abs();
                        (mean, 1.0 / (var + eps as f64).sqrt(), dm)
                    })
                    .collect();
                let e_inv = e_sum(hidden) / 2.0 + 10.0 * U;
                let what = format!("layer_norm [{rows}, {hidden}] eps={eps} bias={}", bias.is_some());
                worst_ln = worst_ln.max(check_within(&what, &got, &want, |i| {
                    let (r, c) = (i / hidden, i % hidden);
                    let (mean, inv, dm) = stats[r];
                    let d = (x[i] as f64 - mean).abs();
                    w[c].abs() as f64 * inv * (2.0 * dm + d * (e_inv + 3.0 * U)) + 2.0 * U * want[i].abs() as f64
                }));
            }
        }
    }
    eprintln!("norms: largest |Δ| / bound: rms_norm {worst_rms:.3}, layer_norm {worst_ln:.3}");
}

#[test]
fn norms_refuse_bad_shapes() {
    let Some(gpu) = gpu() else { return };
    assert!(norm::rms_norm(&gpu, &[1.0; 6], 2, 3, &[1.0; 2], 1e-5).unwrap_err().contains("weight"));
    assert!(norm::rms_norm(&gpu, &[1.0; 5], 2, 3, &[1.0; 3], 1e-5).is_err());
    assert!(norm::layer_norm(&gpu, &[1.0; 6], 2, 3, &[1.0; 3], Some(&[0.0; 2]), 1e-5).unwrap_err().contains("bias"));
    assert!(norm::layer_norm(&gpu, &[], 0, 3, &[1.0; 3], None, 1e-5).is_err());
}
