//! The integer-activation 4-bit kernels (kernels/matmul4_int.rs, kernels/int_activations.rs):
//! - activation quantization: codes in -LEVELS..=LEVELS, |x − d·q| <= d/2 (+ one rounding), zero and
//!   non-finite blocks;
//! - the fast path against the EXACT f32 reference within the derived quantization bound
//!   Σ (d/2)|w| + Σ |d q|·absmax/(2s) (+ float slack), for every 4-bit type, plain and
//!   double-quantized absmax, m = 1..9 (GEMV and the 4-row GEMM groups), blocks spanning rows;
//! - `Kernel::best()` (SIMD128 or relaxed SIMD in wasm) against the scalar reference within
//!   `float_bound` (the same integers, other float order);
//! - shapes the integer path does not take are refused with an error, never a panic.
//! Runs natively (scalar) and in wasm (both builds).

mod common;

use common::Rng;
use lowbit_core::blockwise4::{decode, quantize_packed};
use lowbit_core::double_quant::compress;
use lowbit_core::kernels::matmul4::{matmul4_reference, Absmax4, NestedAbsmax4, Weight4};
use lowbit_core::kernels::matmul4_int::{float_bound, matmul4_int, matmul4_int_quantized, matmul4_int_reference, supports, Table16};
use lowbit_core::kernels::int_activations::{IntActivations, LEVELS, QK};
use lowbit_core::{ErrorKind, Kernel, QuantType4};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn activation_quantization_error_is_half_a_step() {
    let mut rng = Rng(7);
    let k = 96;
    let mut x = rng.vec(3 * k, 1.5);
    x[5] = 40.0; // one outlier makes its block's step coarse
    x[k..k + 32].fill(0.0); // a zero block
    let xq = IntActivations::new(&x, 3, k).unwrap();
    assert_eq!(xq.d.len(), 3 * k / QK);
    assert_eq!(xq.d[k / QK], 0.0);
    for (i, (&v, &q)) in x.iter().zip(&xq.q).enumerate() {
        let d = xq.d[i / QK];
        assert!((-(LEVELS as i16)..=LEVELS as i16).contains(&q), "code {q}");
        let err = (v - d * q as f32).abs();
        assert!(err <= d / 2.0 * (1.0 + 1e-5) + f32::EPSILON * v.abs(), "[{i}] {v} -> {q}·{d}: error {err}");
    }
    // the block maximum maps to the top code exactly
    assert_eq!(xq.q[5], LEVELS as i16);
}

#[test]
fn non_finite_activations_give_nan() {
    let mut x = vec![0.5f32; 64];
    x[40] = f32::INFINITY;
    let xq = IntActivations::new(&x, 1, 64).unwrap();
    assert!(xq.d[0].is_finite() && xq.d[1].is_nan());
    let (packed, absmax) = quantize_packed(&vec![0.25f32; 2 * 64], QuantType4::Nf4, 64, false, Kernel::Scalar).unwrap();
    let w = Weight4::new(&packed, &absmax, QuantType4::Nf4, 64, 2, 64).unwrap();
    let mut out = vec![0f32; 2];
    matmul4_int(&x, 1, &w, None, &mut out, Kernel::best()).unwrap();
    assert!(out.iter().all(|v| v.is_nan()), "{out:?}");
}

#[test]
fn refuses_what_it_cannot_take() {
    let (packed, absmax) = quantize_packed(&vec![0.25f32; 4 * 48], QuantType4::Nf4, 64, false, Kernel::Scalar).unwrap();
    let w = Weight4::new(&packed, &absmax, QuantType4::Nf4, 64, 4, 48).unwrap();
    assert!(!supports(&w));
    let mut out = vec![0f32; 4];
    let e = matmul4_int(&[0.5; 48], 1, &w, None, &mut out, Kernel::best()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    assert_eq!(IntActivations::new(&[0.5; 48], 1, 48).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(IntActivations::new(&[0.5; 64], 2, 64).unwrap_err().kind, ErrorKind::LengthMismatch);
    // activations of another width than the weight's
    let (packed, absmax) = quantize_packed(&vec![0.25f32; 2 * 64], QuantType4::Nf4, 64, false, Kernel::Scalar).unwrap();
    let w = Weight4::new(&packed, &absmax, QuantType4::Nf4, 64, 2, 64).unwrap();
    let xq = IntActivations::new(&[0.5; 32], 1, 32).unwrap();
    let e = matmul4_int_quantized(&xq, &w, None, &mut out[..2], Kernel::best()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LengthMismatch, "{e}");
}

#[test]
fn code_tables_round_the_code_values() {
    for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
        let t = Table16::get(qt);
        let values = lowbit_core::codebook::Codebook4::get(qt).values;
        for (c, (&ti, &v)) in t.t.iter().zip(&values).enumerate() {
            assert!((ti as f32 / t.scale - v).abs() <= 0.5 / t.scale + 1e-7, "{qt:?} code {c}: {ti} for {v}");
        }
    }
    // NF4's ends are exactly ±127
    assert_eq!(Table16::get(QuantType4::Nf4).t[0], -8191);
    assert_eq!(Table16::get(QuantType4::Nf4).t[15], 8191);
    // INT4 is exact: code q (two's complement nibble) is 1024·q
    let int4 = Table16::get(QuantType4::Int4);
    for c in 0..16 {
        assert_eq!(int4.t[c] as i32, 1024 * (((c as i8) << 4) >> 4) as i32);
    }
    // a chunk's exact sum fits i32: 32 products of |t| <= 8192 and |q| <= 8191
    assert!(32i64 * 8192 * 8191 < i32::MAX as i64);
}

/// Fast path vs the exact reference within the quantization bound, and best() vs scalar within
/// the float bound, for one weight.
fn check_weight(rng: &mut Rng, w: &Weight4, wf: &[f32], what: &str) {
    let (n, k) = (w.n, w.k);
    let scale = Table16::get(w.quant_type).scale as f64;
    for m in 1..=9 {
        let mut x = rng.vec(m * k, 1.0);
        if m == 5 {
            x[3] = 25.0; // an activation outlier
        }
        let bias = rng.vec(n, 0.3);
        for b in [None, Some(&bias[..])] {
            let xq = IntActivations::new(&x, m, k).unwrap();
            let reference = matmul4_int_reference(&xq, w, b).unwrap();
            let mut fast = vec![0f32; m * n];
            matmul4_int(&x, m, w, b, &mut fast, Kernel::best()).unwrap();
            let exact = matmul4_reference(&x, m, w, b).unwrap();
            for r in 0..m {
                for j in 0..n {
                    let i = r * n + j;
                    let fb = float_bound(&xq, w, b, r, j);
                    assert!((fast[i] - reference[i]).abs() <= fb, "{what} m={m} [{r},{j}]: best {} vs scalar {} (float bound {fb})", fast[i], reference[i]);
                    // quantization bound against the exact f32 product
                    let mut qb = 0f64;
                    let mut mag = 0f64;
                    for kk in 0..k {
                        let flat = j * k + kk;
                        let d = xq.d[r * (k / QK) + kk / QK] as f64;
                        let wk = wf[flat] as f64;
                        let amax = w.absmax.get(flat / w.blocksize) as f64;
                        qb += d / 2.0 * wk.abs() + (d * xq.q[r * k + kk] as f64).abs() * amax / (2.0 * scale);
                        mag += (x[r * k + kk] as f64 * wk).abs();
                    }
                    let slack = (k as f64 + 8.0) * 2f64.powi(-22) * (mag + b.map_or(0.0, |b| b[j].abs() as f64)) + fb as f64;
                    let err = (fast[i] as f64 - exact[i] as f64).abs();
                    assert!(err <= qb * (1.0 + 1e-4) + slack, "{what} m={m} [{r},{j}]: fast {} vs exact {}: error {err} > bound {qb} + {slack}", fast[i], exact[i]);
                }
            }
        }
    }
}

#[test]
fn fast_path_within_bounds_plain_absmax() {
    let mut rng = Rng(0x5eed_0001);
    for bs in [32usize, 64, 128, 256] {
        for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
            // K % bs == 0, K % bs != 0 (blocks spanning rows), several blocks per row
            for (n, k) in [(5, 64), (3, 96), (7, 160), (4, 2 * bs), (9, 32)] {
                let wsrc = rng.vec(n * k, 0.05);
                let (packed, absmax) = quantize_packed(&wsrc, qt, bs, false, Kernel::Scalar).unwrap();
                let w = Weight4::new(&packed, &absmax, qt, bs, n, k).unwrap();
                let mut wf = vec![0f32; n * k];
                decode(&packed, &absmax, bs, qt, &mut wf, Kernel::Scalar).unwrap();
                check_weight(&mut rng, &w, &wf, &format!("{qt:?} bs={bs} n={n} k={k}"));
            }
        }
    }
}

#[test]
fn fast_path_within_bounds_double_quant() {
    let mut rng = Rng(0x5eed_0002);
    let (n, k, bs) = (40, 192, 32); // 240 blocks: nested blocks of 256 end inside a row
    for qt in [QuantType4::Nf4, QuantType4::Fp4] {
        let wsrc = rng.vec(n * k, 0.05);
        let (packed, absmax) = quantize_packed(&wsrc, qt, bs, false, Kernel::Scalar).unwrap();
        let nested = compress(&absmax).unwrap();
        let a = NestedAbsmax4::from_state(&nested).unwrap();
        let w = Weight4::with_absmax(&packed, Absmax4::Nested(a), qt, bs, n, k).unwrap();
        let mut wf = vec![0f32; n * k];
        decode(&packed, &w.absmax.to_vec(), bs, qt, &mut wf, Kernel::Scalar).unwrap();
        check_weight(&mut rng, &w, &wf, &format!("{qt:?} nested"));
    }
}

#[test]
fn one_quantization_serves_several_layers() {
    let mut rng = Rng(11);
    let k = 128;
    let x = rng.vec(2 * k, 1.0);
    let xq = IntActivations::new(&x, 2, k).unwrap();
    for n in [3usize, 8] {
        let (packed, absmax) = quantize_packed(&rng.vec(n * k, 0.1), QuantType4::Nf4, 64, false, Kernel::Scalar).unwrap();
        let w = Weight4::new(&packed, &absmax, QuantType4::Nf4, 64, n, k).unwrap();
        let (mut a, mut b) = (vec![0f32; 2 * n], vec![0f32; 2 * n]);
        matmul4_int(&x, 2, &w, None, &mut a, Kernel::best()).unwrap();
        matmul4_int_quantized(&xq, &w, None, &mut b, Kernel::best()).unwrap();
        assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}

mod blockwise8 {
    //! The integer kernel for block-wise 8-bit weights with the int8 code (GGUF Q8_0).
    use super::common::Rng;
    use lowbit_core::kernels::matmul_blockwise8::{matmul_blockwise8_reference, Weight8, INT8_CODE};
    use lowbit_core::kernels::matmul_blockwise8_int::{float_bound, matmul_blockwise8_int, matmul_blockwise8_int_reference, supports};
    use lowbit_core::kernels::int_activations::{IntActivations, QK};
    use lowbit_core::{codebook::dynamic_map_signed, ErrorKind, Kernel};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn fast_path_within_bounds() {
        let mut rng = Rng(0x5eed_0003);
        for (n, k, bs) in [(5usize, 64usize, 32usize), (7, 96, 32), (3, 160, 64), (9, 32, 32), (4, 96, 64)] {
            let q: Vec<u8> = (0..n * k).map(|_| ((rng.next() * 255.0) as i32 - 127) as i8 as u8).collect();
            let absmax: Vec<f32> = (0..(n * k).div_ceil(bs)).map(|_| 0.001 + rng.next() * 0.01).collect();
            let w = Weight8::new(&q, &absmax, &INT8_CODE, bs, n, k).unwrap();
            assert!(supports(&w));
            for m in 1..=5 {
                let x = rng.vec(m * k, 1.0);
                let bias = rng.vec(n, 0.2);
                for b in [None, Some(&bias[..])] {
                    let xq = IntActivations::new(&x, m, k).unwrap();
                    let reference = matmul_blockwise8_int_reference(&xq, &w, b).unwrap();
                    let exact = matmul_blockwise8_reference(&x, m, &w, b).unwrap();
                    let mut fast = vec![0f32; m * n];
                    matmul_blockwise8_int(&x, m, &w, b, &mut fast, Kernel::best()).unwrap();
                    for r in 0..m {
                        for j in 0..n {
                            let i = r * n + j;
                            let fb = float_bound(&xq, &w, b, r, j);
                            assert!((fast[i] - reference[i]).abs() <= fb, "n={n} k={k} m={m} [{r},{j}]: {} vs {} (bound {fb})", fast[i], reference[i]);
                            let (mut qb, mut mag) = (0f64, 0f64);
                            for kk in 0..k {
                                let flat = j * k + kk;
                                let wk = (q[flat] as i8) as f64 * absmax[flat / bs] as f64;
                                qb += xq.d[r * (k / QK) + kk / QK] as f64 / 2.0 * wk.abs();
                                mag += (x[r * k + kk] as f64 * wk).abs();
                            }
                            let slack = (k as f64 + 8.0) * 2f64.powi(-22) * (mag + b.map_or(0.0, |b| b[j].abs() as f64)) + fb as f64;
                            let err = (fast[i] as f64 - exact[i] as f64).abs();
                            assert!(err <= qb * (1.0 + 1e-4) + slack, "n={n} k={k} m={m} [{r},{j}]: error {err} > {qb} + {slack}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn other_codes_and_shapes_are_refused() {
        let q = vec![3u8; 2 * 64];
        let absmax = vec![0.5f32; 4];
        let dynamic = Weight8::new(&q, &absmax, dynamic_map_signed(), 32, 2, 64).unwrap();
        assert!(!supports(&dynamic));
        let mut out = vec![0f32; 2];
        assert_eq!(matmul_blockwise8_int(&[0.1; 64], 1, &dynamic, None, &mut out, Kernel::best()).unwrap_err().kind, ErrorKind::InvalidArgument);
        let q = vec![3u8; 2 * 48];
        let ragged = Weight8::new(&q, &absmax[..3], &INT8_CODE, 32, 2, 48).unwrap();
        assert!(!supports(&ragged));
    }
}
