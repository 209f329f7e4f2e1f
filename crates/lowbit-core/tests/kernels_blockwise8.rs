//! Block-wise 8-bit linear layers (`kernels::matmul_blockwise8`): the scalar kernel against its
//! dequantize-then-matmul reference (bit for bit), the best kernel (SIMD128 in wasm) against the
//! scalar one and against f64 within the summation bound of kernels/mod.rs, both codes (the
//! dynamic map of `quantize_blockwise` and GGUF Q8_0's int8 code), ragged shapes, bad inputs.
//! Runs natively and in wasm (`cargo test -p lowbit-core --target wasm32-unknown-unknown`).

use lowbit_core::blockwise8::quantize_blockwise;
use lowbit_core::codebook::dynamic_map_signed;
use lowbit_core::formats::gguf::{dequantize, GgmlType};
use lowbit_core::kernels::matmul_blockwise8::{gemv_blockwise8, is_int8_code, matmul_blockwise8, matmul_blockwise8_reference, Weight8, INT8_CODE};
use lowbit_core::{f16, ErrorKind, Kernel};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::Rng;

/// The f32 weights `code[q] * absmax` (what dequantize_blockwise gives).
fn dequant(q: &[u8], absmax: &[f32], code: &[f32], bs: usize) -> Vec<f32> {
    q.iter().enumerate().map(|(f, &c)| code[c as usize] * absmax[f / bs]).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

/// A weight in one of the two codes: dynamic map from quantize_blockwise of Gaussian data, or
/// int8 with random bytes and f16-representable scales (some blocks zero), as Q8_0 stores them.
fn make(rng: &mut Rng, int8: bool, n: usize, k: usize, bs: usize) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    if int8 {
        let q: Vec<u8> = (0..n * k).map(|_| (rng.next() * 256.0) as u8).collect();
        let absmax = (0..(n * k).div_ceil(bs)).map(|b| if b % 7 == 3 { 0.0 } else { f16::from_f32(rng.normal() * 0.01).to_f32() }).collect();
        (q, absmax, INT8_CODE.to_vec())
    } else {
        let src = rng.vec(n * k, 1.0);
        let (q, absmax) = quantize_blockwise(&src, dynamic_map_signed(), bs, false).unwrap();
        (q, absmax, dynamic_map_signed().to_vec())
    }
}

/// Asserts |got - exact| <= (k + 1)·2^-22·(Σ|x·w| + |bias|) for every output, exact in f64 from the f32 products.
#[allow(clippy::too_many_arguments)]
fn check_bound(got: &[f32], x: &[f32], m: usize, wf: &[f32], n: usize, k: usize, bias: Option<&[f32]>, what: &str) {
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut mag) = (0f64, 0f64);
            for kk in 0..k {
                let p = (x[i * k + kk] * wf[j * k + kk]) as f64;
                exact += p;
                mag += p.abs();
            }
            let b = bias.map_or(0.0, |b| b[j] as f64);
            exact += b;
            mag += b.abs();
            let tol = (k as f64 + 1.0) * 2f64.powi(-22) * mag + 1e-30;
            let g = got[i * n + j] as f64;
            assert!((g - exact).abs() <= tol, "{what} [{i}, {j}]: got {g}, exact {exact}, tol {tol}");
        }
    }
}

#[test]
fn blockwise8_matches_reference_and_bound() {
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    // (n, k, blocksize): whole blocks per row, blocks spanning rows (k % bs != 0, bs > k), odd sizes,
    // rows shorter than one SIMD chunk, one partial final block.
    let shapes = [(3, 64, 32), (5, 100, 64), (7, 33, 32), (4, 256, 128), (2, 1000, 256), (9, 17, 32), (1, 4097, 4096), (6, 48, 32), (3, 5, 32), (11, 40, 64), (2, 160, 32)];
    for int8 in [true, false] {
        for (n, k, bs) in shapes {
            let (q, absmax, code) = make(&mut rng, int8, n, k, bs);
            let w = Weight8::new(&q, &absmax, &code, bs, n, k).unwrap();
            assert_eq!(w.is_int8_code(), int8);
            let wf = dequant(&q, &absmax, &code, bs);
            for m in 1..=9 {
                let x = rng.vec(m * k, 0.5);
                let bias = rng.vec(n, 0.1);
                for b in [None, Some(&bias[..])] {
                    let what = format!("int8={int8} n={n} k={k} bs={bs} m={m} bias={}", b.is_some());
                    let r = matmul_blockwise8_reference(&x, m, &w, b).unwrap();
                    let mut s = vec![0f32; m * n];
                    matmul_blockwise8(&x, m, &w, b, &mut s, Kernel::Scalar).unwrap();
                    assert_eq!(bits(&r), bits(&s), "scalar == reference {what}");
                    check_bound(&s, &x, m, &wf, n, k, b, &format!("scalar {what}"));
                    // Simd128 (the scalar code on builds without it) and best(): same products, other order.
                    for kernel in [Kernel::Simd128, Kernel::best()] {
                        let mut v = vec![0f32; m * n];
                        matmul_blockwise8(&x, m, &w, b, &mut v, kernel).unwrap();
                        check_bound(&v, &x, m, &wf, n, k, b, &format!("{kernel:?} {what}"));
                        if m == 1 {
                            let mut g = vec![0f32; n];
                            gemv_blockwise8(&x, &w, b, &mut g, kernel).unwrap();
                            assert_eq!(bits(&g), bits(&v), "gemv == matmul m=1 {what}");
                        }
                    }
                }
            }
        }
    }
}

/// With one activation equal to 1 and the rest 0, every output is exactly one weight (up to the
/// sign of a zero): the SIMD
/// decoding (int8 widening + convert, or table lookups) must give `code[q] * absmax` bit for bit.
#[test]
fn blockwise8_decodes_each_weight_exactly() {
    let mut rng = Rng(99);
    for int8 in [true, false] {
        let (n, k, bs) = (5, 75, 32);
        let (q, absmax, code) = make(&mut rng, int8, n, k, bs);
        let w = Weight8::new(&q, &absmax, &code, bs, n, k).unwrap();
        let wf = dequant(&q, &absmax, &code, bs);
        for kernel in [Kernel::Scalar, Kernel::Simd128] {
            // m = 1 and m = k (identity activations) take the two SIMD paths.
            let mut eye = vec![0f32; k * k];
            (0..k).for_each(|i| eye[i * k + i] = 1.0);
            let mut y = vec![0f32; k * n];
            matmul_blockwise8(&eye, k, &w, None, &mut y, kernel).unwrap();
            for c in 0..k {
                for j in 0..n {
                    // == rather than bits: a zero weight may come out as either signed zero.
                    assert_eq!(y[c * n + j], wf[j * k + c], "int8={int8} {kernel:?} W[{j}, {c}]");
                }
                let mut g = vec![0f32; n];
                gemv_blockwise8(&eye[c * k..(c + 1) * k], &w, None, &mut g, kernel).unwrap();
                assert_eq!(g, y[c * n..(c + 1) * n]);
            }
        }
    }
}

/// GGUF Q8_0 (32 int8 along a row, one f16 scale): the int8 code with absmax = f32(d) gives
/// exactly the weights of the GGUF dequantizer (ggml's `d * qs[j]` in f32).
#[test]
fn q8_0_blocks_are_bit_exact() {
    let mut rng = Rng(2024);
    let (n, k) = (6, 96);
    let mut raw = Vec::new();
    let mut q = Vec::new();
    let mut absmax = Vec::new();
    for b in 0..n * k / 32 {
        let d = if b == 4 { f16::from_bits(0x0001) } else { f16::from_f32(rng.normal() * 0.003) }; // one subnormal scale
        raw.extend_from_slice(&d.to_bits().to_le_bytes());
        absmax.push(d.to_f32());
        for _ in 0..32 {
            let v = (rng.next() * 256.0) as u8;
            raw.push(v);
            q.push(v);
        }
    }
    let mut ggml = vec![0f32; n * k];
    dequantize(GgmlType::Q8_0, &raw, &mut ggml).unwrap();
    let w = Weight8::new(&q, &absmax, &INT8_CODE, 32, n, k).unwrap();
    assert_eq!(bits(&dequant(&q, &absmax, &INT8_CODE, 32)), bits(&ggml));
    let x = rng.vec(k, 1.0);
    let r = matmul_blockwise8_reference(&x, 1, &w, None).unwrap();
    for j in 0..n {
        let mut acc = 0f32;
        for c in 0..k {
            acc += x[c] * ggml[j * k + c];
        }
        assert_eq!(r[j].to_bits(), acc.to_bits());
    }
}

#[test]
fn int8_code_detection() {
    assert!(is_int8_code(&INT8_CODE));
    assert_eq!((INT8_CODE[0], INT8_CODE[127], INT8_CODE[128], INT8_CODE[255]), (0.0, 127.0, -128.0, -1.0));
    assert!(!is_int8_code(dynamic_map_signed()));
    // -0.0 for 0 is another table (bitwise), so the general path must run; both agree anyway.
    let mut other = INT8_CODE;
    other[0] = -0.0;
    assert!(!is_int8_code(&other));
    assert!(!is_int8_code(&INT8_CODE[..255]));
    let q: Vec<u8> = (0..64).map(|i| (i * 37) as u8).collect();
    let absmax = [0.5f32, 0.25];
    let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.1 - 1.0).collect();
    let a = Weight8::new(&q, &absmax, &INT8_CODE, 32, 2, 32).unwrap();
    let b = Weight8::new(&q, &absmax, &other, 32, 2, 32).unwrap();
    assert!(a.is_int8_code() && !b.is_int8_code());
    let (mut ya, mut yb) = (vec![0f32; 2], vec![0f32; 2]);
    matmul_blockwise8(&x, 1, &a, None, &mut ya, Kernel::best()).unwrap();
    matmul_blockwise8(&x, 1, &b, None, &mut yb, Kernel::best()).unwrap();
    let wf = dequant(&q, &absmax, &INT8_CODE, 32);
    check_bound(&ya, &x, 1, &wf, 2, 32, None, "int8");
    check_bound(&yb, &x, 1, &wf, 2, 32, None, "general");
}

#[test]
fn blockwise8_rejects_bad_inputs() {
    let code = dynamic_map_signed();
    let q = vec![7u8; 6 * 10];
    let absmax = vec![1.0f32; 2];
    let kind = |r: lowbit_core::Result<Weight8>| r.unwrap_err().kind;
    assert_eq!(kind(Weight8::new(&q, &absmax, &code[..255], 32, 6, 10)), ErrorKind::InvalidArgument);
    assert_eq!(kind(Weight8::new(&q, &absmax, &[], 32, 6, 10)), ErrorKind::InvalidArgument);
    assert_eq!(kind(Weight8::new(&q, &absmax, code, 48, 6, 10)), ErrorKind::UnsupportedBlocksize);
    assert_eq!(kind(Weight8::new(&q, &absmax, code, 0, 6, 10)), ErrorKind::UnsupportedBlocksize);
    assert_eq!(kind(Weight8::new(&q, &absmax, code, 32, 6, 11)), ErrorKind::LengthMismatch);
    assert_eq!(kind(Weight8::new(&q[1..], &absmax, code, 32, 6, 10)), ErrorKind::LengthMismatch);
    assert_eq!(kind(Weight8::new(&q, &absmax[1..], code, 32, 6, 10)), ErrorKind::InconsistentState);
    assert_eq!(kind(Weight8::new(&q, &[1.0; 3], code, 32, 6, 10)), ErrorKind::InconsistentState);
    assert_eq!(kind(Weight8::new(&q, &absmax, code, 32, 0, 10)), ErrorKind::EmptyTensor);
    assert_eq!(kind(Weight8::new(&[], &[], code, 32, 6, 0)), ErrorKind::EmptyTensor);
    assert_eq!(kind(Weight8::new(&q, &absmax, code, 32, usize::MAX, 2)), ErrorKind::InvalidArgument);
    let w = Weight8::new(&q, &absmax, code, 32, 6, 10).unwrap();
    let mut out = vec![0f32; 6];
    for kernel in [Kernel::Scalar, Kernel::Simd128] {
        let err = |r: lowbit_core::Result<()>| r.unwrap_err().kind;
        assert_eq!(err(matmul_blockwise8(&[1.0; 9], 1, &w, None, &mut out, kernel)), ErrorKind::LengthMismatch);
        assert_eq!(err(matmul_blockwise8(&[1.0; 10], 1, &w, Some(&[0.0; 5]), &mut out, kernel)), ErrorKind::LengthMismatch);
        assert_eq!(err(matmul_blockwise8(&[1.0; 10], 1, &w, None, &mut out[..5], kernel)), ErrorKind::LengthMismatch);
        assert_eq!(err(matmul_blockwise8(&[], 0, &w, None, &mut [], kernel)), ErrorKind::EmptyTensor);
        assert_eq!(err(matmul_blockwise8(&[1.0; 10], usize::MAX, &w, None, &mut out, kernel)), ErrorKind::InvalidArgument);
        assert_eq!(err(gemv_blockwise8(&[1.0; 10], &w, None, &mut out[..4], kernel)), ErrorKind::LengthMismatch);
        assert_eq!(matmul_blockwise8_reference(&[1.0; 11], 1, &w, None).unwrap_err().kind, ErrorKind::LengthMismatch);
    }
}
