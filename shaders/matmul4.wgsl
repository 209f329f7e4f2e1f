// 4-bit linear layer (NF4 / FP4 / INT4), weights exactly as bitsandbytes stores them
// (crates/lowbit-core/src/kernels/matmul4.rs): the flattened [N, K] weight in blocks of
// `blocksize` over the flat index (blocks may span rows), byte j = element 2j in the high
// nibble and 2j + 1 in the low nibble, read here as little-endian u32 words; one f32 absmax per
// block (double-quantized absmax rebuilt to f32 by the host). w = code[nibble] * absmax (one
// f32 multiply, as dequantize_4bit to f32), products x * w summed in f32.
//
// A part of a split weight holds the words from flat element `flat_base` (a multiple of 8) and
// the absmax from block `block_base`; flat indices below are global ((n0 + nl) * k + kk).

#include "matmul_common.wgsl"

struct Params {
  m: u32,
  k: u32,
  n_total: u32,
  n0: u32,
  n_part: u32,
  has_bias: u32,
  flat_base: u32,
  block_base: u32,
  block_shift: u32, // log2(blocksize): blocksizes are powers of two (32 … 4096)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  code: array<vec4<f32>, 4>, // the 16 values of the 4-bit type, as the dequant kernels use them
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> packed: array<u32>;
@group(0) @binding(3) var<storage, read> absmax: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn code_value(c: u32) -> f32 {
  return p.code[c >> 2u][c & 3u];
}

fn weight(nl: u32, kk: u32) -> f32 {
  let flat = (p.n0 + nl) * p.k + kk;
  let rel = flat - p.flat_base;
  let word = packed[rel >> 3u];
  // byte (rel >> 1) & 3 of the word; the even element is its high nibble
  let shift = ((rel >> 1u) & 3u) * 8u + select(4u, 0u, (rel & 1u) == 1u);
  return code_value((word >> shift) & 15u) * absmax[(flat >> p.block_shift) - p.block_base];
}

fn gemv_row(nl: u32, lane: u32) -> f32 {
  var acc = 0.0;
  let row = (p.n0 + nl) * p.k;
  if (p.k % 8u == 0u) {
    // rows start on a word; the 8 elements of a word share a block (blocksize >= 32)
    let words = p.k / 8u;
    for (var w = lane; w < words; w = w + GEMV_LANES) {
      let flat = row + w * 8u;
      let word = packed[(flat - p.flat_base) >> 3u];
      let s = absmax[(flat >> p.block_shift) - p.block_base];
      let xb = w * 8u;
      for (var b = 0u; b < 4u; b = b + 1u) {
        let byte = (word >> (8u * b)) & 255u;
        acc = acc + x[xb + 2u * b] * (code_value(byte >> 4u) * s);
        acc = acc + x[xb + 2u * b + 1u] * (code_value(byte & 15u) * s);
      }
    }
  } else {
    for (var kk = lane; kk < p.k; kk = kk + GEMV_LANES) {
      acc = acc + x[kk] * weight(nl, kk);
    }
  }
  return acc;
}
