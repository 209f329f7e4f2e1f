//! The SIMD128 kernels must give exactly the bits of the scalar references. Only meaningful
//! (and only compiled) for wasm32 with simd128: run with
//! `cargo test -p lowbit-core --target wasm32-unknown-unknown`.
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]

use lowbit_core::blockwise4::{decode, quantize_packed};
use lowbit_core::dtype::SimdLoad;
use lowbit_core::{bf16, f16, Float, Kernel, QuantType4, BLOCKSIZES_4BIT};
use wasm_bindgen_test::wasm_bindgen_test;

mod common;
use common::Rng;

/// Signal with the awkward cases: zero blocks, -0.0, tiny and huge values, exact ties.
fn signal<T: Float>(n: usize, seed: u64) -> Vec<T> {
    let mut r = Rng(seed);
    (0..n)
        .map(|i| {
            let v = match i % 97 {
                0 => -0.0,
                1 => 1e-6,
                2 => 0.0397901497,
                _ if (i / 64) % 11 == 3 => 0.0, // some all-zero 32/64 blocks
                _ if (i / 64) % 11 == 5 => r.normal() * 1e-6, // absmax < 2^-15: f16 subnormals, scale >= 2^15
                _ => r.normal() * if i % 13 == 0 { 40.0 } else { 1.0 },
            };
            T::from_f32(v)
        })
        .collect()
}

fn check_type<T: SimdLoad + std::fmt::Debug>(seed: u64) {
    for &bs in &BLOCKSIZES_4BIT {
        for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
            for n in [bs * 3, bs * 2 + 17, 1, 31, 33, bs + 1] {
                let x = signal::<T>(n, seed + n as u64);
                let (ps, as_) = quantize_packed(&x, qt, bs, false, Kernel::Scalar).unwrap();
                let (pv, av) = quantize_packed(&x, qt, bs, false, Kernel::Simd128).unwrap();
                assert_eq!(as_.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), av.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "absmax {qt:?} bs={bs} n={n}");
                assert_eq!(ps, pv, "codes {qt:?} bs={bs} n={n} {}", core::any::type_name::<T>());
                check_decode::<f32>(&ps, &as_, bs, qt, n);
                check_decode::<f16>(&ps, &as_, bs, qt, n);
                check_decode::<bf16>(&ps, &as_, bs, qt, n);
            }
        }
    }
}

fn check_decode<O: Float>(packed: &[u8], absmax: &[f32], bs: usize, qt: QuantType4, n: usize) {
    let mut a = vec![O::default(); n];
    let mut b = vec![O::default(); n];
    decode(packed, absmax, bs, qt, &mut a, Kernel::Scalar).unwrap();
    decode(packed, absmax, bs, qt, &mut b, Kernel::Simd128).unwrap();
    let bits = |v: &[O]| v.iter().map(|x| x.to_f32().to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "decode {qt:?} bs={bs} n={n} -> {}", core::any::type_name::<O>());
}

#[wasm_bindgen_test]
fn quantize_and_decode_f32() {
    check_type::<f32>(1);
}

#[wasm_bindgen_test]
fn quantize_and_decode_f16() {
    check_type::<f16>(2);
}

#[wasm_bindgen_test]
fn quantize_and_decode_bf16() {
    check_type::<bf16>(3);
}

#[wasm_bindgen_test]
fn f16_widening_is_exact_for_every_bit_pattern() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for (c, chunk) in all.chunks(4).enumerate() {
        // SAFETY: chunks of 4 from a 65536-element vector.
        let v = unsafe { f16::load4(chunk.as_ptr()) };
        let lanes: [f32; 4] = unsafe { core::mem::transmute(v) };
        for (i, (&got, h)) in lanes.iter().zip(chunk).enumerate() {
            let want = h.to_f32();
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "f16 bits {:#06x}", c * 4 + i);
        }
    }
}

#[wasm_bindgen_test]
fn nan_and_inf_are_rejected_by_both_kernels_at_the_same_index() {
    for k in [Kernel::Scalar, Kernel::Simd128] {
        let mut x = vec![0.5f32; 300];
        x[77] = f32::INFINITY;
        x[200] = f32::NAN;
        let e = quantize_packed(&x, QuantType4::Nf4, 64, false, k).unwrap_err();
        assert_eq!(e.index, Some(77));
    }
}
