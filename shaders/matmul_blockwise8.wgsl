// Block-wise 8-bit linear layer (crates/lowbit-core/src/kernels/matmul_blockwise8.rs): GGUF Q8_0
// kept 8-bit and bitsandbytes' quantize_blockwise weights. W [N, K] is one byte `q` per weight of
// the flattened weight, W = code[q] * absmax[block] (one f32 multiply, as the CPU kernel forms
// it), blocks of 2^block_shift over the flattened weight (a block may span rows); times the f32
// activation, f32 sums, the bias added after the sum.
// Bindings: `q` the part's codes from flat index p.flat_base (a multiple of 16), packed 4 per u32
// (weight f in byte f % 4), padded to 16 bytes; `absmax` the 256-entry code table (words
// [0, 256)) then the block scales of blocks [p.block_base, ...) from word p.absmax_at.
// INT8_CODE (GGUF Q8_0): code[q] = q read as an int8, converted in registers; the buffer holds
// only the block scales (p.absmax_at = 0).
// gemv8: the decode GEMV (m == 1, k a multiple of 16) laid out as matmul4.wgsl gemv4: row groups
// of p.lanes threads own 4 output rows, threads split k in steps of 16 weights (one vec4<u32> of
// codes per row, one block scale: blocks are >= 32 weights; the 16 activations loaded once for
// the 4 rows), the code table in workgroup memory, partial sums reduce with subgroup shuffles
// (SUBGROUPS) or a workgroup tree. Other shapes take matmul_common.wgsl's gemv / gemm.
// INT_ACT (with INT8_CODE, k a multiple of 32): gemv8 runs on integer activations as the CPU's
// fast Q8_0 kernel does (crates/lowbit-core/src/kernels/matmul_blockwise8_int.rs,
// int_activations.rs): threads step 32 weights, quantize their 32 activations to 14 bits,
// q = round(x · 8191 / max|x|), d = max|x| / 8191, split q into two int8 limbs
// q = 128 · hi + lo (lo in [-64, 64)), and form the block's exact sum
// I = 128 · Σ hi · w + Σ lo · w (|I| < 2^25), then y += f32(I) · d · absmax. With DOT4 the sums
// of 4 products use dot4I8Packed, without it the same integers unpacked.

#ifdef DOT4
requires packed_4x8_integer_dot_product;
#endif

#include "matmul_common.wgsl"
#include "row_group.wgsl"
#include "int_dot.wgsl"

struct Params {
  m: u32,
  k: u32,
  n_total: u32,
  n0: u32,
  n_part: u32,
  has_bias: u32,
  flat_base: u32,   // flat index of the part's first code in `q`
  block_base: u32,  // the first block whose scale the part's `absmax` holds
  block_shift: u32, // log2(blocksize)
  absmax_at: u32,   // word of `absmax` where the block scales start (256, or 0 with INT8_CODE)
  lanes: u32,       // gemv8: threads per row group (8, 16, 32 or 64)
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> absmax: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// byte `c` read as a two's-complement int8
fn int8_value(c: u32) -> f32 {
  return f32(bitcast<i32>(c << 24u) >> 24u);
}

fn block_scale(flat: u32) -> f32 {
  return absmax[p.absmax_at + (flat >> p.block_shift) - p.block_base];
}

// W[n0 + nl, kk]
fn weight(nl: u32, kk: u32) -> f32 {
  let flat = (p.n0 + nl) * p.k + kk;
  let i = flat - p.flat_base;
  let c = (q[i >> 4u][(i >> 2u) & 3u] >> ((i & 3u) * 8u)) & 255u;
#ifdef INT8_CODE
  return int8_value(c) * block_scale(flat);
#else
  return absmax[c] * block_scale(flat);
#endif
}

fn gemv_row(nl: u32, lane: u32) -> f32 {
  var acc = 0.0;
  for (var kk = lane; kk < p.k; kk = kk + GEMV_LANES) {
    acc = acc + x[kk] * weight(nl, kk);
  }
  return acc;
}

const G8_THREADS: u32 = 64u;
const G8_ROWS: u32 = 4u;
#ifndef INT8_CODE
var<workgroup> g8_code: array<f32, 256>;
#endif

// the 4 weights of a code word (weight i in byte i) times their block's scale
fn word_weights(w: u32, a: f32) -> vec4<f32> {
#ifdef INT8_CODE
  let v = vec4<f32>(int8_value(w & 255u), int8_value((w >> 8u) & 255u), int8_value((w >> 16u) & 255u), int8_value(w >> 24u));
#else
  let v = vec4<f32>(g8_code[w & 255u], g8_code[(w >> 8u) & 255u], g8_code[(w >> 16u) & 255u], g8_code[w >> 24u]);
#endif
  return v * a;
}

#ifdef INT_ACT
fn x4(i: u32) -> vec4<f32> {
  return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}
#endif

@compute @workgroup_size(64)
fn gemv8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
         @builtin(subgroup_size) sg_size: u32,
#endif
        ) {
#ifndef INT8_CODE
  for (var c = lid; c < 256u; c = c + G8_THREADS) { g8_code[c] = absmax[c]; }
  workgroupBarrier();
#endif
  let lanes = p.lanes;
  let lane = lid % lanes;
  let r0 = ((wid.x + wid.y * nwg.x) * (G8_THREADS / lanes) + lid / lanes) * G8_ROWS;
  // flat index of each row's first weight; rows past the part repeat its last row (read, never stored)
  var base: array<u32, 4>;
  for (var r = 0u; r < G8_ROWS; r = r + 1u) { base[r] = (p.n0 + min(r0 + r, p.n_part - 1u)) * p.k; }
  var acc = vec4<f32>(0.0);
#ifdef INT_ACT
  for (var kk = lane * 32u; kk < p.k; kk = kk + lanes * 32u) {
    // the 32 activations as 14-bit integers in int8 limb words (int_dot.wgsl)
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) { v[i] = x4(kk + 4u * i); }
    var blk = quantize_act_block(v);
    for (var r = 0u; r < G8_ROWS; r = r + 1u) {
      let flat = base[r] + kk;
      let at = (flat - p.flat_base) >> 4u;
      var hi = 0i;
      var lo = 0i;
      for (var h = 0u; h < 2u; h = h + 1u) {
        let w = q[at + h];
        hi = hi + dot4(blk.xh[4u * h], w.x) + dot4(blk.xh[4u * h + 1u], w.y) + dot4(blk.xh[4u * h + 2u], w.z) + dot4(blk.xh[4u * h + 3u], w.w);
        lo = lo + dot4(blk.xl[4u * h], w.x) + dot4(blk.xl[4u * h + 1u], w.y) + dot4(blk.xl[4u * h + 2u], w.z) + dot4(blk.xl[4u * h + 3u], w.w);
      }
      acc[r] = acc[r] + f32(hi * 128i + lo) * blk.d * block_scale(flat);
    }
  }
#else
  for (var kk = lane * 16u; kk < p.k; kk = kk + lanes * 16u) {
    let x0 = vec4<f32>(x[kk], x[kk + 1u], x[kk + 2u], x[kk + 3u]);
    let x1 = vec4<f32>(x[kk + 4u], x[kk + 5u], x[kk + 6u], x[kk + 7u]);
    let x2 = vec4<f32>(x[kk + 8u], x[kk + 9u], x[kk + 10u], x[kk + 11u]);
    let x3 = vec4<f32>(x[kk + 12u], x[kk + 13u], x[kk + 14u], x[kk + 15u]);
    for (var r = 0u; r < G8_ROWS; r = r + 1u) {
      let flat = base[r] + kk;
      let a = block_scale(flat);
      let w = q[(flat - p.flat_base) >> 4u];
      acc[r] = acc[r] + (dot(x0, word_weights(w.x, a)) + dot(x1, word_weights(w.y, a)) + dot(x2, word_weights(w.z, a)) + dot(x3, word_weights(w.w, a)));
    }
  }
#endif
#ifndef SUBGROUPS
  let sg_size = 0u;
#endif
  let sum = row_group_sum(acc, lid, lane, lanes, sg_size);
  if (lane == 0u) { store_rows(r0, sum); }
}

