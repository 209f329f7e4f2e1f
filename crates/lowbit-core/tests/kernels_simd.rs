//! SIMD128 inference kernels against their scalar references: same f32 products, other
//! summation order, so |Δ| <= (K+1)·2^-22·(Σ|x·w| + |bias|) (see kernels/mod.rs). Only
//! compiled for wasm32 with simd128: `cargo test -p lowbit-core --target wasm32-unknown-unknown`.
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]

use lowbit_core::blockwise4::{decode, quantize_packed};
use lowbit_core::kernels::matmul4::{matmul4, Weight4};
use lowbit_core::{Kernel, QuantType4, BLOCKSIZES_4BIT};
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
        assert!((a - b).abs() <= tol || (a.is_nan() && b.is_nan()), "{what} [{i}]: {a} vs {b}, tol {tol}");
    }
}

#[test]
fn matmul4_simd_vs_scalar() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for &bs in &BLOCKSIZES_4BIT[..5] {
        for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
            for (n, k) in [(3, bs), (4, bs * 2 + 17), (5, 31), (2, 33), (7, bs + 1), (3, 3 * bs - 1)] {
                let wsrc = rng.vec(n * k, 2.0);
                let (packed, absmax) = quantize_packed(&wsrc, qt, bs, false, Kernel::Scalar).unwrap();
                let w = Weight4::new(&packed, &absmax, qt, bs, n, k).unwrap();
                let mut wf = vec![0f32; n * k];
                decode(&packed, &absmax, bs, qt, &mut wf, Kernel::Scalar).unwrap();
                for m in [1, 2, 3, 4, 5, 9] {
                    let x = rng.vec(m * k, 1.0);
                    let bias = rng.vec(n, 0.3);
                    for b in [None, Some(&bias[..])] {
                        let mut s = vec![0f32; m * n];
                        let mut v = vec![0f32; m * n];
                        matmul4(&x, m, &w, b, &mut s, Kernel::Scalar).unwrap();
                        matmul4(&x, m, &w, b, &mut v, Kernel::Simd128).unwrap();
                        within(&s, &v, &magnitudes(&x, m, &wf, n, k, b), k, &format!("{qt:?} bs={bs} n={n} k={k} m={m}"));
                    }
                }
            }
        }
    }
}

fn dense_simd<T: lowbit_core::dtype::SimdLoad>(rng: &mut Rng) {
    use lowbit_core::kernels::matmul_dense::matmul_dense;
    for (n, k) in [(3, 8), (5, 31), (4, 100), (1, 1), (7, 257), (2, 4096)] {
        let w: Vec<T> = rng.vec(n * k, 1.0).into_iter().map(T::from_f32).collect();
        let wf: Vec<f32> = w.iter().map(|v| v.to_f32()).collect();
        for m in [1, 2, 3, 4, 5, 9] {
            let x = rng.vec(m * k, 1.0);
            let bias = rng.vec(n, 0.2);
            for b in [None, Some(&bias[..])] {
                let mut s = vec![0f32; m * n];
                let mut v = vec![0f32; m * n];
                matmul_dense(&x, m, &w, n, k, b, &mut s, Kernel::Scalar).unwrap();
                matmul_dense(&x, m, &w, n, k, b, &mut v, Kernel::Simd128).unwrap();
                within(&s, &v, &magnitudes(&x, m, &wf, n, k, b), k, &format!("dense {} n={n} k={k} m={m}", core::any::type_name::<T>()));
            }
        }
    }
}

#[test]
fn dense_simd_vs_scalar() {
    use lowbit_core::{bf16, f16};
    let mut rng = Rng(3);
    dense_simd::<f32>(&mut rng);
    dense_simd::<f16>(&mut rng);
    dense_simd::<bf16>(&mut rng);
}
