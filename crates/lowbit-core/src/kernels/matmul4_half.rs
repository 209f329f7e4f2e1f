//! 4-bit linear layer with a half-precision compute dtype, as bitsandbytes runs Linear4bit with
//! `bnb_4bit_compute_dtype = float16 / bfloat16` on the CPU (transformers 5 + bitsandbytes 0.50,
//! see scripts/fixtures/make_reference_logits.py): the input and the bias are cast to the compute
//! dtype, the weight is dequantized to f32 and rounded to it (`dequantize_4bit(..).to(dtype)`),
//! `F.linear` accumulates in f32 and rounds its output to the compute dtype.
//!
//! `y[i, j] = T(sum_k T(x[i, k]) * T(w[j, k]) + T(bias[j]))`, summed in f32 by the dense kernel
//! (its SIMD order and bound, see [`super`]); T = f16 or bf16, round to nearest even.
//!
//! Weights are decoded a chunk of rows at a time (about 64 KiB of f32) so the half copy never
//! needs the whole layer.

use super::matmul4::{check_io, Weight4};
use super::matmul_dense::matmul_dense;
use crate::dtype::SimdLoad;
use crate::error::Result;
use crate::Kernel;

/// Rounds every value to T and back (exact in f32).
fn round_to<T: SimdLoad>(v: f32) -> f32 {
    T::from_f32(v).to_f32()
}

/// `out[m, n] = T(T(x) · T(W)ᵀ + T(bias))` for T = [`crate::f16`] or [`crate::bf16`].
pub fn matmul4_half<T: SimdLoad>(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    check_io(x, m, w, bias, out)?;
    let (n, k, bs) = (w.n, w.k, w.blocksize);
    let xr: Vec<f32> = x.iter().map(|&v| round_to::<T>(v)).collect();
    let rows_per_chunk = (16 * 1024 / k).clamp(1, n);
    let mut decoded = Vec::new();
    let mut half: Vec<T> = Vec::new();
    let mut tmp = Vec::new();
    let mut amax = Vec::new();
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + rows_per_chunk).min(n);
        // Decode the whole blocks covering flat [r0 * k, r1 * k) (blocks may span rows).
        let (f0, f1) = (r0 * k, r1 * k);
        let (b0, b1) = (f0 / bs, f1.div_ceil(bs));
        let (d0, d1) = (b0 * bs, (b1 * bs).min(n * k));
        decoded.resize(d1 - d0, 0f32);
        crate::blockwise4::decode(&w.packed[d0 / 2..d1.div_ceil(2)], w.absmax.range(b0, b1, &mut amax), bs, w.quant_type, &mut decoded, Kernel::Scalar)?;
        half.clear();
        half.extend(decoded[f0 - d0..f1 - d0].iter().map(|&v| T::from_f32(v)));
        let rows = r1 - r0;
        tmp.resize(m * rows, 0f32);
        matmul_dense(&xr, m, &half, rows, k, None, &mut tmp, kernel)?;
        for i in 0..m {
            for j in 0..rows {
                let b = bias.map_or(0.0, |b| round_to::<T>(b[r0 + j]));
                out[i * n + r0 + j] = round_to::<T>(tmp[i * rows + j] + b);
            }
        }
        r0 = r1;
    }
    Ok(())
}
