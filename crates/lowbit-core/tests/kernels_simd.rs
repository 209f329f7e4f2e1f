//! SIMD128 inference kernels against their scalar references (the bounds are derived in
//! kernels/mod.rs):
//! - GEMV (m = 1; 4-bit also m = 2, 3 when K % 32 == 0), 4-bit and dense:
//!   |Δ| <= (K+1)·2^-22·(Σ|x·w| + |bias|);
//! - GEMM (the other m), 4-bit and dense: the same bits in the SIMD128 build; within the GEMV
//!   bound in the relaxed-SIMD build, whose fused multiply-adds round once per product instead
//!   of twice (`simd::wasm128::madd`);
//! - LLM.int8 for every m: the same bits.
//!
//! Only compiled for wasm32 with simd128: `cargo test -p lowbit-core --target wasm32-unknown-unknown`.
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]

use lowbit_core::blockwise4::{decode, quantize_packed};
use lowbit_core::kernels::matmul4::{matmul4, Weight4};
use lowbit_core::kernels::matmul_dense::matmul_dense;
use lowbit_core::{bf16, f16, Kernel, QuantType4, BLOCKSIZES_4BIT};
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::Rng;

/// Σ|x·w| + |bias| per output, from f32 weights `wf` [n, k].
fn magnitudes(x: &[f32], m: usize, wf: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = bias.map_or(0.0, |b| b[j].abs() as f64);
            for kk in 0..k {
                s += ((x[i * k + kk] * wf[j * k + kk]) as f64).abs();
            }
            out[i * n + j] = s as f32;
        }
    }
    out
}

fn within(a: &[f32], b: &[f32], mag: &[f32], k: usize, what: &str) {
    for (i, ((a, b), m)) in a.iter().zip(b).zip(mag).enumerate() {
        let tol = (k as f32 + 1.0) * 2f32.powi(-22) * m;
        assert!(a == b || (a - b).abs() <= tol || (a.is_nan() && b.is_nan()), "{what} [{i}]: {a} vs {b}, tol {tol}");
    }
}

fn same_bits(a: &[f32], b: &[f32], what: &str) {
    for (i, (a, b)) in a.iter().zip(b).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what} [{i}]: {a} vs {b}");
    }
}

/// A GEMM against the scalar kernel: see the module docs.
fn gemm_matches(s: &[f32], v: &[f32], mag: &[f32], k: usize, what: &str) {
    #[cfg(target_feature = "relaxed-simd")]
    within(s, v, mag, k, what);
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let _ = (mag, k);
        same_bits(s, v, what);
    }
}

#[test]
fn matmul4_simd_vs_scalar() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for &bs in &BLOCKSIZES_4BIT[..5] {
        for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
            // ragged K (blocks spanning rows, odd K, K % 32 != 0), K % 32 == 0 with K % bs != 0
            // (aligned GEMV path, blocks spanning rows), n > 8 (several panels, partial last one)
            let shapes = [(3, bs), (4, bs * 2 + 17), (5, 31), (2, 33), (7, bs + 1), (3, 3 * bs - 1), (9, 96), (17, 64), (10, 1), (8, 160), (12, 2 * bs)];
            for (n, k) in shapes {
                let wsrc = rng.vec(n * k, 2.0);
                let (packed, absmax) = quantize_packed(&wsrc, qt, bs, false, Kernel::Scalar).unwrap();
                let w = Weight4::new(&packed, &absmax, qt, bs, n, k).unwrap();
                let mut wf = vec![0f32; n * k];
                decode(&packed, &absmax, bs, qt, &mut wf, Kernel::Scalar).unwrap();
                for m in 1..=9 {
                    let x = rng.vec(m * k, 1.0);
                    let bias = rng.vec(n, 0.3);
                    for b in [None, Some(&bias[..])] {
                        let mut s = vec![0f32; m * n];
                        let mut v = vec![0f32; m * n];
                        matmul4(&x, m, &w, b, &mut s, Kernel::Scalar).unwrap();
                        matmul4(&x, m, &w, b, &mut v, Kernel::Simd128).unwrap();
                        let what = format!("{qt:?} bs={bs} n={n} k={k} m={m} bias={}", b.is_some());
                        // the factored GEMV also serves m = 2, 3 when K % 32 == 0
                        if m == 1 || (m <= 3 && k % 32 == 0) {
                            within(&s, &v, &magnitudes(&x, m, &wf, n, k, b), k, &what);
                        } else {
                            gemm_matches(&s, &v, &magnitudes(&x, m, &wf, n, k, b), k, &what);
                        }
                    }
                }
            }
        }
    }
}

/// The factored GEMV is not bit-exact, but it must stay well inside the bound: on long rows
/// its error against an f64 evaluation of the dequantized weights is of the order of the
/// reference's own rounding error.
#[test]
fn gemv4_error_is_small_on_long_rows() {
    let mut rng = Rng(17);
    let (n, k, bs) = (16, 4096, 64);
    let wsrc = rng.vec(n * k, 1.0);
    let (packed, absmax) = quantize_packed(&wsrc, QuantType4::Nf4, bs, false, Kernel::Scalar).unwrap();
    let w = Weight4::new(&packed, &absmax, QuantType4::Nf4, bs, n, k).unwrap();
    let mut wf = vec![0f32; n * k];
    decode(&packed, &absmax, bs, QuantType4::Nf4, &mut wf, Kernel::Scalar).unwrap();
    let x = rng.vec(k, 1.0);
    let (mut s, mut v) = (vec![0f32; n], vec![0f32; n]);
    matmul4(&x, 1, &w, None, &mut s, Kernel::Scalar).unwrap();
    matmul4(&x, 1, &w, None, &mut v, Kernel::Simd128).unwrap();
    let (mut err_s, mut err_v, mut mag) = (0f64, 0f64, 0f64);
    for j in 0..n {
        let exact: f64 = (0..k).map(|kk| x[kk] as f64 * wf[j * k + kk] as f64).sum();
        mag += (0..k).map(|kk| (x[kk] as f64 * wf[j * k + kk] as f64).abs()).sum::<f64>();
        err_s += (s[j] as f64 - exact).abs();
        err_v += (v[j] as f64 - exact).abs();
    }
    // typical errors are ~sqrt(K)·2^-24 relative to Σ|x·w|, far below the K·2^-22 bound
    assert!(err_v <= 64.0 * 2f64.powi(-24) * mag && err_s <= 64.0 * 2f64.powi(-24) * mag, "simd {err_v:e}, scalar {err_s:e}, Σ|p| {mag:e}");
}

fn dense_simd<T: lowbit_core::dtype::SimdLoad>(rng: &mut Rng) {
    for (n, k) in [(3, 8), (5, 31), (4, 100), (1, 1), (7, 257), (2, 4096), (17, 24), (9, 7), (11, 16)] {
        let w: Vec<T> = rng.vec(n * k, 1.0).into_iter().map(T::from_f32).collect();
        let wf: Vec<f32> = w.iter().map(|v| v.to_f32()).collect();
        for m in 1..=9 {
            let x = rng.vec(m * k, 1.0);
            let bias = rng.vec(n, 0.2);
            for b in [None, Some(&bias[..])] {
                let mut s = vec![0f32; m * n];
                let mut v = vec![0f32; m * n];
                matmul_dense(&x, m, &w, n, k, b, &mut s, Kernel::Scalar).unwrap();
                matmul_dense(&x, m, &w, n, k, b, &mut v, Kernel::Simd128).unwrap();
                let what = format!("dense {} n={n} k={k} m={m}", core::any::type_name::<T>());
                if m == 1 {
                    within(&s, &v, &magnitudes(&x, m, &wf, n, k, b), k, &what);
                } else {
                    gemm_matches(&s, &v, &magnitudes(&x, m, &wf, n, k, b), k, &what);
                }
            }
        }
    }
}

#[test]
fn dense_simd_vs_scalar() {
    let mut rng = Rng(3);
    dense_simd::<f32>(&mut rng);
    dense_simd::<f16>(&mut rng);
    dense_simd::<bf16>(&mut rng);
}

/// Every 16-bit pattern as a weight, with a one-hot x: each output is a single product (plus
/// exact zeros), so the fast widenings must give exactly the scalar bits — subnormals, ±0,
/// Inf, NaN (rows holding Inf / NaN take the exact path), and x too large to pre-scale.
fn dense_every_pattern<T: lowbit_core::dtype::SimdLoad>(from_bits: fn(u16) -> T) {
    let k = 16;
    let n = 65536 / k;
    let w: Vec<T> = (0..65536u32).map(|b| from_bits(b as u16)).collect();
    // (position, value): x below 2^16 is pre-scaled by 2^112, -7e4 takes the unscaled path
    let cases = [(0, 1.0f32), (3, -3.7e-3), (8, 6.1e4), (15, 1.0e-40), (7, -7.0e4), (12, f32::MIN_POSITIVE), (1, 65504.0)];
    for (t, xv) in cases {
        let mut x = vec![0f32; k];
        x[t] = xv;
        for m in [1, 2] {
            let xm: Vec<f32> = x.iter().cycle().take(m * k).copied().collect();
            let mut s = vec![0f32; m * n];
            let mut v = vec![0f32; m * n];
            matmul_dense(&xm, m, &w, n, k, None, &mut s, Kernel::Scalar).unwrap();
            matmul_dense(&xm, m, &w, n, k, None, &mut v, Kernel::Simd128).unwrap();
            let what = format!("{} every pattern, x[{t}] = {xv:e}, m = {m}", core::any::type_name::<T>());
            if cfg!(target_feature = "relaxed-simd") && m > 1 {
                // one product per output: a fused multiply-add rounds it once too, but keeps the
                // sign of a product that underflows to zero (-0 where 0 + -0 gives +0)
                for (i, (a, b)) in s.iter().zip(&v).enumerate() {
                    assert!(a == b || (a.is_nan() && b.is_nan()), "{what} [{i}]: {a} vs {b}");
                }
            } else {
                same_bits(&s, &v, &what);
            }
        }
    }
}

#[test]
fn dense_f16_bf16_every_pattern() {
    dense_every_pattern::<f16>(f16::from_bits);
    dense_every_pattern::<bf16>(bf16::from_bits);
}

#[test]
fn int8_simd_vs_scalar() {
    use lowbit_core::int8::vectorwise_quant;
    use lowbit_core::kernels::matmul_int8::{matmul_int8, WeightInt8};
    let mut rng = Rng(99);
    for (n, k) in [(1, 1), (5, 15), (3, 16), (9, 17), (4, 100), (2, 300), (7, 64)] {
        let wsrc: Vec<f16> = rng.vec(n * k, 0.5).into_iter().map(f16::from_f32).collect();
        let wq = vectorwise_quant(&wsrc, &[n, k], 0.0).unwrap();
        let w = WeightInt8::new(&wq.cb, &wq.scb, n, k).unwrap();
        for m in 1..=9 {
            let mut a = rng.vec(m * k, 1.0);
            a[k / 2] = 8.5; // an outlier column for threshold 6
            let bias = rng.vec(n, 0.1);
            for threshold in [0.0f32, 6.0] {
                for b in [None, Some(&bias[..])] {
                    let mut s = vec![0f32; m * n];
                    let mut v = vec![0f32; m * n];
                    matmul_int8(&a, m, &w, threshold, b, &mut s, Kernel::Scalar).unwrap();
                    matmul_int8(&a, m, &w, threshold, b, &mut v, Kernel::Simd128).unwrap();
                    same_bits(&s, &v, &format!("int8 n={n} k={k} m={m} threshold={threshold}"));
                }
            }
        }
    }
}
