//! matmul4.wgsl (GEMV and tiled GEMM) on the machine's adapter against lowbit-core's scalar
//! reference (dequantize to f32, naive f32 matmul). Both sum f32 products; only the order (and
//! an FMA the driver may contract) differs, so the bound of crates/lowbit-core/src/kernels/mod.rs
//! applies: |Δ| <= (K+1)·2^-22·(Σ|p_k| + |bias|).
use lowbit_core::blockwise4::quantize_packed;
use lowbit_core::kernels::matmul4::{matmul4_reference, Weight4};
use lowbit_core::{Kernel, QuantType4};
use lowbit_gpu::kernels::Matmul4;
use lowbit_gpu::Gpu;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| (self.next() + self.next() + self.next() + self.next() - 2.0) * 1.7 * scale).collect()
    }
}

fn gpu() -> Option<Gpu> {
    match Gpu::new() {
        Ok(g) => Some(g),
        // scripts/test.sh sets LOWBIT_WEBGPU_EXPECT=1 (from .cache/webgpu/env) once setup installed a Vulkan driver.
        Err(e) if std::env::var("LOWBIT_WEBGPU_EXPECT").as_deref() != Ok("1") => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("{e} (LOWBIT_WEBGPU_EXPECT=1)"),
    }
}

#[test]
fn matmul4_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    eprintln!("adapter: {}", gpu.describe());
    let mut rng = Rng(0x9e3779b97f4a7c15);
    // (n, k, blocksize, m): K % 8 == 0 takes the word-wise GEMV path, the others the per-element
    // one; blocks span rows when K % blocksize != 0; m > 64 needs several GEMM tiles.
    let cases = [(48, 64, 64, 1), (37, 200, 64, 1), (33, 97, 32, 1), (70, 128, 128, 3), (65, 75, 64, 5), (130, 96, 256, 70), (9, 4096, 4096, 1)];
    for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
        for &(n, k, bs, m) in &cases {
            let wf = rng.vec(n * k, 0.05);
            let (packed, absmax) = quantize_packed(&wf, qt, bs, false, Kernel::Scalar).unwrap();
            let bias = if n % 2 == 1 { Some(rng.vec(n, 0.1)) } else { None };
            let x = rng.vec(m * k, 1.0);
            let w = Weight4::new(&packed, &absmax, qt, bs, n, k).unwrap();
            let want = matmul4_reference(&x, m, &w, bias.as_deref()).unwrap();
            let got = Matmul4::new(&gpu, &packed, &absmax, qt, bs, n, k, bias.as_deref()).forward(&gpu, &x, m).unwrap();
            let wf = dequantized(&packed, &absmax, qt, bs, n, k);
            for i in 0..m {
                for j in 0..n {
                    let wrow = &wf[j * k..(j + 1) * k];
                    let mag: f32 = x[i * k..(i + 1) * k].iter().zip(wrow).map(|(a, b)| (a * b).abs()).sum::<f32>() + bias.as_ref().map_or(0.0, |b| b[j].abs());
                    let bound = (k as f32 + 1.0) * 2f32.powi(-22) * mag;
                    let (g, r) = (got[i * n + j], want[i * n + j]);
                    assert!((g - r).abs() <= bound, "{qt:?} n={n} k={k} bs={bs} m={m} [{i},{j}]: gpu {g} vs reference {r} (bound {bound})");
                }
            }
        }
    }
}

fn dequantized(packed: &[u8], absmax: &[f32], qt: QuantType4, bs: usize, n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * k];
    lowbit_core::blockwise4::decode(packed, absmax, bs, qt, &mut out, Kernel::Scalar).unwrap();
    out
}
