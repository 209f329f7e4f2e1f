//! Shared by the kernel tests: the adapter (strict under LOWBIT_WEBGPU_EXPECT=1), a seeded
//! generator, and the comparison helpers. Each test file uses a part of it.
#![allow(dead_code)]
use lowbit_gpu::Gpu;

/// u = 2^-24, the unit roundoff of f32.
pub const U: f64 = 1.0 / 16_777_216.0;

/// The machine's adapter, or None (the test then passes vacuously, saying so) when there is
/// none and LOWBIT_WEBGPU_EXPECT is not 1. scripts/test.sh sets LOWBIT_WEBGPU_EXPECT=1 (from
/// .cache/webgpu/env) once setup installed a Vulkan driver, so a missing adapter fails there.
pub fn gpu() -> Option<Gpu> {
    match Gpu::new() {
        Ok(g) => {
            eprintln!("adapter: {}", g.describe());
            Some(g)
        }
        Err(e) if std::env::var("LOWBIT_WEBGPU_EXPECT").as_deref() != Ok("1") => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("{e} (LOWBIT_WEBGPU_EXPECT=1)"),
    }
}

/// xorshift64: deterministic inputs.
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in [0, 1).
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next()
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next() as f64 * n as f64) as usize).min(n - 1)
    }
    /// Roughly normal (sum of four uniforms), standard deviation about `scale`.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| (self.next() + self.next() + self.next() + self.next() - 2.0) * 1.7 * scale).collect()
    }
}

/// The matmul bound of crates/lowbit-core/src/kernels/mod.rs for one output: both sides sum
/// the same f32 products x_k·w_k in different orders (and the GPU may contract an FMA), so
/// |Δ| <= (K+1)·2^-22·(Σ|x_k w_k| + |bias|).
pub fn matmul_bound(x: &[f32], w: &[f32], bias: f32) -> f64 {
    let mag: f64 = x.iter().zip(w).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum::<f64>() + bias.abs() as f64;
    (x.len() as f64 + 1.0) * 4.0 * U * mag
}

/// Checks |got - want| <= bound(i) for every element; returns the largest error / bound seen
/// (printed by the tests, so a report can say how tight a bound is).
pub fn check_within(what: &str, got: &[f32], want: &[f32], bound: impl Fn(usize) -> f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: {} values from the GPU, {} from the reference", got.len(), want.len());
    let mut worst = 0f64;
    for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
        let b = bound(i);
        let d = (g as f64 - r as f64).abs();
        assert!(d <= b || (g.is_nan() && r.is_nan()), "{what} [{i}]: gpu {g:e} vs reference {r:e}: |Δ| = {d:e} > bound {b:e}");
        if b > 0.0 {
            worst = worst.max(d / b);
        }
    }
    worst
}

/// Bit-for-bit equality (NaN == NaN whatever the payload: hosts and drivers may quiet them).
pub fn check_exact(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == r.to_bits() || (g.is_nan() && r.is_nan()), "{what} [{i}]: gpu {g:e} ({:#010x}) vs reference {r:e} ({:#010x})", g.to_bits(), r.to_bits());
    }
}

/// A weight binding limit that splits `n` rows of `row_bytes` into parts of about `rows` rows
/// (at least the TS host's minimum of 256 bytes).
pub fn split_binding(row_bytes: usize, rows: usize, slack: usize) -> u64 {
    ((row_bytes * rows + slack).max(256) / 4 * 4) as u64
}
