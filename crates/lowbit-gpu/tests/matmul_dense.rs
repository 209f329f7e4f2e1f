//! matmul_dense.wgsl (GEMV and GEMM) in each storage variant (WEIGHT_F32 / WEIGHT_F16 /
//! WEIGHT_BF16) against lowbit-core's scalar matmul_dense, whole and split into parts of a few
//! rows as weights.ts denseParts makes them for a small binding limit. The halves are widened
//! exactly on both sides (f16 subnormals included), so the products are the same f32 values
//! and only the summation order / FMA differ: common::matmul_bound.
mod common;
use common::{check_within, gpu, matmul_bound, split_binding, Rng};
use lowbit_core::kernels::matmul_dense::matmul_dense;
use lowbit_core::{bf16, f16, Kernel};
use lowbit_gpu::kernels::{DenseData, MatmulDense};

#[test]
fn matmul_dense_matches_the_reference_in_every_storage() {
    let Some(mut gpu) = gpu() else { return };
    let full_binding = gpu.weight_binding;
    let mut rng = Rng(0x2545f4914f6cdd1d);
    // (n, k, m): odd k puts rows of halves across u32 words; m > 64 takes several GEMM tiles
    let cases = [(48, 64, 1), (37, 200, 1), (33, 97, 1), (300, 1, 1), (70, 129, 3), (65, 75, 5), (130, 96, 70)];
    let mut worst = 0f64;
    for &(n, k, m) in &cases {
        let wf = rng.vec(n * k, 0.05);
        let mut h: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
        // f16 subnormals take their own branch of f16_bits_to_f32
        for i in (0..h.len()).step_by(7) {
            h[i] = f16::from_bits((i as u16 % 0x3ff + 1) | if i % 2 == 0 { 0x8000 } else { 0 });
        }
        let b: Vec<bf16> = wf.iter().map(|&v| bf16::from_f32(v)).collect();
        let bias = if n % 2 == 1 { Some(rng.vec(n, 0.1)) } else { None };
        let x = rng.vec(m * k, 1.0);
        for data in [DenseData::F32(&wf), DenseData::F16(&h), DenseData::Bf16(&b)] {
            let (want, widened) = reference(&data, &x, m, n, k, bias.as_deref());
            for binding in [full_binding, split_binding(k * data.storage().size(), 3, 4)] {
                gpu.weight_binding = binding;
                let g = MatmulDense::new(&gpu, data, n, k, bias.as_deref()).unwrap();
                let row_bytes = k * data.storage().size();
                assert_eq!(g.parts.len(), n.div_ceil((binding as usize - 4) / row_bytes), "parts of {n} rows of {row_bytes} bytes in {binding}");
                let got = g.forward(&gpu, &x, m).unwrap();
                let what = format!("{:?} n={n} k={k} m={m} parts={}", data.storage(), g.parts.len());
                worst = worst.max(check_within(&what, &got, &want, |e| {
                    let (i, j) = (e / n, e % n);
                    matmul_bound(&x[i * k..(i + 1) * k], &widened[j * k..(j + 1) * k], bias.as_ref().map_or(0.0, |b| b[j]))
                }));
            }
        }
    }
    eprintln!("matmul_dense: largest |Δ| / bound {worst:.3}");
}

/// lowbit-core's scalar result and the weights widened to f32.
fn reference(data: &DenseData, x: &[f32], m: usize, n: usize, k: usize, bias: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0f32; m * n];
    let widened: Vec<f32> = match data {
        DenseData::F32(w) => {
            matmul_dense(x, m, w, n, k, bias, &mut out, Kernel::Scalar).unwrap();
            w.to_vec()
        }
        DenseData::F16(w) => {
            matmul_dense(x, m, w, n, k, bias, &mut out, Kernel::Scalar).unwrap();
            w.iter().map(|v| v.to_f32()).collect()
        }
        DenseData::Bf16(w) => {
            matmul_dense(x, m, w, n, k, bias, &mut out, Kernel::Scalar).unwrap();
            w.iter().map(|v| v.to_f32()).collect()
        }
    };
    (out, widened)
}

#[test]
fn matmul_dense_refuses_bad_shapes() {
    let Some(mut gpu) = gpu() else { return };
    let w = vec![0f32; 12];
    assert!(MatmulDense::new(&gpu, DenseData::F32(&w), 3, 5, None).unwrap_err().contains("needs 15"));
    assert!(MatmulDense::new(&gpu, DenseData::F32(&w), 3, 4, Some(&[0.0; 4])).unwrap_err().contains("bias"));
    gpu.weight_binding = 256;
    let wide = vec![0f32; 2 * 100];
    assert!(MatmulDense::new(&gpu, DenseData::F32(&wide), 2, 100, None).unwrap_err().contains("binding limit"));
}
