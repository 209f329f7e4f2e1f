//! sample.wgsl (argmax, topk) against the CPU backend's rules (ts/backends/cpu/index.ts
//! `argmax` / `topK`; lowbit-core has no sampling code): argmax is the first index of the
//! largest value, NaN never wins, an all-NaN row gives 0; top-k is a stable descending sort
//! (larger first, lower index first on ties, -0 == +0). Both are exact.
mod common;
use common::{gpu, Rng};
use lowbit_gpu::kernels::sample::{argmax, top_k};

fn argmax_ref(row: &[f32]) -> u32 {
    let (mut best, mut bv) = (None, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > bv || (best.is_none() && v == bv) {
            best = Some(i);
            bv = v;
        }
    }
    best.unwrap_or(0) as u32
}

fn top_k_ref(row: &[f32], k: usize) -> (Vec<u32>, Vec<u32>) {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    // NaN last; sort_by is stable, so equal values keep index order
    idx.sort_by(|&i, &j| match (row[i].is_nan(), row[j].is_nan()) {
        (false, false) => row[j].partial_cmp(&row[i]).unwrap(),
        (a, b) => a.cmp(&b),
    });
    idx.truncate(k);
    (idx.iter().map(|&i| i as u32).collect(), idx.iter().map(|&i| row[i].to_bits()).collect())
}

/// Values with many ties (a few levels), some -0 / +0, -inf and NaN.
fn row(rng: &mut Rng, cols: usize, nan: bool) -> Vec<f32> {
    (0..cols)
        .map(|_| match rng.below(40) {
            0 if nan => f32::NAN,
            1 => f32::NEG_INFINITY,
            2 => -0.0,
            3 => 0.0,
            _ => (rng.below(25) as f32 - 12.0) * 0.5,
        })
        .collect()
}

#[test]
fn argmax_matches_the_cpu_rule() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0xa54ff53a5f1d36f1);
    for &(rows, cols) in &[(1, 1), (3, 255), (4, 256), (2, 257), (5, 1000), (1, 5000)] {
        let mut x: Vec<f32> = (0..rows).flat_map(|_| row(&mut rng, cols, true)).collect();
        // all-NaN, all -inf, and ties at the maximum in the first rows
        x[..cols].iter_mut().for_each(|v| *v = f32::NAN);
        if rows > 2 {
            x[cols..2 * cols].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
            x[2 * cols + cols / 2] = 100.0;
            x[2 * cols + cols - 1] = 100.0;
        }
        let want: Vec<u32> = x.chunks(cols).map(argmax_ref).collect();
        assert_eq!(argmax(&gpu, &x, rows, cols).unwrap(), want, "argmax [{rows}, {cols}]");
    }
    // more rows than one grid dimension holds: workgroups in x and y
    let (rows, cols) = (65_537, 3);
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.below(7) as f32).collect();
    let want: Vec<u32> = x.chunks(cols).map(argmax_ref).collect();
    assert_eq!(argmax(&gpu, &x, rows, cols).unwrap(), want, "argmax over a two-dimensional grid");
}

#[test]
fn top_k_matches_a_stable_sort() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0x510e527fade682d1);
    for &(cols, ks) in &[(1usize, &[1usize][..]), (7, &[1, 3, 7]), (300, &[1, 2, 17, 256, 280]), (2000, &[50, 1024])] {
        for nan in [false, true] {
            let x = row(&mut rng, cols, nan);
            for &k in ks {
                let (idx, vals) = top_k(&gpu, &x, k).unwrap();
                let (wi, wv) = top_k_ref(&x, k);
                assert_eq!(idx, wi, "top-{k} of {cols} (NaN: {nan}): indices");
                assert_eq!(vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), wv, "top-{k} of {cols}: values");
            }
        }
    }
}

#[test]
fn top_k_ranks_nan_last_in_index_order() {
    let Some(gpu) = gpu() else { return };
    // k beyond the non-NaN values: the NaN follow in index order (was: NONE slots, then restarts)
    let x = [f32::NAN, 1.0, f32::NAN, 2.0];
    let (idx, vals) = top_k(&gpu, &x, 4).unwrap();
    assert_eq!(idx, vec![3, 1, 0, 2]);
    assert_eq!(vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), top_k_ref(&x, 4).1);
    // mostly NaN across many lanes, and an all-NaN row
    let mut rng = Rng(0x9b05688c2b3e6c1f);
    let y: Vec<f32> = (0..700).map(|i| if i % 5 == 0 { rng.below(9) as f32 } else { f32::NAN }).collect();
    for k in [150, 141, 300] {
        assert_eq!(top_k(&gpu, &y, k).unwrap().0, top_k_ref(&y, k).0, "top-{k} of a mostly-NaN row");
    }
    assert_eq!(top_k(&gpu, &[f32::NAN; 5], 5).unwrap().0, vec![0, 1, 2, 3, 4]);
}

#[test]
fn sampling_refuses_bad_arguments() {
    let Some(gpu) = gpu() else { return };
    assert!(argmax(&gpu, &[1.0; 6], 2, 4).is_err());
    assert!(argmax(&gpu, &[], 0, 4).is_err());
    assert!(top_k(&gpu, &[1.0; 6], 7).is_err());
    assert!(top_k(&gpu, &[1.0; 6], 0).is_err());
    assert!(top_k(&gpu, &vec![1.0; 2000], 1025).unwrap_err().contains("1024"));
}
