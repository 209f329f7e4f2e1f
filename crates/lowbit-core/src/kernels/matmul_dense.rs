//! Linear layers left unquantized: f32 activations with f32 / f16 / bf16 weights `[N, K]`
//! (nn.Linear layout), `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])`, f32 accumulation.
//!
//! Weights are widened exactly to f32 (f16 / bf16 -> f32 is exact). The scalar kernel sums in k
//! order; the SIMD128 kernel forms the same f32 products and sums them in f32x4 lanes (bound
//! in [`super`]). For an f16 / bf16 compute dtype torch would round the product sums to that
//! dtype; callers round activations (and outputs) themselves.

use super::{check_len, mul};
use crate::dtype::SimdLoad;
use crate::error::{bail, Result};
use crate::Kernel;

/// `out[m, n] = x[m, k] · W[n, k]ᵀ (+ bias)`; W has `n * k` elements.
#[allow(clippy::too_many_arguments)]
pub fn matmul_dense<T: SimdLoad>(x: &[f32], m: usize, w: &[T], n: usize, k: usize, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    if m == 0 || n == 0 || k == 0 {
        bail!(EmptyTensor, "dense matmul with shape m={m} n={n} k={k}");
    }
    check_len("weight", w.len(), mul(n, k, "weight")?)?;
    check_len("activations x", x.len(), mul(m, k, "activations")?)?;
    check_len("output", out.len(), mul(m, n, "output")?)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), n)?;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        simd::matmul(x, m, w, n, k, out);
        add_bias(out, n, bias);
        return Ok(());
    }
    let _ = kernel;
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let mut acc = 0f32;
            for (a, b) in xr.iter().zip(&w[j * k..(j + 1) * k]) {
                acc += a * b.to_f32();
            }
            out[i * n + j] = acc;
        }
    }
    add_bias(out, n, bias);
    Ok(())
}

/// One token: `out[n] = x[k] · W[n, k]ᵀ (+ bias)`.
pub fn gemv_dense<T: SimdLoad>(x: &[f32], w: &[T], n: usize, k: usize, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    matmul_dense(x, 1, w, n, k, bias, out, kernel)
}

fn add_bias(out: &mut [f32], n: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in out.chunks_mut(n) {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod simd {
    use crate::dtype::SimdLoad;
    use core::arch::wasm32::*;

    #[inline(always)]
    pub(crate) fn hsum(v: v128) -> f32 {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v)) + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    }

    /// Dot products of R activation rows with one weight row (all of length k).
    #[inline(always)]
    fn tile<T: SimdLoad, const R: usize>(xs: [&[f32]; R], wr: &[T]) -> [f32; R] {
        let k = wr.len();
        let mut acc = [[f32x4_splat(0.0); 2]; R];
        let mut c = 0;
        // SAFETY: every load reads 4 elements below index c + 8 <= k of rows of length k.
        unsafe {
            while c + 8 <= k {
                let w0 = T::load4(wr.as_ptr().add(c));
                let w1 = T::load4(wr.as_ptr().add(c + 4));
                for r in 0..R {
                    let xp = xs[r].as_ptr().add(c);
                    acc[r][0] = f32x4_add(acc[r][0], f32x4_mul(w0, v128_load(xp as *const v128)));
                    acc[r][1] = f32x4_add(acc[r][1], f32x4_mul(w1, v128_load(xp.add(4) as *const v128)));
                }
                c += 8;
            }
        }
        core::array::from_fn(|r| {
            let mut s = hsum(f32x4_add(acc[r][0], acc[r][1]));
            for kk in c..k {
                s += xs[r][kk] * wr[kk].to_f32();
            }
            s
        })
    }

    pub fn matmul<T: SimdLoad>(x: &[f32], m: usize, w: &[T], n: usize, k: usize, out: &mut [f32]) {
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(4);
            for j in 0..n {
                let wr = &w[j * k..(j + 1) * k];
                let xr = |r: usize| &x[(i + r) * k..(i + r + 1) * k];
                match rows {
                    4 => {
                        let y = tile::<T, 4>([xr(0), xr(1), xr(2), xr(3)], wr);
                        (0..4).for_each(|r| out[(i + r) * n + j] = y[r]);
                    }
                    3 => {
                        let y = tile::<T, 3>([xr(0), xr(1), xr(2)], wr);
                        (0..3).for_each(|r| out[(i + r) * n + j] = y[r]);
                    }
                    2 => {
                        let y = tile::<T, 2>([xr(0), xr(1)], wr);
                        (0..2).for_each(|r| out[(i + r) * n + j] = y[r]);
                    }
                    _ => out[i * n + j] = tile::<T, 1>([xr(0)], wr)[0],
                }
            }
            i += rows;
        }
    }
}
