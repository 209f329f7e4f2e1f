//! rope.wgsl against lowbit-core's apply_rope (default and Llama 3 inv_freq). The host table
//! (cos / sin of f32(f32(p) · inv_freq) in f64, rounded to f32) is the CPU kernel's
//! arithmetic, so each output x1·c ∓ x2·s has the same two products on both sides; only an FMA
//! the driver may contract differs: |Δ| <= 2^-22·(|x1·c| + |x2·s|).
mod common;
use common::{check_within, gpu, Rng, U};
use lowbit_core::kernels::rope::{apply_rope, cos_sin, inv_freq, Llama3Scaling};
use lowbit_gpu::kernels::rope;

#[test]
fn rope_table_is_the_cpu_kernels_cos_sin() {
    let f = inv_freq(64, 10000.0, None).unwrap();
    let t = rope::rope_table(&f, 300);
    let (mut c, mut s) = (vec![0f32; 32], vec![0f32; 32]);
    for p in [0, 1, 255, 299] {
        cos_sin(&f, p, 1.0, &mut c, &mut s).unwrap();
        for i in 0..32 {
            assert_eq!((t[(p * 32 + i) * 2].to_bits(), t[(p * 32 + i) * 2 + 1].to_bits()), (c[i].to_bits(), s[i].to_bits()), "p={p} i={i}");
        }
    }
}

#[test]
fn rope_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0x1f83d9abfb41bd6b);
    let llama3 = Llama3Scaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192.0 };
    let mut worst = 0f64;
    // (rows, n_heads, head_dim, largest position): positions past 256 grow the host table
    for &(rows, n_heads, head_dim, max_pos) in &[(1, 4, 64, 300), (5, 3, 8, 10), (7, 2, 80, 1000), (3, 1, 2, 5), (2, 32, 64, 70000)] {
        for scaling in [None, Some(&llama3)] {
            let f = inv_freq(head_dim, if scaling.is_some() { 500000.0 } else { 10000.0 }, scaling).unwrap();
            let x = rng.vec(rows * n_heads * head_dim, 1.0);
            let positions: Vec<u32> = (0..rows).map(|r| if r == 0 { max_pos } else { rng.below(max_pos as usize) as u32 }).collect();
            let mut want = x.clone();
            apply_rope(&mut want, n_heads, head_dim, &positions.iter().map(|&p| p as usize).collect::<Vec<_>>(), &f).unwrap();
            let got = rope::rope(&gpu, &x, rows, n_heads, &positions, &f).unwrap();
            let half = head_dim / 2;
            let what = format!("rope rows={rows} heads={n_heads} head_dim={head_dim} llama3={}", scaling.is_some());
            worst = worst.max(check_within(&what, &got, &want, |e| {
                let (r, i) = (e / (n_heads * head_dim), e % head_dim % half);
                let base = e - e % head_dim;
                let (mut c, mut s) = (vec![0f32; half], vec![0f32; half]);
                cos_sin(&f, positions[r] as usize, 1.0, &mut c, &mut s).unwrap();
                let (x1, x2) = (x[base + i], x[base + i + half]);
                4.0 * U * ((x1 * c[i]).abs() as f64 + (x2 * s[i]).abs() as f64)
            }));
        }
    }
    eprintln!("rope: largest |Δ| / bound {worst:.3}");
}

#[test]
fn rope_refuses_bad_shapes() {
    let Some(gpu) = gpu() else { return };
    let f = [1.0f32, 0.5];
    assert!(rope::rope(&gpu, &[0.0; 16], 2, 2, &[0, 1], &f).is_ok());
    assert!(rope::rope(&gpu, &[0.0; 16], 2, 2, &[0], &f).unwrap_err().contains("positions"));
    assert!(rope::rope(&gpu, &[0.0; 15], 2, 2, &[0, 1], &f).is_err());
}
