// 4-bit linear layer (NF4 / FP4 / INT4), weights exactly as bitsandbytes stores them
// (crates/lowbit-core/src/kernels/matmul4.rs): the flattened [N, K] weight in blocks of
// `blocksize` over the flat index (blocks may span rows), byte j = element 2j in the high
// nibble and 2j + 1 in the low nibble, read here as little-endian u32 words; one f32 absmax per
// block, or (NESTED_ABSMAX) bitsandbytes' double-quantized absmax kept compressed and decoded
// here. w = code[nibble] * absmax (one f32 multiply, as dequantize_4bit to f32), products x * w
// summed in f32.
//
// The words are bound as vec4<u32> (the host pads each part to 16 bytes); `word(i)` reads one.
//
// A part of a split weight holds the words from flat element `flat_base` (a multiple of 8) and
// the absmax from block `block_base`; flat indices below are global ((n0 + nl) * k + kk).

// SUBGROUPS: the adapter has the `subgroups` feature; gemv4 then reduces with subgroup shuffles.
// GATE_UP: gemv4 computes silu(x gateᵀ) * (x upᵀ) of a gated MLP in one dispatch: `packed` /
// `absmax` hold the gate, bindings 6 / 7 the up projection (same shape, blocksize, code and
// part split; no bias).
// RESIDUAL: gemv4 adds `residual` (binding 8, the layer's input) to its output, as the
// residual add after an attention output or MLP down projection does: y = (x Wᵀ + bias) + r.
// QKV: gemv4 computes three projections of the same x (attention's q, k and v) in one
// dispatch: `packed` / `absmax` / `y` are q's, bindings 9 / 10 / 11 k's and 12 / 13 / 14 v's;
// each weight is one part (n0 = flat_base = block_base = 0), none has a bias, and q's and k's
// rows are multiples of G4_OUT so that a row group lies in one weight (the host checks).
// NESTED_ABSMAX: binding 3 (and 7, 10, 13) hold a double-quantized absmax as u32 words (the layout is
// below, at `block_scale`) instead of f32 per block.
// INT_ACT: gemv4 runs on integer activations, as the CPU's fast kernels do (see `gemv4`'s
// INT_ACT comment below); with DOT4 (the adapter has packed_4x8_integer_dot_product) its integer
// products use dot4I8Packed, without it the same sums unpacked (the same integers either way).
// Hosts whose compiler needs it (Tint: Dawn, Chrome) put `enable subgroups;` before this file;
// naga accepts the builtins without it (and, in wgpu 30, rejects the directive).
// F16_COMPUTE (devices with `shader-f16`; not with INT_ACT): gemv4 takes its activations in f16
// and forms x · code in f16, 4 products per f16 dot, summed in f32 (see `gemv4`).
#ifdef DOT4
requires packed_4x8_integer_dot_product;
#endif
#ifdef F16_COMPUTE
enable f16;
#endif

#include "matmul_common.wgsl"
#include "common.wgsl"
#include "row_group.wgsl"
#include "int_dot.wgsl"

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
  g4_lanes: u32,    // gemv4: threads per row group (8, 16, 32 or 64); the other entries ignore it
  q_at: u32,        // NESTED_ABSMAX: the word where the 8-bit absmax codes start (else unused)
  _pad2: u32,
  code: array<vec4<f32>, 4>, // the 16 values of the 4-bit type, as the dequant kernels use them
#ifdef QKV
  n_k: u32,    // rows of k and v (q's are n_part)
  n_v: u32,
  q_at_k: u32, // NESTED_ABSMAX: q_at of k's and v's absmax buffers
  q_at_v: u32,
#endif
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> packed: array<vec4<u32>>;
#ifdef NESTED_ABSMAX
@group(0) @binding(3) var<storage, read> absmax: array<u32>;
#else
@group(0) @binding(3) var<storage, read> absmax: array<f32>;
#endif
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
#ifdef RESIDUAL
@group(0) @binding(8) var<storage, read> residual: array<f32>;
#endif
#ifdef GATE_UP
@group(0) @binding(6) var<storage, read> packed_up: array<vec4<u32>>;
#ifdef NESTED_ABSMAX
@group(0) @binding(7) var<storage, read> absmax_up: array<u32>;
#else
@group(0) @binding(7) var<storage, read> absmax_up: array<f32>;
#endif
#endif
#ifdef QKV
@group(0) @binding(9) var<storage, read> packed_k: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read> packed_v: array<vec4<u32>>;
#ifdef NESTED_ABSMAX
@group(0) @binding(10) var<storage, read> absmax_k: array<u32>;
@group(0) @binding(13) var<storage, read> absmax_v: array<u32>;
#else
@group(0) @binding(10) var<storage, read> absmax_k: array<f32>;
@group(0) @binding(13) var<storage, read> absmax_v: array<f32>;
#endif
@group(0) @binding(11) var<storage, read_write> y_k: array<f32>;
@group(0) @binding(14) var<storage, read_write> y_v: array<f32>;
#endif

// Which weight a row slot reads: SRC_MAIN (packed / absmax), SRC_UP (GATE_UP's up projection),
// SRC_K / SRC_V (QKV's k and v).
const SRC_MAIN: u32 = 0u;
const SRC_UP: u32 = 1u;
const SRC_K: u32 = 2u;
const SRC_V: u32 = 3u;

// The absmax of global block gb (the part holds blocks from block_base) of weight `src`.
#ifdef NESTED_ABSMAX
// Double quantization (bitsandbytes' compress_statistics) as the CPU decodes it
// (lowbit-core double_quant::absmax_value): absmax = T(T(code2[q] * absmax2) + offset), T the
// nested dtype, q the block's 8-bit code and absmax2 the f32 scale of its block of 256.
// The part's buffer, in u32 words: [0, 256) code2 (f32 bits), 256 offset (f32 bits), 257 T
// (0 f32, 1 f16, 2 bf16), [260, q_at) absmax2 from nested block block_base / 256 on, [q_at, ...)
// the 8-bit codes of blocks block_base, ... four per word, first in the low byte (the host makes
// block_base a multiple of 4).
fn nested_word(src: u32, i: u32) -> u32 {
#ifdef GATE_UP
  if (src == SRC_UP) { return absmax_up[i]; }
#endif
#ifdef QKV
  if (src == SRC_K) { return absmax_k[i]; }
  if (src == SRC_V) { return absmax_v[i]; }
#endif
  return absmax[i];
}

fn codes_at(src: u32) -> u32 {
#ifdef QKV
  if (src == SRC_K) { return p.q_at_k; }
  if (src == SRC_V) { return p.q_at_v; }
#endif
  return p.q_at;
}

// bf16 rounding (ties to even), torch's `.to(bfloat16)`; NaN stays NaN
fn round_to_bf16(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return v; }
  return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}

fn round_nested(v: f32, dtype: u32) -> f32 {
  if (dtype == 1u) { return round_to_f16(v); }
  if (dtype == 2u) { return round_to_bf16(v); }
  return v;
}

fn block_scale(src: u32, gb: u32) -> f32 {
  let rel = gb - p.block_base;
  let q = (nested_word(src, codes_at(src) + (rel >> 2u)) >> ((rel & 3u) * 8u)) & 255u;
  let c = bitcast<f32>(nested_word(src, q));
  let a2 = bitcast<f32>(nested_word(src, 260u + (gb >> 8u) - (p.block_base >> 8u)));
  let dtype = nested_word(src, 257u);
  return round_nested(round_nested(c * a2, dtype) + bitcast<f32>(nested_word(src, 256u)), dtype);
}
#else
fn block_scale(src: u32, gb: u32) -> f32 {
#ifdef GATE_UP
  if (src == SRC_UP) { return absmax_up[gb - p.block_base]; }
#endif
#ifdef QKV
  if (src == SRC_K) { return absmax_k[gb - p.block_base]; }
  if (src == SRC_V) { return absmax_v[gb - p.block_base]; }
#endif
  return absmax[gb - p.block_base];
}
#endif

fn word(i: u32) -> u32 {
  return packed[i >> 2u][i & 3u];
}

fn code_value(c: u32) -> f32 {
  return p.code[c >> 2u][c & 3u];
}

fn weight(nl: u32, kk: u32) -> f32 {
  let flat = (p.n0 + nl) * p.k + kk;
  let rel = flat - p.flat_base;
  let wd = word(rel >> 3u);
  // byte (rel >> 1) & 3 of the word; the even element is its high nibble
  let shift = ((rel >> 1u) & 3u) * 8u + select(4u, 0u, (rel & 1u) == 1u);
  return code_value((wd >> shift) & 15u) * block_scale(SRC_MAIN, flat >> p.block_shift);
}

fn gemv_row(nl: u32, lane: u32) -> f32 {
  var acc = 0.0;
  let row = (p.n0 + nl) * p.k;
  if (p.k % 8u == 0u) {
    // rows start on a word; the 8 elements of a word share a block (blocksize >= 32)
    let words = p.k / 8u;
    for (var w = lane; w < words; w = w + GEMV_LANES) {
      let flat = row + w * 8u;
      let wd = word((flat - p.flat_base) >> 3u);
      let s = block_scale(SRC_MAIN, flat >> p.block_shift);
      let xb = w * 8u;
      for (var b = 0u; b < 4u; b = b + 1u) {
        let byte = (wd >> (8u * b)) & 255u;
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

// --- gemv4: the decode GEMV (m == 1) when k % 32 == 0 and blocksize >= 32 (the host checks), so
// that a row is whole vec4<u32> words (32 weights, one absmax block each). The workgroup's
// G4_THREADS threads form row groups of p.g4_lanes threads (the host picks the smallest power of
// two >= the words per row, 8 to 64, so that short rows do not leave threads idle); a row group
// owns G4_OUT output rows (G4_ROWS row slots) and its threads split k in vec4 steps: lane l
// takes words l, l + lanes, ... of every row. The 32 activations of a word are loaded once into
// registers and used for all the group's rows (the activation is read once per row group, not
// once per row); the code table sits in workgroup memory (a uniform array indexed by a nibble
// is slow on several GPUs). Per word and row: sum of x * code over the 32 weights, times the
// block's absmax once. The partial sums reduce within each row group with subgroup shuffles
// (SUBGROUPS) or a tree in workgroup memory. GATE_UP: the 4 row slots are 2 output rows of the
// gate and the same 2 rows of up.
const G4_THREADS: u32 = 64u;
const G4_ROWS: u32 = 4u;
#ifdef GATE_UP
const G4_OUT: u32 = 2u;
#else
const G4_OUT: u32 = 4u;
#endif
var<workgroup> g4_code: array<f32, 16>;

// vec4 word i of weight src
fn g4_words(src: u32, i: u32) -> vec4<u32> {
#ifdef GATE_UP
  if (src == SRC_UP) { return packed_up[i]; }
#endif
#ifdef QKV
  if (src == SRC_K) { return packed_k[i]; }
  if (src == SRC_V) { return packed_v[i]; }
#endif
  return packed[i];
}

// The weight a row group starting at global row r0 reads, its rows, and r0 within it (QKV: q's
// rows, then k's, then v's; otherwise the part's rows)
fn g4_source(r0: u32) -> vec3<u32> {
#ifdef QKV
  if (r0 >= p.n_part + p.n_k) { return vec3<u32>(SRC_V, p.n_v, r0 - p.n_part - p.n_k); }
  if (r0 >= p.n_part) { return vec3<u32>(SRC_K, p.n_k, r0 - p.n_part); }
#endif
  return vec3<u32>(SRC_MAIN, p.n_part, r0);
}

// x[i .. i + 4)
fn x4(i: u32) -> vec4<f32> {
  return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

// code values of the 8 nibbles of a word, in element order (byte b: element 2b is its high nibble)
fn codes_lo(w: u32) -> vec4<f32> {
  return vec4<f32>(g4_code[(w >> 4u) & 15u], g4_code[w & 15u], g4_code[(w >> 12u) & 15u], g4_code[(w >> 8u) & 15u]);
}
fn codes_hi(w: u32) -> vec4<f32> {
  return vec4<f32>(g4_code[(w >> 20u) & 15u], g4_code[(w >> 16u) & 15u], g4_code[(w >> 28u) & 15u], g4_code[(w >> 24u) & 15u]);
}

#ifdef F16_COMPUTE
// F16_COMPUTE: the code table and the activations rounded to f16; each group of 4 products and
// their 3 sums in f16, then f32 (error per term within 6 · 2^-11 of |x · code|, plus f16's
// subnormal spacing where products are below 2^-14; activations beyond ±65504 do not fit f16)
var<workgroup> g4_code_h: array<f16, 16>;
fn codes_lo_h(w: u32) -> vec4<f16> {
  return vec4<f16>(g4_code_h[(w >> 4u) & 15u], g4_code_h[w & 15u], g4_code_h[(w >> 12u) & 15u], g4_code_h[(w >> 8u) & 15u]);
}
fn codes_hi_h(w: u32) -> vec4<f16> {
  return vec4<f16>(g4_code_h[(w >> 20u) & 15u], g4_code_h[(w >> 16u) & 15u], g4_code_h[(w >> 28u) & 15u], g4_code_h[(w >> 24u) & 15u]);
}
#endif

#ifdef INT_ACT
// INT_ACT: llama.cpp's IQ4_NL x Q8_0 scheme at the CPU's precision
// (crates/lowbit-core/src/kernels/matmul4_int.rs, int_activations.rs; the same integers). Each
// thread's 32 activations (one word of 32 weights) are quantized to 14 bits, q = round(x · 8191
// / max|x|) with scale d = max|x| / 8191, and the code table to 13 bits, t = round(value · T)
// (T = 8191 for NF4 / FP4, 7168 for INT4 so that its levels q / 7 are exact), so that a word's
// sum I = Σ q · t is exact in i32 (32 products of at most 8191 · 8192 < 2^31) and
// y += f32(I) · d · absmax / T. Why not 8-bit activations (one dot4I8Packed per 4 weights): on the
// CPU they moved the default model's NF4 perplexity by 1.2 % and top-1 agreement with the exact
// kernels to 95.8 % (hidden states have outlier channels), and an int8 table (1/127) gave 97.7 %
// on NF4 + double quant; the gate is 1 % and 98 %. dot4I8Packed takes int8, so q and t are split
// into two int8 limbs each, v = 128 · hi + lo with lo in [-64, 64) and hi in [-64, 64], and
// I = 2^14 Σ qh·th + 2^7 (Σ qh·tl + Σ ql·th) + Σ ql·tl: four dot4s per 4 weights (i32 wraps, and
// the final I fits, so the partial terms may overflow on the way). Error against the exact
// product: Σ (d / 2)·|w| + Σ |d q|·absmax / (2T), plus f32 roundings (the tests check it).
// byte of packed nibbles -> its two elements' table limbs as int8 in one word: bytes
// [hi(even), hi(odd), lo(even), lo(odd)] (the even element is the high nibble)
var<workgroup> g4_itab: array<u32, 256>;

// The exact I of 8 activations (limb words xh, xl: elements 0-3 and 4-7 in .xy / .zw) and the
// 8 weights of word w
fn int_dot8(xh: vec2<u32>, xl: vec2<u32>, w: u32) -> i32 {
  let t0 = g4_itab[w & 255u];
  let t1 = g4_itab[(w >> 8u) & 255u];
  let t2 = g4_itab[(w >> 16u) & 255u];
  let t3 = g4_itab[w >> 24u];
  // limb words of elements 0-3 (bytes 0, 1) and 4-7 (bytes 2, 3)
  let tha = (t0 & 0xffffu) | (t1 << 16u);
  let tla = (t0 >> 16u) | (t1 & 0xffff0000u);
  let thb = (t2 & 0xffffu) | (t3 << 16u);
  let tlb = (t2 >> 16u) | (t3 & 0xffff0000u);
  let hh = dot4(xh.x, tha) + dot4(xh.y, thb);
  let mid = dot4(xh.x, tla) + dot4(xh.y, tlb) + dot4(xl.x, tha) + dot4(xl.y, thb);
  let ll = dot4(xl.x, tla) + dot4(xl.y, tlb);
  return hh * 16384i + mid * 128i + ll;
}
#endif

@compute @workgroup_size(64)
fn gemv4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
         @builtin(subgroup_size) sg_size: u32,
#endif
        ) {
  if (lid < 16u) { g4_code[lid] = p.code[lid >> 2u][lid & 3u]; }
#ifdef F16_COMPUTE
  if (lid < 16u) { g4_code_h[lid] = f16(p.code[lid >> 2u][lid & 3u]); }
#endif
#ifdef INT_ACT
  // the table scale T: 8191 for tables within [-1, 1] (NF4, FP4), 7168 for INT4 (largest 8 / 7)
  var cmax = 0.0;
  for (var c = 0u; c < 16u; c = c + 1u) { cmax = max(cmax, abs(p.code[c >> 2u][c & 3u])); }
  let tscale = select(ACT_LEVELS, 7168.0, cmax > 1.0);
  for (var e = lid; e < 256u; e = e + G4_THREADS) {
    let even = limbs(i32(round(p.code[e >> 6u][(e >> 4u) & 3u] * tscale)));
    let odd = limbs(i32(round(p.code[(e & 15u) >> 2u][e & 3u] * tscale)));
    g4_itab[e] = pack_i8(vec4<i32>(even.x, odd.x, even.y, odd.y));
  }
#endif
  workgroupBarrier();
  let lanes = p.g4_lanes;
  let lane = lid % lanes;
  // first output row of this thread's row group
  let r0 = ((wid.x + wid.y * nwg.x) * (G4_THREADS / lanes) + lid / lanes) * G4_OUT;
  let quads = p.k / 32u;
  // per row: its first flat index and first vec4 in the part; rows past the part repeat the
  // last row (read, never stored)
  var flat0: array<u32, 4>;
  var q0: array<u32, 4>;
  var srcs: array<u32, 4>;
  let source = g4_source(r0);
  for (var r = 0u; r < G4_ROWS; r = r + 1u) {
    let nl = min(source.z + r % G4_OUT, source.y - 1u);
    // GATE_UP: slots G4_OUT.. read the up projection
    srcs[r] = select(source.x, SRC_UP, r >= G4_OUT);
    flat0[r] = (p.n0 + nl) * p.k;
    q0[r] = (flat0[r] - p.flat_base) >> 5u;
  }
  var acc = vec4<f32>(0.0);
  for (var q = lane; q < quads; q = q + lanes) {
    let xb = q * 32u;
    var wq: array<vec4<u32>, 4>;
    var s: vec4<f32>;
    for (var r = 0u; r < G4_ROWS; r = r + 1u) {
      wq[r] = g4_words(srcs[r], q0[r] + q);
      s[r] = block_scale(srcs[r], (flat0[r] + xb) >> p.block_shift);
    }
#ifdef INT_ACT
    // the 32 activations as 14-bit integers in int8 limb words (int_dot.wgsl)
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i = i + 1u) { v[i] = x4(xb + 4u * i); }
    var blk = quantize_act_block(v);
    var isum = vec4<i32>(0i);
    for (var j = 0u; j < 4u; j = j + 1u) {
      let h = vec2<u32>(blk.xh[2u * j], blk.xh[2u * j + 1u]);
      let l = vec2<u32>(blk.xl[2u * j], blk.xl[2u * j + 1u]);
      for (var r = 0u; r < G4_ROWS; r = r + 1u) {
        isum[r] = isum[r] + int_dot8(h, l, wq[r][j]);
      }
    }
    acc = acc + vec4<f32>(isum) * (s * (blk.d / tscale));
#else
    var t = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j = j + 1u) {
#ifdef F16_COMPUTE
      let xa = vec4<f16>(x4(xb + 8u * j));
      let xc = vec4<f16>(x4(xb + 8u * j + 4u));
      for (var r = 0u; r < G4_ROWS; r = r + 1u) {
        let w = wq[r][j];
        t[r] = t[r] + f32(dot(xa, codes_lo_h(w))) + f32(dot(xc, codes_hi_h(w)));
      }
#else
      let xa = x4(xb + 8u * j);
      let xc = x4(xb + 8u * j + 4u);
      for (var r = 0u; r < G4_ROWS; r = r + 1u) {
        let w = wq[r][j];
        t[r] = t[r] + dot(xa, codes_lo(w)) + dot(xc, codes_hi(w));
      }
#endif
    }
    acc = acc + t * s;
#endif
  }
#ifndef SUBGROUPS
  let sg_size = 0u;
#endif
  let sum = row_group_sum(acc, lid, lane, lanes, sg_size);
  if (lane == 0u) { g4_store(source, sum); }
}

// y for the row group's G4_OUT rows (those that exist) of weight source.x: bias added after the
// sum, or (GATE_UP) silu(gate) * up as elementwise.wgsl's swiglu computes it
fn g4_store(source: vec3<u32>, sum: vec4<f32>) {
  for (var r = 0u; r < G4_OUT; r = r + 1u) {
    let nl = source.z + r;
#ifdef QKV
    if (nl < source.y && source.x == SRC_K) { y_k[nl] = sum[r]; }
    if (nl < source.y && source.x == SRC_V) { y_v[nl] = sum[r]; }
    if (source.x != SRC_MAIN) { continue; }
#endif
    if (nl < p.n_part) {
#ifdef GATE_UP
      let g = sum[r];
      y[p.n0 + nl] = g / (1.0 + exp(-g)) * sum[r + G4_OUT];
#else
      var v = sum[r];
#ifndef QKV
      // (QKV takes no bias: its 10 storage bindings are what adapters commonly allow)
      if (p.has_bias != 0u) { v = v + bias[nl]; }
#endif
#ifdef RESIDUAL
      v = v + residual[p.n0 + nl];
#endif
      y[p.n0 + nl] = v;
#endif
    }
  }
}
