// Embedding lookup (crates/lowbit-core/src/kernels/embedding.rs): y[t, :] = table[ids[t], :],
// widened exactly to f32. The table may be split by rows; a dispatch per part copies the rows
// whose ids fall into [row0, row0 + rows). Storage as in matmul_dense.wgsl (WEIGHT_F32 /
// WEIGHT_F16 / WEIGHT_BF16). The host checks ids < vocab before it records the op.

#include "common.wgsl"

struct Params {
  n: u32,
  dim: u32,
  row0: u32,
  rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
#ifdef WEIGHT_F32
@group(0) @binding(2) var<storage, read> table: array<f32>;
fn value(i: u32) -> f32 {
  return table[i];
}
#else
@group(0) @binding(2) var<storage, read> table: array<u32>;
fn value(i: u32) -> f32 {
  let h = (table[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
#ifdef WEIGHT_BF16
  return bf16_bits_to_f32(h);
#else
  return f16_bits_to_f32(h);
#endif
}
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let g = (wid.x + wid.y * nwg.x) * 256u + li;
  if (g >= p.n * p.dim) { return; }
  let t = g / p.dim;
  let d = g % p.dim;
  let id = ids[t];
  if (id < p.row0 || id >= p.row0 + p.rows) { return; }
  y[g] = value((id - p.row0) * p.dim + d);
}
