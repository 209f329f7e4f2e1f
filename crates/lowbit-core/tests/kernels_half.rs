//! matmul4_half (4-bit weights with an f16 / bf16 compute dtype) against a direct emulation of
//! what bitsandbytes + torch do on the CPU: round x, w and bias to the dtype, sum the f32
//! products in k order, add the bias, round the output. The scalar kernel must match it bit for
//! bit; the SIMD kernel within the summation-order bound before the final rounding (checked as:
//! equal, or one ulp of the dtype apart).
mod common;

use common::Rng;
use lowbit_core::blockwise4::quantize_packed;
use lowbit_core::kernels::matmul4::Weight4;
use lowbit_core::kernels::matmul4_half::matmul4_half;
use lowbit_core::{bf16, f16, Float, Kernel, QuantType4};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn emulate<T: Float>(x: &[f32], m: usize, wf: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let r = |v: f32| T::from_f32(v).to_f32();
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for kk in 0..k {
                acc += r(x[i * k + kk]) * r(wf[j * k + kk]);
            }
            out[i * n + j] = r(acc + bias.map_or(0.0, |b| r(b[j])));
        }
    }
    out
}

fn check<T: Float + lowbit_core::dtype::SimdLoad>(name: &str) {
    let mut rng = Rng(0x5151_2024);
    for &(n, k, bs, m) in &[(7, 64, 64, 1), (9, 100, 32, 3), (33, 200, 64, 2), (300, 48, 128, 1), (5, 4096, 4096, 4)] {
        for qt in [QuantType4::Nf4, QuantType4::Fp4] {
            let w32 = rng.vec(n * k, 0.05);
            let (packed, absmax) = quantize_packed(&w32, qt, bs, false, Kernel::Scalar).unwrap();
            let mut wf = vec![0f32; n * k];
            lowbit_core::blockwise4::decode(&packed, &absmax, bs, qt, &mut wf, Kernel::Scalar).unwrap();
            let x = rng.vec(m * k, 1.0);
            let bias = (n % 2 == 1).then(|| rng.vec(n, 0.1));
            let w = Weight4::new(&packed, &absmax, qt, bs, n, k).unwrap();
            let want = emulate::<T>(&x, m, &wf, n, k, bias.as_deref());
            let mut got = vec![0f32; m * n];
            matmul4_half::<T>(&x, m, &w, bias.as_deref(), &mut got, Kernel::Scalar).unwrap();
            assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{name} scalar {qt:?} n={n} k={k} bs={bs} m={m}");
            let mut simd = vec![0f32; m * n];
            matmul4_half::<T>(&x, m, &w, bias.as_deref(), &mut simd, Kernel::best()).unwrap();
            for (idx, (a, b)) in simd.iter().zip(&want).enumerate() {
                // values of the dtype are consecutive in their bits' order (same sign)
                let ulps = (T::from_f32(*a).to_f32().to_bits() as i64 - b.to_bits() as i64).abs() >> if name == "bf16" { 16 } else { 13 };
                assert!(a == b || ulps <= 1, "{name} simd {qt:?} n={n} k={k} m={m} [{idx}]: {a} vs {b}");
            }
        }
    }
}

#[test]
fn f16_compute_matches_the_emulation() {
    check::<f16>("f16");
}

#[test]
fn bf16_compute_matches_the_emulation() {
    check::<bf16>("bf16");
}

#[test]
fn bad_shapes_are_errors() {
    let packed = vec![0u8; 32];
    let absmax = vec![1f32; 1];
    let w = Weight4::new(&packed, &absmax, QuantType4::Nf4, 64, 1, 64).unwrap();
    let mut out = vec![0f32; 1];
    assert!(matmul4_half::<f16>(&[0.0; 63], 1, &w, None, &mut out, Kernel::Scalar).is_err());
    assert!(matmul4_half::<f16>(&[0.0; 64], 1, &w, Some(&[0.0, 1.0]), &mut out, Kernel::Scalar).is_err());
}
