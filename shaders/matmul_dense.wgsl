// Unquantized linear layer (crates/lowbit-core/src/kernels/matmul_dense.rs): f32 activations,
// weights [N, K] stored as f32 (WEIGHT_F32) or as f16 / bf16 bit patterns packed two per u32,
// element 2i in the low half (WEIGHT_F16 / WEIGHT_BF16), widened exactly to f32; f32 sums.
// Also the tied output projection through an embedding table (same layout). A part of a split
// weight holds rows [n0, n0 + n_part) from its element 0.

#include "matmul_common.wgsl"
#include "common.wgsl"

struct Params {
  m: u32,
  k: u32,
  n_total: u32,
  n0: u32,
  n_part: u32,
  has_bias: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#ifdef WEIGHT_F32
@group(0) @binding(2) var<storage, read> wt: array<f32>;
fn weight(nl: u32, kk: u32) -> f32 {
  return wt[nl * p.k + kk];
}
#else
@group(0) @binding(2) var<storage, read> wt: array<u32>;
fn weight(nl: u32, kk: u32) -> f32 {
  let i = nl * p.k + kk;
  let h = (wt[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
#ifdef WEIGHT_BF16
  return bf16_bits_to_f32(h);
#else
  return f16_bits_to_f32(h);
#endif
}
#endif
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn gemv_row(nl: u32, lane: u32) -> f32 {
  var acc = 0.0;
  for (var kk = lane; kk < p.k; kk = kk + GEMV_LANES) {
    acc = acc + x[kk] * weight(nl, kk);
  }
  return acc;
}
