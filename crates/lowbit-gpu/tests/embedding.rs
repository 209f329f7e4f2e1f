//! embedding.wgsl (gather) in each storage variant against lowbit-core's kernels/embedding.rs,
//! exact (widening f16 / bf16 to f32 is exact: subnormals, ±0 and ±inf included), whole and
//! split by rows into parts (one dispatch per part some id falls into); and the tied output
//! projection through the same (split) table, within common::matmul_bound of matmul_dense.
mod common;
use common::{check_exact, check_within, gpu, matmul_bound, split_binding, Rng};
use lowbit_core::kernels::embedding::embedding;
use lowbit_core::kernels::matmul_dense::matmul_dense;
use lowbit_core::{bf16, f16, Float, Kernel};
use lowbit_gpu::kernels::{DenseData, Embedding};

fn reference<T: Float>(table: &[T], dim: usize, ids: &[u32]) -> Vec<f32> {
    let mut out = vec![0f32; ids.len() * dim];
    embedding(table, dim, ids, &mut out).unwrap();
    out
}

#[test]
fn gather_and_project_match_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    let full_binding = gpu.weight_binding;
    let mut rng = Rng(0x3c6ef372fe94f82b);
    // odd dims start rows of halves in the middle of a u32 word
    for &(vocab, dim) in &[(300, 37), (64, 64), (5, 1), (1000, 3)] {
        let tf = rng.vec(vocab * dim, 0.5);
        let mut th: Vec<f16> = tf.iter().map(|&v| f16::from_f32(v)).collect();
        let mut tb: Vec<bf16> = tf.iter().map(|&v| bf16::from_f32(v)).collect();
        // special values: subnormals, -0, ±inf (gathers copy them exactly)
        for (i, bits) in [0x0001u16, 0x83ff, 0x8000, 0x7c00, 0xfc00].into_iter().enumerate() {
            let at = (i * 7) % th.len();
            th[at] = f16::from_bits(bits);
        }
        for (i, bits) in [0x0001u16, 0x807f, 0x8000, 0x7f80, 0xff80].into_iter().enumerate() {
            let at = (i * 11) % tb.len();
            tb[at] = bf16::from_bits(bits);
        }
        let mut ids: Vec<u32> = (0..17).map(|_| rng.below(vocab) as u32).collect();
        ids.extend([0, vocab as u32 - 1, ids[0]]);
        let m = 3;
        let x = rng.vec(m * dim, 1.0);
        for data in [DenseData::F32(&tf), DenseData::F16(&th), DenseData::Bf16(&tb)] {
            let (want, widened) = match data {
                DenseData::F32(t) => (reference(t, dim, &ids), t.to_vec()),
                DenseData::F16(t) => (reference(t, dim, &ids), t.iter().map(|v| v.to_f32()).collect()),
                DenseData::Bf16(t) => (reference(t, dim, &ids), t.iter().map(|v| v.to_f32()).collect()),
            };
            for binding in [full_binding, split_binding(dim * data.storage().size(), 7, 4)] {
                gpu.weight_binding = binding;
                let e = Embedding::new(&gpu, data, vocab, dim).unwrap();
                let row_bytes = dim * data.storage().size();
                assert_eq!(e.parts.len(), vocab.div_ceil((binding as usize - 4) / row_bytes), "parts of {vocab} rows of {row_bytes} bytes in {binding}");
                let what = format!("{:?} vocab={vocab} dim={dim} parts={}", data.storage(), e.parts.len());
                check_exact(&format!("gather {what}"), &e.gather(&gpu, &ids).unwrap(), &want);
                if widened.iter().all(|v| v.is_finite()) {
                    for rows in [1, m] {
                        let mut logits = vec![0f32; rows * vocab];
                        matmul_dense(&x[..rows * dim], rows, &widened, vocab, dim, None, &mut logits, Kernel::Scalar).unwrap();
                        let got = e.project(&gpu, &x[..rows * dim], rows).unwrap();
                        check_within(&format!("project {what} m={rows}"), &got, &logits, |i| {
                            let (r, j) = (i / vocab, i % vocab);
                            matmul_bound(&x[r * dim..(r + 1) * dim], &widened[j * dim..(j + 1) * dim], 0.0)
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn gather_refuses_ids_outside_the_vocabulary() {
    let Some(gpu) = gpu() else { return };
    let e = Embedding::new(&gpu, DenseData::F32(&[0.0; 12]), 4, 3).unwrap();
    assert!(e.gather(&gpu, &[0, 3]).is_ok());
    assert!(e.gather(&gpu, &[0, 4]).unwrap_err().contains("position 1"));
    assert!(e.gather(&gpu, &[]).is_err());
    assert!(Embedding::new(&gpu, DenseData::F32(&[0.0; 11]), 4, 3).is_err());
}
