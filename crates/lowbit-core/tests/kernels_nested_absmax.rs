//! 4-bit kernels reading a double-quantized absmax kept compressed (`Absmax4::Nested`) against the
//! same kernels on the f32 absmax `double_quant::decompress` rebuilds: the same bits for every
//! path (scalar, factored GEMV, panel GEMM, the reference, the f16 / bf16 compute dtypes), every
//! 4-bit type, m = 1..9, ragged shapes, nested blocks ending inside rows, f32 / f16 / bf16
//! nested dtypes, and thread-style slices (codes from a block boundary, a phase into the first
//! nested block). Runs natively and in wasm (`Kernel::best()` is SIMD128 there).

mod common;

use common::Rng;
use lowbit_core::blockwise4::quantize_packed;
use lowbit_core::blockwise8::quantize_blockwise;
use lowbit_core::codebook::dynamic_map_signed;
use lowbit_core::double_quant::{compress, decompress};
use lowbit_core::kernels::matmul4::{matmul4, matmul4_reference, Absmax4, NestedAbsmax4, Weight4};
use lowbit_core::kernels::matmul4_half::matmul4_half;
use lowbit_core::quant_state::{Absmax, NestedAbsmax, QuantState};
use lowbit_core::{bf16, f16, DType, ErrorKind, Kernel, QuantType4};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Double-quantizes `absmax` with nested blocks of `nbs` (bitsandbytes uses 256; smaller ones put
/// many nested boundaries inside the rows of a small test weight).
fn nest(absmax: &[f32], nbs: usize, dtype: DType) -> NestedAbsmax {
    let mut n = compress(absmax).unwrap();
    if nbs != n.blocksize {
        let centered: Vec<f32> = absmax.iter().map(|&a| a - n.offset).collect();
        let (q, a) = quantize_blockwise(&centered, dynamic_map_signed(), nbs, false).unwrap();
        n.quantized = q;
        n.absmax = a;
        n.blocksize = nbs;
    }
    n.dtype = dtype;
    n
}

/// Every path of matmul4 (Scalar, best) and matmul4_half, plus the reference: `nested` == `plain`.
fn same_outputs(x: &[f32], m: usize, plain: &Weight4, nested: &Weight4, bias: Option<&[f32]>, what: &str) {
    let len = m * plain.n;
    for kernel in [Kernel::Scalar, Kernel::best()] {
        let (mut a, mut b) = (vec![0f32; len], vec![0f32; len]);
        matmul4(x, m, plain, bias, &mut a, kernel).unwrap();
        matmul4(x, m, nested, bias, &mut b, kernel).unwrap();
        assert_eq!(bits(&a), bits(&b), "{what} {kernel:?}");
        matmul4_half::<f16>(x, m, plain, bias, &mut a, kernel).unwrap();
        matmul4_half::<f16>(x, m, nested, bias, &mut b, kernel).unwrap();
        assert_eq!(bits(&a), bits(&b), "{what} {kernel:?} f16");
        matmul4_half::<bf16>(x, m, plain, bias, &mut a, kernel).unwrap();
        matmul4_half::<bf16>(x, m, nested, bias, &mut b, kernel).unwrap();
        assert_eq!(bits(&a), bits(&b), "{what} {kernel:?} bf16");
    }
    let (a, b) = (matmul4_reference(x, m, plain, bias).unwrap(), matmul4_reference(x, m, nested, bias).unwrap());
    assert_eq!(bits(&a), bits(&b), "{what} reference");
}

#[test]
fn nested_absmax_kernels_equal_f32_absmax_kernels() {
    let mut rng = Rng(0xd0_0b1e);
    for &bs in &[32usize, 64, 128] {
        for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
            // ragged K (blocks spanning rows), K % 32 == 0 (aligned GEMV), several panels
            for (n, k) in [(5, 31), (7, bs + 1), (9, 96), (4, 2 * bs + 17), (17, 64), (12, 3 * bs - 1)] {
                let wsrc = rng.vec(n * k, 2.0);
                let (packed, absmax) = quantize_packed(&wsrc, qt, bs, false, Kernel::Scalar).unwrap();
                for (nbs, dtype) in [(3, DType::F32), (4, DType::F16), (5, DType::BF16), (256, DType::F32)] {
                    let nst = nest(&absmax, nbs, dtype);
                    let rebuilt = decompress(&nst).unwrap();
                    let plain = Weight4::new(&packed, &rebuilt, qt, bs, n, k).unwrap();
                    let nested = Weight4::with_absmax(&packed, Absmax4::Nested(NestedAbsmax4::from_state(&nst).unwrap()), qt, bs, n, k).unwrap();
                    assert_eq!(bits(&nested.absmax.to_vec()), bits(&rebuilt));
                    for m in 1..=9 {
                        let x = rng.vec(m * k, 1.0);
                        let bias = rng.vec(n, 0.3);
                        let b = (m % 2 == 0).then_some(&bias[..]);
                        same_outputs(&x, m, &plain, &nested, b, &format!("{qt:?} bs={bs} n={n} k={k} nbs={nbs} {dtype:?} m={m}"));
                    }
                }
            }
        }
    }
}

/// bitsandbytes' nested blocksize 256 on a weight of 750 blocks: the nested boundaries (every
/// 8192 weights) fall inside rows of 1000.
#[test]
fn nested_blocks_of_256_inside_rows() {
    let mut rng = Rng(256);
    let (n, k, bs) = (24, 1000, 32);
    let (packed, absmax) = quantize_packed(&rng.vec(n * k, 1.0), QuantType4::Nf4, bs, false, Kernel::Scalar).unwrap();
    let st = QuantState { quant_type: QuantType4::Nf4, blocksize: bs, dtype: DType::F16, shape: vec![n, k], code: [0.0; 16], absmax: Absmax::Nested(compress(&absmax).unwrap()) };
    let rebuilt = st.absmax_f32().unwrap();
    let plain = Weight4::new(&packed, &rebuilt, QuantType4::Nf4, bs, n, k).unwrap();
    let nested = Weight4::from_state(&packed, &st).unwrap();
    assert!(matches!(nested.absmax, Absmax4::Nested(_)));
    for m in [1, 2, 3, 4, 9] {
        let x = rng.vec(m * k, 1.0);
        same_outputs(&x, m, &plain, &nested, None, &format!("m={m}"));
    }
}

/// A slice of rows [r0, r1) as a thread holds it: codes from block b0 = r0·k / bs, the nested
/// entries from b0 / nbs, phase b0 % nbs. Its outputs are the whole weight's columns r0..r1.
#[test]
fn slices_with_a_phase_equal_the_whole_weight() {
    let mut rng = Rng(99);
    for (k, bs, nbs) in [(48, 32, 5), (64, 64, 3), (200, 32, 256), (96, 128, 7)] {
        let n = 64;
        let (packed, absmax) = quantize_packed(&rng.vec(n * k, 1.0), QuantType4::Fp4, bs, false, Kernel::Scalar).unwrap();
        let nst = nest(&absmax, nbs, DType::F32);
        let whole = Weight4::with_absmax(&packed, Absmax4::Nested(NestedAbsmax4::from_state(&nst).unwrap()), QuantType4::Fp4, bs, n, k).unwrap();
        // rows per step that start slices on block boundaries
        let step = (1..=n).find(|r| r * k % bs == 0).unwrap();
        for m in [1, 2, 5] {
            let x = rng.vec(m * k, 1.0);
            let mut full = vec![0f32; m * n];
            matmul4(&x, m, &whole, None, &mut full, Kernel::best()).unwrap();
            let mut r0 = 0;
            while r0 < n {
                let r1 = (r0 + 3 * step).min(n);
                let (b0, b1) = (r0 * k / bs, (r1 * k).div_ceil(bs));
                let a = NestedAbsmax4::new(&nst.quantized[b0..b1], &nst.code, &nst.absmax[b0 / nbs..b1.div_ceil(nbs)], nbs, b0 % nbs, nst.offset, nst.dtype).unwrap();
                let part = Weight4::with_absmax(&packed[r0 * k / 2..(r1 * k).div_ceil(2)], Absmax4::Nested(a), QuantType4::Fp4, bs, r1 - r0, k).unwrap();
                let mut out = vec![0f32; m * (r1 - r0)];
                matmul4(&x, m, &part, None, &mut out, Kernel::best()).unwrap();
                for i in 0..m {
                    assert_eq!(bits(&out[i * (r1 - r0)..(i + 1) * (r1 - r0)]), bits(&full[i * n + r0..i * n + r1]), "k={k} bs={bs} nbs={nbs} m={m} rows {r0}..{r1}");
                }
                r0 = r1;
            }
        }
    }
}

#[test]
fn bad_nested_absmax_is_an_error() {
    let code = dynamic_map_signed().to_vec();
    let codes = [1u8; 10];
    let ok = NestedAbsmax4::new(&codes, &code, &[1.0, 2.0, 3.0], 4, 0, 0.5, DType::F32).unwrap();
    let e = |r: lowbit_core::Result<NestedAbsmax4>| r.unwrap_err().kind;
    assert_eq!(e(NestedAbsmax4::new(&codes, &code, &[1.0, 2.0], 4, 0, 0.5, DType::F32)), ErrorKind::InconsistentState);
    // phase 3: codes span nested blocks 0..4 (3 + 10 = 13 codes from the first one's start)
    assert!(NestedAbsmax4::new(&codes, &code, &[1.0; 4], 4, 3, 0.5, DType::F32).is_ok());
    assert_eq!(e(NestedAbsmax4::new(&codes, &code, &[1.0; 3], 4, 3, 0.5, DType::F32)), ErrorKind::InconsistentState);
    assert_eq!(e(NestedAbsmax4::new(&codes, &code, &[1.0; 3], 4, 4, 0.5, DType::F32)), ErrorKind::InconsistentState);
    assert_eq!(e(NestedAbsmax4::new(&codes, &code, &[1.0; 3], 0, 0, 0.5, DType::F32)), ErrorKind::InconsistentState);
    assert_eq!(e(NestedAbsmax4::new(&codes, &code[..255], &[1.0; 3], 4, 0, 0.5, DType::F32)), ErrorKind::InvalidArgument);
    assert_eq!(e(NestedAbsmax4::new(&codes, &code, &[1.0; 3], 4, 0, 0.5, DType::U8)), ErrorKind::UnsupportedDtype);
    assert_eq!(e(NestedAbsmax4::new(&codes, &code, &[1.0; 3], 4, 0, f32::NAN, DType::F32)), ErrorKind::InconsistentState);
    // 10 codes = 10 blocks of 32: a [4, 80] weight (320 elements) fits, [4, 96] does not
    let packed = [0u8; 160];
    assert!(Weight4::with_absmax(&packed, Absmax4::Nested(ok), QuantType4::Nf4, 32, 4, 80).is_ok());
    let packed = [0u8; 192];
    assert_eq!(Weight4::with_absmax(&packed, Absmax4::Nested(ok), QuantType4::Nf4, 32, 4, 96).unwrap_err().kind, ErrorKind::InconsistentState);
}
