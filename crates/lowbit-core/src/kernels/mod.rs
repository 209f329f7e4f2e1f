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
//! - SIMD versions compute the same f32 products as the scalar references and differ only in
//!   the order of the f32 sums. Recursive summation of K terms p_k has an error at most
//!   γ_K·Σ|p_k| (γ_K ≈ K·2^-24), so the two differ by at most about K·2^-23·Σ|p_k|; the tests
//!   check |Δ| <= (K+1)·2^-22·(Σ|p_k| + |bias|).
//! - Bad shapes and lengths are an [`Error`](crate::Error), never a panic.

pub mod matmul4;
pub mod matmul_blockwise8;
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

/// Checks that a slice has exactly `want` elements.
pub(crate) fn check_len(name: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        bail!(LengthMismatch, "{name} has {got} elements but {want} are needed");
    }
    Ok(())
}
