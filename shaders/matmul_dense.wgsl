// Unquantized linear layer (crates/lowbit-core/src/kernels/matmul_dense.rs): f32 activations,
// weights [N, K] stored as f32 (WEIGHT_F32) or as f16 / bf16 bit patterns packed two per u32,
// element 2i in the low half (WEIGHT_F16 / WEIGHT_BF16), widened exactly to f32; f32 sums.
// Also the tied output projection through an embedding table (same layout). A part of a split
// weight holds rows [n0, n0 + n_part) from its element 0.
// gemv_rows: the decode GEMV (m == 1, k a multiple of 4) laid out as matmul4.wgsl gemv4: row
// groups of p.lanes threads own 4 output rows, threads split k in steps of 4 weights (one vec4
// of x, loaded once for the 4 rows), partial sums reduce with subgroup shuffles (SUBGROUPS) or a
// workgroup tree. F16_COMPUTE (with WEIGHT_F16, on devices with `shader-f16`): gemv_rows reads
// the half weights as vec4<f16> (binding 6, the same buffer as binding 2) and forms the products
// in f16 from x rounded to f16 (4 products and their sum in f16, then f32 across steps).

#ifdef F16_COMPUTE
enable f16;
#endif

#include "matmul_common.wgsl"
#include "common.wgsl"
#include "row_group.wgsl"

struct Params {
  m: u32,
  k: u32,
  n_total: u32,
  n0: u32,
  n_part: u32,
  has_bias: u32,
  lanes: u32, // gemv_rows: threads per row group (8, 16, 32 or 64)
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#ifdef WEIGHT_F32
@group(0) @binding(2) var<storage, read> wt: array<f32>;
fn weight(nl: u32, kk: u32) -> f32 {
  return wt[nl * p.k + kk];
}
// W[nl, kk .. kk + 4), kk a multiple of 4
fn weight4(nl: u32, kk: u32) -> vec4<f32> {
  let i = nl * p.k + kk;
  return vec4<f32>(wt[i], wt[i + 1u], wt[i + 2u], wt[i + 3u]);
}
#else
fn half_value(h: u32) -> f32 {
#ifdef WEIGHT_BF16
  return bf16_bits_to_f32(h);
#else
  return f16_bits_to_f32(h);
#endif
}
// W[nl, kk .. kk + 4), kk and k multiples of 4: two whole words
fn weight4(nl: u32, kk: u32) -> vec4<f32> {
  let i = (nl * p.k + kk) >> 1u;
  let a = wt[i];
  let b = wt[i + 1u];
  return vec4<f32>(half_value(a & 0xffffu), half_value(a >> 16u), half_value(b & 0xffffu), half_value(b >> 16u));
}
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
#ifdef F16_COMPUTE
@group(0) @binding(6) var<storage, read> wt_h: array<vec4<f16>>;
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

const GD_THREADS: u32 = 64u;
const GD_ROWS: u32 = 4u;

@compute @workgroup_size(64)
fn gemv_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
             @builtin(subgroup_size) sg_size: u32,
#endif
            ) {
  let lanes = p.lanes;
  let lane = lid % lanes;
  let r0 = ((wid.x + wid.y * nwg.x) * (GD_THREADS / lanes) + lid / lanes) * GD_ROWS;
  // rows past the part repeat its last row (read, never stored)
  var rows: array<u32, 4>;
  for (var r = 0u; r < GD_ROWS; r = r + 1u) { rows[r] = min(r0 + r, p.n_part - 1u); }
  var acc = vec4<f32>(0.0);
  for (var kk = lane * 4u; kk < p.k; kk = kk + lanes * 4u) {
    let xa = vec4<f32>(x[kk], x[kk + 1u], x[kk + 2u], x[kk + 3u]);
#ifdef F16_COMPUTE
    let xh = vec4<f16>(xa);
    let q = kk >> 2u;
    let kq = p.k >> 2u;
    acc = acc + vec4<f32>(f32(dot(xh, wt_h[rows[0] * kq + q])), f32(dot(xh, wt_h[rows[1] * kq + q])), f32(dot(xh, wt_h[rows[2] * kq + q])), f32(dot(xh, wt_h[rows[3] * kq + q])));
#else
    acc = acc + vec4<f32>(dot(xa, weight4(rows[0], kk)), dot(xa, weight4(rows[1], kk)), dot(xa, weight4(rows[2], kk)), dot(xa, weight4(rows[3], kk)));
#endif
  }
#ifndef SUBGROUPS
  let sg_size = 0u;
#endif
  let sum = row_group_sum(acc, lid, lane, lanes, sg_size);
  if (lane == 0u) { store_rows(r0, sum); }
}

