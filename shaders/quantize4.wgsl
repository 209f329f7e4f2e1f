// Block-wise 4-bit quantization (bitsandbytes quantize_4bit without double quant), bit-exact
// with the CPU quantizer (crates/lowbit-core/src/blockwise4.rs), i.e. bitsandbytes' CPU rules:
//   absmax[b] = max |x| over block b;
//   a full block:          y = x * f32(1 / max(absmax, 1e-38))   (reciprocal, then multiply)
//   the final partial one: y = x / max(absmax, 1e-38)            (true division), and a zero
//                          absmax is stored as f32(1e-38) = 0x006ce3ee;
//   code = order[#{ i : y > mid[i] }]  (nearest value, ties to the lower one), an odd final
//   element paired with the code of 0.0; byte j = element 2j in the high nibble.
// WGSL's division is not correctly rounded, so the reciprocal and the division are done on the
// significands with integer long division; the comparisons run on order-preserving integer
// keys of the f32 bits, so no subnormal flushing can change them.
// Exceptions (documented): inputs that are f32 subnormals, and products / quotients y with
// 0 < |y| < 2^-126, may be flushed to zero by WGSL (then FP4 can pick the other zero's code).
// One workgroup per block; each invocation packs 8 elements into one u32 word.

#include "common.wgsl"

struct Params {
  n: u32,             // elements in this chunk
  blocksize: u32,
  nblocks: u32,
  pad_code: u32,      // code of 0.0
  mid_key: array<vec4<u32>, 4>,  // 15 midpoint keys (+ an unused 16th)
  order: array<vec4<u32>, 4>,    // sorted position -> 4-bit code
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;
@group(0) @binding(3) var<storage, read_write> absmax: array<u32>; // f32 bits

var<workgroup> red: array<f32, 64>;

// f32 bits -> a u32 that orders like the value (-0 just below +0; no NaN here)
fn key(bits: u32) -> u32 {
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn encode(ybits: u32) -> u32 {
  let k = key(ybits);
  var idx = 0u;
  for (var i = 0u; i < 15u; i = i + 1u) {
    if (k > p.mid_key[i >> 2u][i & 3u]) { idx = idx + 1u; }
  }
  return p.order[idx >> 2u][idx & 3u];
}

// x / d correctly rounded (to nearest even) for finite normal x, d > 0 with |x| <= d; results
// below 2^-126 become a signed zero.
fn div_exact(x: f32, d: f32) -> u32 {
  let xb = bitcast<u32>(x);
  let sign = xb & 0x80000000u;
  let xa = xb & 0x7fffffffu;
  if (xa < 0x00800000u) { return sign; }   // zero (or a subnormal input, flushed)
  let db = bitcast<u32>(d);
  var ex = i32(xa >> 23u) - i32(db >> 23u);
  var mx = (xa & 0x7fffffu) | 0x800000u;
  let md = (db & 0x7fffffu) | 0x800000u;
  if (mx < md) { mx = mx << 1u; ex = ex - 1; }   // quotient in [1, 2)
  var rem = mx;
  var q = 0u;
  for (var i = 0u; i < 25u; i = i + 1u) {        // 1 integer, 23 fraction, 1 guard bit
    q = q << 1u;
    if (rem >= md) { rem = rem - md; q = q | 1u; }
    rem = rem << 1u;
  }
  var r = q >> 1u;
  if ((q & 1u) != 0u && (rem != 0u || (r & 1u) != 0u)) { r = r + 1u; }
  if (r == 0x1000000u) { r = 0x800000u; ex = ex + 1; }
  let e = ex + 127;
  if (e <= 0) { return sign; }
  return sign | (u32(e) << 23u) | (r & 0x7fffffu);
}

@compute @workgroup_size(64)
fn quantize4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
  let b = wid.x + wid.y * nwg.x;
  if (b >= p.nblocks) { return; }
  let start = b * p.blocksize;
  let end = min(start + p.blocksize, p.n);
  var m = 0.0;
  for (var i = start + li; i < end; i = i + 64u) { m = max(m, abs(x[i])); }
  red[li] = m;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let amax = red[0];
  let full = end - start == p.blocksize;
  var recip = 0.0;
  if (full && amax > 0.0) { recip = recip_exact(amax); }
  let words = (end - start + 7u) / 8u;
  for (var w = li; w < words; w = w + 64u) {
    var word = 0u;
    for (var e = 0u; e < 8u; e = e + 1u) {
      let i = start + w * 8u + e;
      var code = p.pad_code;
      if (i < end && amax > 0.0) {
        let v = x[i];
        if (full) { code = encode(bitcast<u32>(v * recip)); } else { code = encode(div_exact(v, amax)); }
      }
      // element 2j -> high nibble of byte j; byte j -> bits 8 (j % 4) of the word
      let shift = (e >> 1u) * 8u + select(4u, 0u, (e & 1u) == 1u);
      word = word | (code << shift);
    }
    packed[start / 8u + w] = word;
  }
  if (li == 0u) {
    absmax[b] = select(bitcast<u32>(amax), 0x006ce3eeu, !full && amax == 0.0);
  }
}
