//! Inference kernels (`lowbit_core::kernels`) against straightforward scalar / f64
//! computations. Runs natively and in wasm (`Kernel::best()` is SIMD128 there).

use lowbit_core::blockwise4::quantize_packed;
use lowbit_core::kernels::matmul4::{gemv4, matmul4, matmul4_reference, Weight4};
use lowbit_core::{ErrorKind, Kernel, QuantType4};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::Rng;

/// |got - exact| <= (terms + 1) * 2^-22 * magnitude: the f32 summation bound (see kernels/mod.rs).
fn close(got: f32, exact: f64, terms: usize, magnitude: f64, what: &str) {
    let tol = (terms as f64 + 1.0) * 2f64.powi(-22) * magnitude + 1e-30;
    assert!((got as f64 - exact).abs() <= tol, "{what}: got {got}, exact {exact}, tol {tol}");
}

/// Dequantized weight in f64 from the f32 products `value * absmax` (exact in f64).
fn dequant_f64(w: &Weight4) -> Vec<f64> {
    let values = &lowbit_core::codebook::Codebook4::get(w.quant_type).values;
    (0..w.n * w.k)
        .map(|f| {
            let b = w.packed[f / 2];
            let nib = if f % 2 == 0 { b >> 4 } else { b & 15 };
            (values[nib as usize] * w.absmax.get(f / w.blocksize)) as f64
        })
        .collect()
}

#[test]
fn matmul4_matches_reference_and_f64() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
        for (n, k, bs) in [(3, 64, 64), (5, 100, 64), (7, 33, 32), (4, 256, 128), (2, 1000, 256), (9, 17, 32), (1, 4097, 4096), (6, 48, 32)] {
            let wf = rng.vec(n * k, 1.0);
            let (packed, absmax) = quantize_packed(&wf, qt, bs, false, Kernel::Scalar).unwrap();
            let w = Weight4::new(&packed, &absmax, qt, bs, n, k).unwrap();
            let wd = dequant_f64(&w);
            for m in [1, 2, 5] {
                let x = rng.vec(m * k, 0.5);
                let bias = rng.vec(n, 0.1);
                for b in [None, Some(&bias[..])] {
                    let r = matmul4_reference(&x, m, &w, b).unwrap();
                    let mut s = vec![0f32; m * n];
                    matmul4(&x, m, &w, b, &mut s, Kernel::Scalar).unwrap();
                    assert_eq!(r.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "scalar == reference {qt:?} n={n} k={k} bs={bs} m={m}");
                    let mut v = vec![0f32; m * n];
                    matmul4(&x, m, &w, b, &mut v, Kernel::best()).unwrap();
                    for i in 0..m {
                        for j in 0..n {
                            let mut exact = 0f64;
                            let mut mag = 0f64;
                            for kk in 0..k {
                                // the products are f32 products in both kernels
                                let p = (x[i * k + kk] * wd[j * k + kk] as f32) as f64;
                                exact += p;
                                mag += p.abs();
                            }
                            let bj = b.map_or(0.0, |b| b[j] as f64);
                            exact += bj;
                            mag += bj.abs();
                            close(s[i * n + j], exact, k, mag, "scalar vs f64");
                            close(v[i * n + j], exact, k, mag, "best vs f64");
                        }
                    }
                    if m == 1 {
                        let mut g = vec![0f32; n];
                        gemv4(&x, &w, b, &mut g, Kernel::best()).unwrap();
                        assert_eq!(g, v);
                    }
                }
            }
        }
    }
}

#[test]
fn matmul4_rejects_bad_shapes() {
    let wf = vec![0.5f32; 6 * 10];
    let (packed, absmax) = quantize_packed(&wf, QuantType4::Nf4, 32, false, Kernel::Scalar).unwrap();
    assert_eq!(Weight4::new(&packed, &absmax, QuantType4::Nf4, 32, 6, 11).unwrap_err().kind, ErrorKind::LengthMismatch);
    assert_eq!(Weight4::new(&packed, &absmax, QuantType4::Nf4, 48, 6, 10).unwrap_err().kind, ErrorKind::UnsupportedBlocksize);
    assert_eq!(Weight4::new(&packed, &absmax[1..], QuantType4::Nf4, 32, 6, 10).unwrap_err().kind, ErrorKind::InconsistentState);
    assert_eq!(Weight4::new(&packed, &absmax, QuantType4::Nf4, 32, usize::MAX, 2).unwrap_err().kind, ErrorKind::InvalidArgument);
    let w = Weight4::new(&packed, &absmax, QuantType4::Nf4, 32, 6, 10).unwrap();
    let mut out = vec![0f32; 6];
    for kernel in [Kernel::Scalar, Kernel::Simd128] {
        assert_eq!(matmul4(&[1.0; 9], 1, &w, None, &mut out, kernel).unwrap_err().kind, ErrorKind::LengthMismatch);
        assert_eq!(matmul4(&[1.0; 10], 1, &w, Some(&[0.0; 5]), &mut out, kernel).unwrap_err().kind, ErrorKind::LengthMismatch);
        assert_eq!(matmul4(&[1.0; 10], 1, &w, None, &mut out[..5], kernel).unwrap_err().kind, ErrorKind::LengthMismatch);
        assert_eq!(matmul4(&[], 0, &w, None, &mut [], kernel).unwrap_err().kind, ErrorKind::EmptyTensor);
        assert_eq!(matmul4(&[1.0; 10], usize::MAX, &w, None, &mut out, kernel).unwrap_err().kind, ErrorKind::InvalidArgument);
    }
}

// ------------------------------------------------------------------ dense matmul

fn dense_check<T: lowbit_core::dtype::SimdLoad>(rng: &mut Rng) {
    use lowbit_core::kernels::matmul_dense::{gemv_dense, matmul_dense};
    for (n, k) in [(3, 8), (5, 31), (4, 100), (1, 1), (7, 257)] {
        let w: Vec<T> = rng.vec(n * k, 1.0).into_iter().map(T::from_f32).collect();
        for m in [1, 3, 6] {
            let x = rng.vec(m * k, 1.0);
            let bias = rng.vec(n, 0.2);
            for b in [None, Some(&bias[..])] {
                for kernel in [Kernel::Scalar, Kernel::best()] {
                    let mut y = vec![0f32; m * n];
                    matmul_dense(&x, m, &w, n, k, b, &mut y, kernel).unwrap();
                    for i in 0..m {
                        for j in 0..n {
                            let (mut e, mut mag) = (0f64, 0f64);
                            for kk in 0..k {
                                let p = (x[i * k + kk] * w[j * k + kk].to_f32()) as f64;
                                e += p;
                                mag += p.abs();
                            }
                            let bj = b.map_or(0.0, |b| b[j] as f64);
                            close(y[i * n + j], e + bj, k, mag + bj.abs(), "dense");
                        }
                    }
                    if m == 1 {
                        let mut g = vec![0f32; n];
                        gemv_dense(&x, &w, n, k, b, &mut g, kernel).unwrap();
                        assert_eq!(g, y);
                    }
                }
            }
        }
    }
    let w = vec![T::from_f32(1.0); 6];
    assert_eq!(matmul_dense(&[1.0; 3], 1, &w, 2, 3, None, &mut [0.0; 3], Kernel::best()).unwrap_err().kind, ErrorKind::LengthMismatch);
    assert_eq!(matmul_dense(&[1.0; 3], 1, &w, 3, 3, None, &mut [0.0; 3], Kernel::best()).unwrap_err().kind, ErrorKind::LengthMismatch);
}

#[test]
fn dense_matmul_all_dtypes() {
    let mut rng = Rng(77);
    dense_check::<f32>(&mut rng);
    dense_check::<lowbit_core::f16>(&mut rng);
    dense_check::<lowbit_core::bf16>(&mut rng);
}

// ------------------------------------------------------------------ norms, activations

#[test]
fn norms_match_f64() {
    use lowbit_core::kernels::norm::{layer_norm, rms_norm};
    let mut rng = Rng(5);
    for hidden in [1, 7, 64, 333] {
        let x = rng.vec(3 * hidden, 2.0);
        let w = rng.vec(hidden, 1.0);
        let b = rng.vec(hidden, 1.0);
        let mut y = vec![0f32; x.len()];
        rms_norm(&x, hidden, &w, 1e-6, &mut y).unwrap();
        for r in 0..3 {
            let xr = &x[r * hidden..(r + 1) * hidden];
            let ms = xr.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / hidden as f64;
            let inv = 1.0 / (ms + 1e-6f32 as f64).sqrt();
            for j in 0..hidden {
                let e = xr[j] as f64 * inv * w[j] as f64;
                assert!((y[r * hidden + j] as f64 - e).abs() <= 1e-6 * (hidden as f64) * (xr[j] as f64 * inv * w[j] as f64).abs() + 1e-30, "rms {hidden}");
            }
        }
        for bias in [None, Some(&b[..])] {
            layer_norm(&x, hidden, &w, bias, 1e-5, &mut y).unwrap();
            for r in 0..3 {
                let xr = &x[r * hidden..(r + 1) * hidden];
                let mean = xr.iter().map(|v| *v as f64).sum::<f64>() / hidden as f64;
                let var = xr.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / hidden as f64;
                let inv = 1.0 / (var + 1e-5f32 as f64).sqrt();
                for j in 0..hidden {
                    let e = (xr[j] as f64 - mean) * inv * w[j] as f64 + bias.map_or(0.0, |b| b[j] as f64);
                    let tol = 1e-6 * hidden as f64 * ((xr[j] as f64).abs() + mean.abs() + 1.0) * inv * (w[j] as f64).abs() + 1e-6;
                    assert!((y[r * hidden + j] as f64 - e).abs() <= tol, "layernorm {hidden}: {} vs {e}", y[r * hidden + j]);
                }
            }
        }
    }
    assert_eq!(rms_norm(&[1.0; 5], 2, &[1.0; 2], 1e-6, &mut [0.0; 5]).unwrap_err().kind, ErrorKind::LengthMismatch);
    assert_eq!(layer_norm(&[1.0; 4], 2, &[1.0; 3], None, 1e-6, &mut [0.0; 4]).unwrap_err().kind, ErrorKind::LengthMismatch);
    assert_eq!(rms_norm(&[], 0, &[], 1e-6, &mut []).unwrap_err().kind, ErrorKind::EmptyTensor);
}

/// erf by its Taylor series in f64 (|z| <= 4: terms up to ~1e5, error ~1e-11).
fn erf_series(z: f64) -> f64 {
    let (mut term, mut sum, mut n) = (z, z, 0.0f64);
    while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
        n += 1.0;
        term *= -z * z / n;
        sum += term / (2.0 * n + 1.0);
        if n > 200.0 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn activations_match_f64() {
    use lowbit_core::kernels::activation::*;
    let xs: Vec<f32> = (-600..=600).map(|i| i as f32 / 100.0).chain([0.0, -0.0, 1e-6, -1e-6, 20.0, -20.0, 80.0, -80.0]).collect();
    for &x in &xs {
        let xd = x as f64;
        let s = xd / (1.0 + (-xd).exp());
        assert!((silu(x) as f64 - s).abs() <= 4e-7 * s.abs() + 1e-37, "silu({x}) = {} vs {s}", silu(x));
        if xd.abs() <= 5.0 {
            // erfc relative error 1.2e-7 plus the f32 rounding (series cancellation ~1e-10 at 5)
            let g = 0.5 * xd * (1.0 + erf_series(xd / 2f64.sqrt()));
            assert!((gelu(x) as f64 - g).abs() <= 2.5e-7 * g.abs() + 1e-9, "gelu({x}) = {} vs {g}", gelu(x));
        } else if xd > 0.0 {
            assert!((gelu(x) as f64 - xd).abs() <= 1e-6 * xd, "gelu({x})");
        } else {
            assert!(gelu(x) <= 0.0 && (gelu(x) as f64) >= -1e-6 * xd.abs(), "gelu({x}) = {}", gelu(x));
        }
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let t = 0.5 * xd * (1.0 + (c * (xd + 0.044715 * xd * xd * xd)).tanh());
        // f32 like torch: 1 + tanh(..) cancels for x << 0, an absolute error of ~|x|·2^-24
        assert!((gelu_tanh(x) as f64 - t).abs() <= 1e-6 * t.abs() + xd.abs() * 2f64.powi(-23) + 1e-30, "gelu_tanh({x}) = {} vs {t}", gelu_tanh(x));
    }
    let gate = [1.0f32, -2.0, 3.5];
    let up = [0.5f32, 2.0, -1.0];
    let mut out = [0f32; 3];
    swiglu(&gate, &up, &mut out).unwrap();
    for i in 0..3 {
        assert_eq!(out[i], silu(gate[i]) * up[i]);
    }
    assert_eq!(swiglu(&gate, &up[..2], &mut out).unwrap_err().kind, ErrorKind::LengthMismatch);
    let mut v = gate.to_vec();
    silu_inplace(&mut v);
    assert_eq!(v[1], silu(-2.0));
    gelu_inplace(&mut v);
    gelu_tanh_inplace(&mut v);
}

#[test]
fn softmax_stable() {
    use lowbit_core::kernels::softmax::{softmax_inplace, softmax_rows};
    let mut x = vec![1000.0f32, 1001.0, 999.0, f32::NEG_INFINITY];
    softmax_inplace(&mut x);
    let e = [1f64, std::f64::consts::E, 1.0 / std::f64::consts::E];
    let s: f64 = e.iter().sum();
    for i in 0..3 {
        assert!((x[i] as f64 - e[i] / s).abs() < 1e-7);
    }
    assert_eq!(x[3], 0.0);
    let mut m = vec![f32::NEG_INFINITY; 2];
    softmax_inplace(&mut m);
    assert_eq!(m, [0.0, 0.0]);
    let mut r = vec![0.0f32; 6];
    softmax_rows(&mut r, 3).unwrap();
    assert!(r.iter().all(|v| (*v - 1.0 / 3.0).abs() < 1e-7));
    assert_eq!(softmax_rows(&mut r, 4).unwrap_err().kind, ErrorKind::LengthMismatch);
}

#[test]
fn embedding_gathers_rows() {
    use lowbit_core::kernels::embedding::embedding;
    let table: Vec<lowbit_core::bf16> = (0..12).map(|i| lowbit_core::bf16::from_f32(i as f32 * 0.5)).collect();
    let mut out = vec![0f32; 9];
    embedding(&table, 3, &[3, 0, 3], &mut out).unwrap();
    assert_eq!(out, [4.5, 5.0, 5.5, 0.0, 0.5, 1.0, 4.5, 5.0, 5.5]);
    let e = embedding(&table, 3, &[1, 4, 0], &mut out).unwrap_err();
    assert_eq!((e.kind, e.index), (ErrorKind::InvalidArgument, Some(1)));
    assert_eq!(embedding(&table, 5, &[0], &mut out[..5]).unwrap_err().kind, ErrorKind::LengthMismatch);
}

// ------------------------------------------------------------------ RoPE

#[test]
fn rope_inv_freq_and_rotation() {
    use lowbit_core::kernels::rope::{apply_rope, inv_freq, Llama3Scaling};
    let d = 64;
    let f = inv_freq(d, 10000.0, None).unwrap();
    for (i, v) in f.iter().enumerate() {
        let e = 1.0 / 10000f64.powf((2 * i) as f64 / d as f64);
        assert!((*v as f64 - e).abs() <= 2.5e-7 * e, "inv_freq[{i}]");
    }
    // Llama 3.1 scaling (factor 8, low 1, high 4, original 8192), theta 500000, head_dim 128:
    // checked piecewise in f64.
    let s = Llama3Scaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192.0 };
    let base = inv_freq(128, 500000.0, None).unwrap();
    let sc = inv_freq(128, 500000.0, Some(&s)).unwrap();
    let (mut kept, mut divided, mut mixed) = (0, 0, 0);
    for (b, v) in base.iter().zip(&sc) {
        let wl = 2.0 * std::f64::consts::PI / *b as f64;
        let e = if wl < 8192.0 / 4.0 {
            kept += 1;
            *b as f64
        } else if wl > 8192.0 {
            divided += 1;
            *b as f64 / 8.0
        } else {
            mixed += 1;
            let sm = (8192.0 / wl - 1.0) / 3.0;
            (1.0 - sm) * *b as f64 / 8.0 + sm * *b as f64
        };
        assert!((*v as f64 - e).abs() <= 1e-5 * e, "llama3 inv_freq {v} vs {e}");
    }
    assert!(kept > 0 && divided > 0 && mixed > 0, "{kept} {divided} {mixed}");
    assert!(inv_freq(7, 10000.0, None).is_err());
    assert!(inv_freq(8, 10000.0, Some(&Llama3Scaling { high_freq_factor: 1.0, ..s })).is_err());

    // rotation: two tokens, two heads, head_dim 8
    let hd = 8;
    let f = inv_freq(hd, 10000.0, None).unwrap();
    let mut rng = Rng(9);
    let x = rng.vec(2 * 2 * hd, 1.0);
    let mut y = x.clone();
    let pos = [5usize, 1234];
    apply_rope(&mut y, 2, hd, &pos, &f).unwrap();
    for t in 0..2 {
        for h in 0..2 {
            let o = (t * 2 + h) * hd;
            for i in 0..hd / 2 {
                let a = (pos[t] as f32 * f[i]) as f64;
                let (x1, x2) = (x[o + i] as f64, x[o + i + hd / 2] as f64);
                assert!((y[o + i] as f64 - (x1 * a.cos() - x2 * a.sin())).abs() < 1e-6);
                assert!((y[o + i + hd / 2] as f64 - (x2 * a.cos() + x1 * a.sin())).abs() < 1e-6);
            }
        }
    }
    assert_eq!(apply_rope(&mut y, 2, hd, &pos[..1], &f).unwrap_err().kind, ErrorKind::LengthMismatch);
}

// ------------------------------------------------------------------ attention

#[test]
fn attention_gqa_with_cache() {
    use lowbit_core::kernels::attention::{attention, AttentionShape};
    let mut rng = Rng(11);
    for (n_heads, n_kv, hd) in [(4, 2, 8), (3, 3, 5), (8, 1, 16)] {
        let shape = AttentionShape { n_heads, n_kv_heads: n_kv, head_dim: hd, max_pos: 10 };
        let kc = rng.vec(10 * n_kv * hd, 1.0);
        let vc = rng.vec(10 * n_kv * hd, 1.0);
        for (start, n_new) in [(0, 1), (0, 4), (3, 1), (5, 5)] {
            let q = rng.vec(n_new * n_heads * hd, 1.0);
            let mut out = vec![0f32; q.len()];
            attention(&q, n_new, start, &kc, &vc, &shape, None, &mut out).unwrap();
            for t in 0..n_new {
                for h in 0..n_heads {
                    let kvh = h / (n_heads / n_kv);
                    let len = start + t + 1;
                    let sc: Vec<f64> = (0..len)
                        .map(|p| (0..hd).map(|d| q[(t * n_heads + h) * hd + d] as f64 * kc[(p * n_kv + kvh) * hd + d] as f64).sum::<f64>() / (hd as f64).sqrt())
                        .collect();
                    let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let ex: Vec<f64> = sc.iter().map(|s| (s - mx).exp()).collect();
                    let z: f64 = ex.iter().sum();
                    for d in 0..hd {
                        let e: f64 = (0..len).map(|p| ex[p] / z * vc[(p * n_kv + kvh) * hd + d] as f64).sum();
                        let got = out[(t * n_heads + h) * hd + d] as f64;
                        assert!((got - e).abs() < 1e-5, "attn h={h} t={t} d={d}: {got} vs {e}");
                    }
                }
            }
        }
        let q = vec![0f32; n_heads * hd];
        let mut out = vec![0f32; q.len()];
        assert_eq!(attention(&q, 1, 10, &kc, &vc, &shape, None, &mut out).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(attention(&q, 1, 0, &kc[1..], &vc, &shape, None, &mut out).unwrap_err().kind, ErrorKind::LengthMismatch);
    }
    let bad = AttentionShape { n_heads: 3, n_kv_heads: 2, head_dim: 4, max_pos: 2 };
    assert_eq!(attention(&[0.0; 12], 1, 0, &[0.0; 16], &[0.0; 16], &bad, None, &mut [0.0; 12]).unwrap_err().kind, ErrorKind::InvalidArgument);
}

#[test]
fn attention_softcap_and_sliding_window() {
    // Gemma 2 / 3: scores capped as cap * tanh(s / cap) after the scale; a query at position p
    // sees positions p - window < j <= p only. Checked against an f64 re-computation.
    use lowbit_core::kernels::attention::{attention_with, AttentionExtras, AttentionShape};
    let mut rng = Rng(12);
    let (n_heads, n_kv, hd, max_pos) = (4, 2, 8, 12);
    let shape = AttentionShape { n_heads, n_kv_heads: n_kv, head_dim: hd, max_pos };
    // large values so that the cap bites (|q·k| * scale well above the cap)
    let kc = rng.vec(max_pos * n_kv * hd, 3.0);
    let vc = rng.vec(max_pos * n_kv * hd, 1.0);
    for (softcap, window) in [(Some(2.0f32), None), (None, Some(3usize)), (Some(1.5), Some(4)), (None, Some(1))] {
        let extras = AttentionExtras { softcap, window };
        for (start, n_new) in [(0, 6), (5, 1), (2, 7), (11, 1)] {
            let q = rng.vec(n_new * n_heads * hd, 3.0);
            let mut out = vec![0f32; q.len()];
            attention_with(&q, n_new, start, &kc, &vc, &shape, Some(0.3), extras, &mut out).unwrap();
            for t in 0..n_new {
                let len = start + t + 1;
                let lo = window.map_or(0, |w| len.saturating_sub(w));
                for h in 0..n_heads {
                    let kvh = h / (n_heads / n_kv);
                    let sc: Vec<f64> = (lo..len)
                        .map(|p| {
                            let s = (0..hd).map(|d| q[(t * n_heads + h) * hd + d] as f64 * kc[(p * n_kv + kvh) * hd + d] as f64).sum::<f64>() * 0.3;
                            softcap.map_or(s, |c| (s / c as f64).tanh() * c as f64)
                        })
                        .collect();
                    let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let ex: Vec<f64> = sc.iter().map(|s| (s - mx).exp()).collect();
                    let z: f64 = ex.iter().sum();
                    for d in 0..hd {
                        let e: f64 = (lo..len).map(|p| ex[p - lo] / z * vc[(p * n_kv + kvh) * hd + d] as f64).sum();
                        let got = out[(t * n_heads + h) * hd + d] as f64;
                        assert!((got - e).abs() < 1e-5, "{extras:?} start={start} t={t} h={h} d={d}: {got} vs {e}");
                    }
                }
            }
        }
    }
    let q = vec![0f32; n_heads * hd];
    let mut out = vec![0f32; q.len()];
    for bad in [AttentionExtras { softcap: Some(0.0), window: None }, AttentionExtras { softcap: Some(f32::NAN), window: None }, AttentionExtras { softcap: None, window: Some(0) }] {
        assert_eq!(attention_with(&q, 1, 0, &kc, &vc, &shape, None, bad, &mut out).unwrap_err().kind, ErrorKind::InvalidArgument);
    }
}

// ------------------------------------------------------------------ LLM.int8

#[test]
fn int8_matmul_bnb_cpu_formula() {
    use lowbit_core::int8::vectorwise_quant;
    use lowbit_core::kernels::matmul_int8::{matmul_int8, WeightInt8, BNB_CPU_MM_DEQUANT_SCALE, INV127};
    use lowbit_core::f16;
    let mut rng = Rng(21);
    for (m, n, k) in [(1, 5, 16), (4, 7, 33), (3, 2, 100)] {
        // weights: Int8Params quantizes W cast to f16 with threshold 0
        let wsrc: Vec<f16> = rng.vec(n * k, 0.5).into_iter().map(f16::from_f32).collect();
        let wq = vectorwise_quant(&wsrc, &[n, k], 0.0).unwrap();
        let w = WeightInt8::new(&wq.cb, &wq.scb, n, k).unwrap();
        let mut a = rng.vec(m * k, 1.0);
        a[3] = 9.0; // outliers in columns 3 and k-2
        a[(m - 1) * k + k - 2] = -7.5;
        let bias = rng.vec(n, 0.1);
        for threshold in [0.0f32, 6.0] {
            for b in [None, Some(&bias[..])] {
                let mut out = vec![0f32; m * n];
                matmul_int8(&a, m, &w, threshold, b, &mut out, Kernel::Scalar).unwrap();
                // the SIMD kernel sums the same integers exactly: same bits
                let mut best = vec![0f32; m * n];
                matmul_int8(&a, m, &w, threshold, b, &mut best, Kernel::best()).unwrap();
                assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), best.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                let a16: Vec<f16> = a.iter().map(|v| f16::from_f32(*v)).collect();
                let qa = vectorwise_quant(&a16, &[m, k], threshold).unwrap();
                let cols = qa.outlier_cols.clone().unwrap_or_default();
                if threshold > 0.0 {
                    assert!(cols.contains(&3) && cols.contains(&(k as u32 - 2)), "{cols:?}");
                }
                for i in 0..m {
                    for j in 0..n {
                        let acc: i64 = (0..k).map(|kk| qa.cb[i * k + kk] as i64 * wq.cb[j * k + kk] as i64).sum();
                        let mut e = (acc as f32 * (qa.scb[i] * wq.scb[j]) * BNB_CPU_MM_DEQUANT_SCALE) as f64 + b.map_or(0.0, |b| b[j] as f64);
                        let mut mag = e.abs();
                        for &c in &cols {
                            let c = c as usize;
                            let sb = f16::from_f32(wq.cb[j * k + c] as f32 * wq.scb[j] * INV127).to_f32() as f64;
                            e += a16[i * k + c].to_f32() as f64 * sb;
                            mag += (a16[i * k + c].to_f32() as f64 * sb).abs();
                        }
                        close(out[i * n + j], e, cols.len() + 2, mag, "int8 formula");
                        // and it approximates the float matmul (int8 quantization error)
                        let exact: f64 = (0..k).map(|kk| a[i * k + kk] as f64 * wsrc[j * k + kk].to_f32() as f64).sum::<f64>() + b.map_or(0.0, |b| b[j] as f64);
                        let scale: f64 = (0..k).map(|kk| (a[i * k + kk] as f64 * wsrc[j * k + kk].to_f32() as f64).abs()).sum();
                        assert!((out[i * n + j] as f64 - exact).abs() <= 0.05 * scale + 1e-3, "int8 accuracy {} vs {exact}", out[i * n + j]);
                    }
                }
            }
        }
    }
    let w = WeightInt8::new(&[1i8; 6], &[1.0; 2], 2, 3).unwrap();
    for kernel in [Kernel::Scalar, Kernel::best()] {
        assert_eq!(matmul_int8(&[1.0; 2], 1, &w, 0.0, None, &mut [0.0; 2], kernel).unwrap_err().kind, ErrorKind::LengthMismatch);
        assert_eq!(matmul_int8(&[1.0; 3], 1, &w, -1.0, None, &mut [0.0; 2], kernel).unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(matmul_int8(&[], 0, &w, 0.0, None, &mut [], kernel).unwrap_err().kind, ErrorKind::EmptyTensor);
    }
    assert_eq!(WeightInt8::new(&[1i8; 6], &[1.0; 3], 2, 3).unwrap_err().kind, ErrorKind::LengthMismatch);
}
