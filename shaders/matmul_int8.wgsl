// LLM.int8() linear layer as bitsandbytes' CPU path computes it
// (crates/lowbit-core/src/kernels/matmul_int8.rs, spec §6.2), in four dispatches:
//   int8_flags    column c is an outlier column when |f16(x[i, c])| >= threshold for some row i
//   int8_compact  the ascending list of outlier columns (cols[0] = count, cols[1..])
//   int8_quant    per row i: a = f16(x[i, :]); SCA[i] = max |a| over the row's non-outliers;
//                 CA[i, c] = round_half_even(a * (f32(1 / SCA[i]) * 127)), 0 in outlier columns
//   int8_matmul   y[i, j] = f32(Σ_c CA[i, c] CB[j, c]) * (SCA[i] * SCB[j]) * 6.200124e-05 (+ bias[j])
//                 + Σ_outlier c a[i, c] * f16((CB[j, c] * SCB[j]) * f32(1/127))   (columns in order)
// The i32 sums are exact and the float steps are the CPU kernel's, in its order, so outputs
// equal the CPU backend's up to FMA contraction. CA and CB rows are int8 packed 4 per u32, each
// row padded with zeros to k4 = ceil(k / 4) * 4 bytes. With DOT4 the sums use dot4I8Packed.
//   int8_gemv     int8_matmul for one activation row (decode), laid out as matmul4.wgsl gemv4:
//                 row groups of p.lanes threads own 4 output rows, threads split the row's words
//                 (the CA word loaded once for the 4 rows), the exact i32 partial sums reduce with
//                 subgroup shuffles (SUBGROUPS) or a workgroup tree; same results, bit for bit.
#ifdef DOT4
requires packed_4x8_integer_dot_product;
#endif

#include "common.wgsl"
#include "int_dot.wgsl"

struct Params {
  m: u32,
  k: u32,
  n_total: u32,
  n0: u32,
  n_part: u32,
  has_bias: u32,
  words: u32,         // k4 / 4: u32 words per CA / CB row
  has_outliers: u32,  // threshold > 0
  threshold: f32,
  lanes: u32,         // int8_gemv: threads per row group (8, 16, 32 or 64)
  _pad1: u32,
  _pad2: u32,
}

const MM_DEQUANT_SCALE: f32 = 6.200124e-05; // bitsandbytes' CPU int8_mm_dequant constant (sic)
const INV127: f32 = 7.874015718698502e-3;   // f32(1/127)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> flags: array<u32>;
@group(0) @binding(3) var<storage, read_write> cols: array<u32>;
@group(0) @binding(4) var<storage, read_write> ca: array<u32>;
@group(0) @binding(5) var<storage, read_write> sca: array<f32>;
@group(0) @binding(6) var<storage, read> flags_in: array<u32>;
@group(0) @binding(7) var<storage, read> cols_in: array<u32>;
@group(0) @binding(8) var<storage, read> ca_in: array<u32>;
@group(0) @binding(9) var<storage, read> sca_in: array<f32>;
@group(0) @binding(10) var<storage, read> cb: array<u32>;
@group(0) @binding(11) var<storage, read> scb: array<f32>;
@group(0) @binding(12) var<storage, read> bias: array<f32>;
@group(0) @binding(13) var<storage, read_write> y: array<f32>;

fn is_outlier(a: f32) -> bool {
  return p.has_outliers != 0u && abs(a) >= p.threshold;
}

// bindings 1, 2
@compute @workgroup_size(256)
fn int8_flags(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let c = (wid.x + wid.y * nwg.x) * 256u + li;
  if (c >= p.k) { return; }
  var f = 0u;
  for (var i = 0u; i < p.m; i = i + 1u) {
    if (is_outlier(round_to_f16(x[i * p.k + c]))) { f = 1u; }
  }
  flags[c] = f;
}

var<workgroup> scan: array<u32, 256>;

// bindings 3, 6; one workgroup: each invocation counts a contiguous chunk, then a prefix sum.
@compute @workgroup_size(256)
fn int8_compact(@builtin(local_invocation_index) li: u32) {
  let chunk = (p.k + 255u) / 256u;
  let c0 = min(li * chunk, p.k);
  let c1 = min(c0 + chunk, p.k);
  var count = 0u;
  for (var c = c0; c < c1; c = c + 1u) { count = count + flags_in[c]; }
  scan[li] = count;
  workgroupBarrier();
  for (var s = 1u; s < 256u; s = s << 1u) {
    var v = 0u;
    if (li >= s) { v = scan[li - s]; }
    workgroupBarrier();
    scan[li] = scan[li] + v;
    workgroupBarrier();
  }
  var at = scan[li] - count; // exclusive prefix
  for (var c = c0; c < c1; c = c + 1u) {
    if (flags_in[c] != 0u) {
      cols[1u + at] = c;
      at = at + 1u;
    }
  }
  if (li == 255u) { cols[0] = scan[255]; }
}

var<workgroup> red: array<f32, 256>;

// bindings 1, 4, 5, 6; one workgroup per activation row.
@compute @workgroup_size(256)
fn int8_quant(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let i = wid.x + wid.y * nwg.x;
  if (i >= p.m) { return; }
  var mx = 0.0;
  for (var c = li; c < p.k; c = c + 256u) {
    let a = round_to_f16(x[i * p.k + c]);
    if (!is_outlier(a)) { mx = max(mx, abs(a)); }
  }
  red[li] = mx;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let m = red[0];
  var scale = 0.0;
  if (m > 0.0) { scale = recip_exact(m) * 127.0; } // torch's 127.0 / row_stats: reciprocal, then * 127
  for (var w = li; w < p.words; w = w + 256u) {
    var word = 0u;
    for (var e = 0u; e < 4u; e = e + 1u) {
      let c = w * 4u + e;
      if (c < p.k) {
        let a = round_to_f16(x[i * p.k + c]);
        var q = 0i;
        let col_out = p.has_outliers != 0u && flags_in[c] != 0u;
        if (m > 0.0 && !is_outlier(a) && !col_out) { q = i32(round(a * scale)); }
        word = word | ((bitcast<u32>(q) & 255u) << (8u * e));
      }
    }
    ca[i * p.words + w] = word;
  }
  if (li == 0u) { sca[i] = m; }
}

fn cb_value(jl: u32, c: u32) -> f32 {
  let word = cb[jl * p.words + (c >> 2u)];
  let sh = 24u - 8u * (c & 3u);
  return f32(bitcast<i32>(word << sh) >> 24u);
}

// bindings 1, 7, 8, 9, 10, 11, 12, 13; one invocation per output, x over this part's rows of
// W in groups of 64, y over activation rows.
@compute @workgroup_size(64)
fn int8_matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
  let jl = gid.x;
  let i = gid.y;
  if (jl >= p.n_part || i >= p.m) { return; }
  var acc = 0i;
  for (var w = 0u; w < p.words; w = w + 1u) {
    acc = acc + dot4(ca_in[i * p.words + w], cb[jl * p.words + w]);
  }
  y[i * p.n_total + p.n0 + jl] = int8_out(i, jl, acc);
}

// y[i, n0 + jl] from the exact integer sum: the scales, the bias, the outlier columns in float
fn int8_out(i: u32, jl: u32, acc: i32) -> f32 {
  let sb = scb[jl];
  var v = f32(acc) * (sca_in[i] * sb) * MM_DEQUANT_SCALE;
  if (p.has_bias != 0u) { v = v + bias[jl]; }
  if (p.has_outliers != 0u) {
    let count = cols_in[0];
    var s = 0.0;
    for (var t = 0u; t < count; t = t + 1u) {
      let c = cols_in[1u + t];
      let sub_b = round_to_f16((cb_value(jl, c) * sb) * INV127);
      s = s + round_to_f16(x[i * p.k + c]) * sub_b;
    }
    v = v + s;
  }
  return v;
}

const I8_THREADS: u32 = 64u;
const I8_ROWS: u32 = 4u;
var<workgroup> i8_red: array<vec4<i32>, I8_THREADS>;

// bindings as int8_matmul; m == 1
@compute @workgroup_size(64)
fn int8_gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
             @builtin(subgroup_size) sg_size: u32,
#endif
            ) {
  let lanes = p.lanes;
  let lane = lid % lanes;
  let r0 = ((wid.x + wid.y * nwg.x) * (I8_THREADS / lanes) + lid / lanes) * I8_ROWS;
  // rows past the part repeat its last row (read, never stored)
  var base: array<u32, 4>;
  for (var r = 0u; r < I8_ROWS; r = r + 1u) { base[r] = min(r0 + r, p.n_part - 1u) * p.words; }
  var acc = vec4<i32>(0);
  for (var w = lane; w < p.words; w = w + lanes) {
    let a = ca_in[w];
    acc = acc + vec4<i32>(dot4(a, cb[base[0] + w]), dot4(a, cb[base[1] + w]), dot4(a, cb[base[2] + w]), dot4(a, cb[base[3] + w]));
  }
#ifdef SUBGROUPS
  // as matmul4.wgsl gemv4: runs of min(lanes, subgroup size) consecutive invocations
  let run = min(lanes, sg_size);
  for (var o = 1u; o < run; o = o << 1u) { acc = acc + subgroupShuffleXor(acc, o); }
  if (lid % run == 0u) { i8_red[lid / run] = acc; }
  workgroupBarrier();
  if (lane == 0u) {
    let first = lid / run;
    var sum = i8_red[first];
    for (var t = 1u; t < lanes / run; t = t + 1u) { sum = sum + i8_red[first + t]; }
    int8_store(r0, sum);
  }
#else
  i8_red[lid] = acc;
  workgroupBarrier();
  for (var st = lanes / 2u; st > 0u; st = st >> 1u) {
    if (lane < st) { i8_red[lid] = i8_red[lid] + i8_red[lid + st]; }
    workgroupBarrier();
  }
  if (lane == 0u) { int8_store(r0, i8_red[lid]); }
#endif
}

fn int8_store(r0: u32, sum: vec4<i32>) {
  for (var r = 0u; r < I8_ROWS; r = r + 1u) {
    let jl = r0 + r;
    if (jl < p.n_part) { y[p.n0 + jl] = int8_out(0u, jl, sum[r]); }
  }
}
