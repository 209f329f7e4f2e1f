//! CPU inference kernels (issue "CPU inference"). Each kernel has a scalar reference and, where
//! it matters, a wasm SIMD128 version selected by [`Kernel`](crate::Kernel); on builds without
//! SIMD128 `Kernel::Simd128` runs the scalar code.
//!
//! Conventions shared by every kernel here:
//! - Activations are f32 slices, row-major. "Compute dtype" f16 / bf16 semantics are the
//!   caller's: round the activations (and, if wanted, the outputs) to the dtype with
//!   `Float::from_f32`; every kernel accumulates in f32.
//! - Linear weights use nn.Linear's layout, W `[N, K]` row-major, and compute
//!   `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])`.
//! - Linear layers, SIMD128 against the scalar reference (u = 2^-24, γ_n = n·u / (1 − n·u);
//!   bounds ignore underflow):
//!   * GEMM (4-bit: m >= 4, or m >= 2 with K % 32 != 0; f32 / f16 / bf16: m >= 2) and
//!     LLM.int8 (every m): the same bits. The panel
//!     GEMM forms the reference's f32 products (4-bit: the dequantized `values[c]·absmax`) and
//!     sums them in k order from 0 like the reference; int8 sums integers exactly. In the
//!     relaxed-SIMD build every f32 multiply-add of the linear kernels is fused
//!     (`simd::wasm128::madd`): one rounding where the bounds below count two, so the GEMM
//!     is within the dense GEMV bound there and the other bounds hold as stated.
//!   * Dense GEMV (m = 1): the same f32 products p_k, summed in f32x4 lanes. Recursive
//!     summation of K terms in any order is within γ_{K−1}·Σ|p_k| of the exact sum, so the two
//!     kernels differ by at most 2γ_{K−1}·Σ|p_k| ≈ K·2^-23·Σ|p_k|.
//!   * 4-bit GEMV (m = 1, and m = 2, 3 when K % 32 == 0): absmax is factored out of each block,
//!     `y = Σ_b fl(a_b · Σ_(k in b) fl(v_k·x_k))` (v_k = `values[code]`, a_b = absmax), so the
//!     products differ from the reference's `fl(x_k · fl(v_k·a_b))`. Against the exact
//!     Σ x_k·v_k·a_b each term of ours goes through at most K + 2 roundings (its product, the
//!     additions inside and across blocks — at most K − 1 on any path of the summation tree —
//!     the absmax multiply, the bias add), the reference's through at most K + 2 as well (two
//!     products, K − 1 additions, the bias add). Hence |ours − ref| <= 2γ_{K+2}·(Σ|x_k·v_k·a_b| + |bias|),
//!     and with |x_k·v_k·a_b| <= |p_k| / (1 − u)² (p_k the reference's product),
//!     |ours − ref| <= 2γ_{K+2}/(1 − u)²·(Σ|p_k| + |bias|), which is below (K+1)·2^-22·(Σ|p_k| + |bias|)
//!     for K < 10^5 (2.03·(K+2) <= 4·(K+1)). Absmax must be finite (an infinite one gives Inf
//!     in the reference where ours may give NaN). In practice the error is that of any f32
//!     dot product, ~√K·u relative: the bnb parity tests (1e-4 on logits) are unaffected.
//!
//!   The tests (tests/kernels_simd.rs, wasm32) check |Δ| <= (K+1)·2^-22·(Σ|p_k| + |bias|) for
//!   the GEMVs and bit equality for the rest, on random shapes with ragged K, m = 1..9, every
//!   4-bit type and blocksizes 32..512.
//! - Bad shapes and lengths are an [`Error`](crate::Error), never a panic.

pub mod absmax4;
pub mod matmul4;
pub mod matmul4_int;
pub mod int_activations;
pub mod matmul4_half;
pub mod matmul_blockwise8;
pub mod matmul_blockwise8_int;
pub mod matmul_dense;
pub mod matmul_int8;
pub mod norm;
pub mod activation;
pub mod softmax;
pub mod rope;
pub mod attention;
pub mod embedding;

use crate::error::{bail, Result};

/// `a * b` for shape arithmetic, refusing overflow.
pub(crate) fn mul(a: usize, b: usize, what: &str) -> Result<usize> {
    match a.checked_mul(b) {
        Some(v) => Ok(v),
        None => bail!(InvalidArgument, "{what}: {a} x {b} elements do not fit in memory"),
    }
}

/// The scalar linear kernels' loop: each weight row j is decoded to f32 once by `decode_row`,
/// then dotted with every activation row, summing in k order (the references' bits).
pub(crate) fn scalar_rows(x: &[f32], m: usize, n: usize, k: usize, out: &mut [f32], mut decode_row: impl FnMut(usize, &mut [f32])) {
    let mut row = vec![0f32; k];
    for j in 0..n {
        decode_row(j, &mut row);
        for i in 0..m {
            let mut acc = 0f32;
            for (a, b) in x[i * k..(i + 1) * k].iter().zip(&row) {
                acc += a * b;
            }
            out[i * n + j] = acc;
        }
    }
}

/// Adds `bias[j]` to every row's column j (after the sum, as the references do).
pub(crate) fn add_bias(out: &mut [f32], n: usize, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in out.chunks_mut(n) {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
    }
}

/// Checks that a slice has exactly `want` elements.
pub(crate) fn check_len(name: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        bail!(LengthMismatch, "{name} has {got} elements but {want} are needed");
    }
    Ok(())
}
