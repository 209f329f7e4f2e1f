//! matmul_int8.wgsl (int8_flags, int8_compact, int8_quant, int8_matmul) against lowbit-core's
//! LLM.int8 forward (crates/lowbit-core/src/kernels/matmul_int8.rs), with and without DOT4
//! (dot4I8Packed), with and without the outlier threshold, whole and split into parts.
//! The intermediates are exact: CA, SCA and the outlier columns equal
//! int8::vectorwise_quant of f16(x) bit for bit (integer sums and bit-level f16 / reciprocal).
//! The output repeats the CPU's float steps in its order, so it differs only by FMA
//! contraction: |Δ| <= (c + 2)·2^-22·(|main| + |bias| + Σ_outlier |a·subB|), c = outlier count.
mod common;
use common::{check_within, gpu, split_binding, Rng, U};
use lowbit_core::int8::vectorwise_quant;
use lowbit_core::kernels::matmul_int8::{matmul_int8, WeightInt8, BNB_CPU_MM_DEQUANT_SCALE, INV127};
use lowbit_core::{f16, Kernel};
use lowbit_gpu::kernels::MatmulInt8;

#[test]
fn matmul_int8_matches_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    let full_binding = gpu.weight_binding;
    let mut variants = vec![false];
    if gpu.dot4_available {
        variants.push(true);
    } else {
        eprintln!("this WGSL implementation has no packed_4x8_integer_dot_product: the DOT4 variant is not run");
    }
    let mut rng = Rng(0x853c49e6748fea9b);
    // (n, k, m): k % 4 != 0 pads CB / CA rows; m = 1 is the decode GEMV
    let cases = [(40, 64, 1), (37, 97, 1), (33, 130, 3), (70, 37, 5), (9, 256, 17), (3, 1, 2)];
    let mut worst = 0f64;
    let mut with_outliers = 0;
    for &(n, k, m) in &cases {
        let cb: Vec<i8> = (0..n * k).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
        let scb: Vec<f32> = (0..n).map(|_| rng.range(0.01, 0.5)).collect();
        let bias = if n % 2 == 1 { Some(rng.vec(n, 0.1)) } else { None };
        let mut x = rng.vec(m * k, 1.0);
        // a few outliers (|f16(x)| >= 6), one value just under the threshold, a zero row
        for t in 0..(k / 20).max(1) {
            let i = rng.below(m * k);
            x[i] = if t % 2 == 0 { rng.range(6.0, 20.0) } else { -rng.range(6.0, 20.0) };
        }
        x[rng.below(m * k)] = 5.998;
        if m > 2 {
            x[k..2 * k].iter_mut().for_each(|v| *v = 0.0);
        }
        let w = WeightInt8::new(&cb, &scb, n, k).unwrap();
        for threshold in [6.0f32, 0.0] {
            let mut want = vec![0f32; m * n];
            matmul_int8(&x, m, &w, threshold, bias.as_deref(), &mut want, Kernel::Scalar).unwrap();
            let a16: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            let q = vectorwise_quant(&a16, &[m, k], threshold).unwrap();
            let cols = q.outlier_cols.clone().unwrap_or_default();
            with_outliers += !cols.is_empty() as usize;
            for &dot4 in &variants {
                gpu.packed_dot = dot4;
                for binding in [full_binding, split_binding(k.div_ceil(4) * 4, 4, 0)] {
                    gpu.weight_binding = binding;
                    let g = MatmulInt8::new(&gpu, &cb, &scb, n, k, threshold, bias.as_deref()).unwrap();
                    let what = format!("n={n} k={k} m={m} threshold={threshold} dot4={dot4} parts={}", g.parts.len());
                    let out = g.forward(&gpu, &x, m).unwrap();
                    assert_eq!(out.ca, q.cb, "{what}: CA");
                    assert_eq!(out.sca.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), q.scb.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{what}: SCA");
                    assert_eq!(out.outlier_cols, q.outlier_cols, "{what}: outlier columns");
                    worst = worst.max(check_within(&what, &out.y, &want, |e| {
                        let (i, j) = (e / n, e % n);
                        let acc: i32 = (0..k).map(|c| q.cb[i * k + c] as i32 * cb[j * k + c] as i32).sum();
                        let main = acc as f32 * (q.scb[i] * scb[j]) * BNB_CPU_MM_DEQUANT_SCALE;
                        let outl: f64 = cols.iter().map(|&c| (a16[i * k + c as usize].to_f32() * f16::from_f32(cb[j * k + c as usize] as f32 * scb[j] * INV127).to_f32()).abs() as f64).sum();
                        let mag = main.abs() as f64 + bias.as_ref().map_or(0.0, |b| b[j].abs() as f64) + outl;
                        (cols.len() as f64 + 2.0) * 4.0 * U * mag
                    }));
                }
            }
        }
    }
    assert!(with_outliers >= 4, "the cases should have outlier columns");
    eprintln!("matmul_int8: largest |Δ| / bound {worst:.3e}; variants dot4 = {variants:?}");
}

#[test]
fn matmul_int8_refuses_bad_arguments() {
    let Some(gpu) = gpu() else { return };
    let cb = vec![1i8; 8];
    assert!(MatmulInt8::new(&gpu, &cb, &[1.0; 2], 2, 4, 6.0, None).is_ok());
    assert!(MatmulInt8::new(&gpu, &cb, &[1.0; 3], 2, 4, 6.0, None).unwrap_err().contains("SCB"));
    assert!(MatmulInt8::new(&gpu, &cb, &[1.0; 2], 2, 4, -1.0, None).unwrap_err().contains("int8Threshold"));
    assert!(MatmulInt8::new(&gpu, &cb, &[1.0; 2], 2, 4, f32::NAN, None).unwrap_err().contains("int8Threshold"));
    let w = MatmulInt8::new(&gpu, &cb, &[1.0; 2], 2, 4, 0.0, None).unwrap();
    assert!(w.forward(&gpu, &[0.0; 3], 1).is_err());
    assert!(w.forward(&gpu, &[], 0).is_err());
}
