//! matmul4.wgsl (GEMV and tiled GEMM) against lowbit-core's scalar reference (dequantize to
//! f32, naive f32 matmul), whole and split into parts as the TS host splits weights for a
//! small binding limit (flat_base / block_base offsets). Both sum the same f32 products; only
//! the order (and an FMA the driver may contract) differs: common::matmul_bound.
mod common;
use common::{check_within, gpu, matmul_bound, split_binding, Rng};
use lowbit_core::blockwise4::quantize_packed;
use lowbit_core::kernels::matmul4::{matmul4_reference, Weight4};
use lowbit_core::{Kernel, QuantType4};
use lowbit_gpu::kernels::Matmul4;

#[test]
fn matmul4_matches_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    let full_binding = gpu.weight_binding;
    let mut rng = Rng(0x9e3779b97f4a7c15);
    // (n, k, blocksize, m): K % 32 == 0 with blocks >= 32 takes gemv4 (row groups of 8 to 64
    // threads, 4 rows each; n not a multiple of the rows per workgroup, more words per row than
    // threads, blocks spanning rows), other
    // K % 8 == 0 the word-wise GEMV path, the others the per-element one; blocks span rows when
    // K % blocksize != 0; m > 64 needs several GEMM tiles.
    let cases = [(48, 64, 64, 1), (37, 200, 64, 1), (33, 97, 32, 1), (70, 128, 128, 3), (65, 75, 64, 5), (130, 96, 256, 70), (9, 4096, 4096, 1), (21, 40, 32, 2), (13, 2112, 256, 1), (20, 64, 128, 1), (45, 576, 64, 1), (19, 320, 64, 1)];
    let mut worst = 0f64;
    let mut split_parts = 0;
    for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
        for &(n, k, bs, m) in &cases {
            let wf = rng.vec(n * k, 0.05);
            let (packed, absmax) = quantize_packed(&wf, qt, bs, false, Kernel::Scalar).unwrap();
            let bias = if n % 2 == 1 { Some(rng.vec(n, 0.1)) } else { None };
            let x = rng.vec(m * k, 1.0);
            let w = Weight4::new(&packed, &absmax, qt, bs, n, k).unwrap();
            let want = matmul4_reference(&x, m, &w, bias.as_deref()).unwrap();
            let wf = dequantized(&packed, &absmax, qt, bs, n * k);
            // whole, then in parts of about 3 rows (fourBitParts' slack is 16 bytes)
            for binding in [full_binding, split_binding(k / 2, 3, 16)] {
                gpu.weight_binding = binding;
                let g = Matmul4::new(&gpu, &packed, &absmax, qt, bs, n, k, bias.as_deref()).unwrap();
                if binding != full_binding {
                    assert!(g.parts.len() > 1 && g.parts.iter().any(|p| p.flat_base > 0 && p.block_base > 0), "{n}x{k}: expected a split weight");
                    split_parts += g.parts.len();
                }
                // gemv4 reduces with subgroupAdd or the workgroup tree: both where the device has subgroups
                let reductions: &[bool] = if m == 1 && g.uses_gemv4() && gpu.subgroups_available { &[true, false] } else { &[false] };
                for &sg in reductions {
                    gpu.subgroups = sg;
                    let got = g.forward(&gpu, &x, m).unwrap();
                    let what = format!("{qt:?} n={n} k={k} bs={bs} m={m} parts={} subgroups={sg}", g.parts.len());
                    worst = worst.max(check_within(&what, &got, &want, |e| {
                        let (i, j) = (e / n, e % n);
                        matmul_bound(&x[i * k..(i + 1) * k], &wf[j * k..(j + 1) * k], bias.as_ref().map_or(0.0, |b| b[j]))
                    }));
                }
                gpu.subgroups = gpu.subgroups_available;
            }
        }
    }
    eprintln!("matmul4: largest |Δ| / bound {worst:.3}; {split_parts} parts in the split runs; subgroups available: {}", gpu.subgroups_available);
}

#[test]
fn matmul4_refuses_inconsistent_weights() {
    let Some(gpu) = gpu() else { return };
    let packed = vec![0u8; 32];
    assert!(Matmul4::new(&gpu, &packed, &[1.0; 2], QuantType4::Nf4, 32, 4, 16, None).is_ok());
    assert!(Matmul4::new(&gpu, &packed[..31], &[1.0; 2], QuantType4::Nf4, 32, 4, 16, None).unwrap_err().contains("bytes"));
    assert!(Matmul4::new(&gpu, &packed, &[1.0; 3], QuantType4::Nf4, 32, 4, 16, None).unwrap_err().contains("absmax"));
    assert!(Matmul4::new(&gpu, &packed, &[1.0; 2], QuantType4::Nf4, 48, 4, 16, None).unwrap_err().contains("power of two"));
    assert!(Matmul4::new(&gpu, &packed, &[1.0; 2], QuantType4::Nf4, 32, 4, 16, Some(&[0.0; 3])).unwrap_err().contains("bias"));
    let w = Matmul4::new(&gpu, &packed, &[1.0; 2], QuantType4::Nf4, 32, 4, 16, None).unwrap();
    assert!(w.forward(&gpu, &[0.0; 15], 1).is_err());
}

fn dequantized(packed: &[u8], absmax: &[f32], qt: QuantType4, bs: usize, len: usize) -> Vec<f32> {
    let mut out = vec![0f32; len];
    lowbit_core::blockwise4::decode(packed, absmax, bs, qt, &mut out, Kernel::Scalar).unwrap();
    out
}
