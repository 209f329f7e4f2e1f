//! Element-wise activations in f32 (scalar).
//!
//! - SiLU `x * sigmoid(x)` = `x / (1 + exp(-x))` (Llama / Qwen2 MLP), SwiGLU = `silu(gate) * up`.
//! - GELU exact (`nn.GELU()`, "gelu"): `0.5 x (1 + erf(x / √2))`, evaluated in f64 as
//!   `0.5 x erfc(-x / √2)` (erfc with relative error < 1.2e-7) and rounded to f32.
//! - GELU tanh approximation ("gelu_new" / "gelu_pytorch_tanh", GPT-2):
//!   `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`, in f32.

use super::check_len;
use crate::error::Result;

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// erfc(z) in f64, relative error < 1.2e-7 everywhere (Chebyshev fit of Numerical Recipes'
/// `erfcc`, W. H. Press et al. §6.2).
fn erfc64(z: f64) -> f64 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let p = -a * a - 1.26551223
        + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * p.exp();
    if z >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[inline]
pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * erfc64(-x * std::f64::consts::FRAC_1_SQRT_2)) as f32
}

#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

pub fn silu_inplace(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = silu(*v));
}

pub fn gelu_inplace(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu(*v));
}

pub fn gelu_tanh_inplace(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu_tanh(*v));
}

/// `out = silu(gate) * up` (all the same length).
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<()> {
    check_len("up", up.len(), gate.len())?;
    check_len("output", out.len(), gate.len())?;
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = silu(*g) * u;
    }
    Ok(())
}
