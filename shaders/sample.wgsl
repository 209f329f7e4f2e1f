// Token selection on the device, so a decode step reads back 4 bytes instead of the logits.
//   argmax   per row of x [rows, cols]: the index of the largest value, the first one on ties
//            (what the CPU's greedy pick does); NaN never wins.

struct Params {
  rows: u32,
  cols: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

const NONE: u32 = 0xffffffffu;

// (v, i) beats (bv, bi): a value (not NaN, i != NONE) where there is none yet, a larger value,
// or the same value at a lower index
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && v == v && (bi == NONE || v > bv || (v == bv && i < bi));
}

@compute @workgroup_size(256)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  var bv = 0.0;
  var bi = NONE;
  for (var c = li; c < p.cols; c = c + 256u) {
    let v = x[r * p.cols + c];
    if (better(v, c, bv, bi)) { bv = v; bi = c; }
  }
  best_v[li] = bv;
  best_i[li] = bi;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s && better(best_v[li + s], best_i[li + s], best_v[li], best_i[li])) {
      best_v[li] = best_v[li + s];
      best_i[li] = best_i[li + s];
    }
    workgroupBarrier();
  }
  if (li == 0u) { out[r] = select(best_i[0], 0u, best_i[0] == NONE); }
}

// topk: the k largest values of row 0 of x, in the order a stable descending sort gives them
// (larger value first, lower index first on ties, NaN last in index order — the CPU backend's
// order): out[0..k) = indices, out[k..2k) = f32 bits.
// k rounds over the row, each taking the first element (in that order) that comes after the
// previous pick — O(k · cols) work in one workgroup, meant for k up to a few hundred.

// NaN by its bits: a compiler may fold `v != v` away under WGSL's no-NaN allowance
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// (v, i) comes strictly before (w, j) in the top-k order
fn precedes(v: f32, i: u32, w: f32, j: u32) -> bool {
  let vn = is_nan(v);
  let wn = is_nan(w);
  if (vn != wn) { return wn; }
  if (vn) { return i < j; }
  return v > w || (v == w && i < j);
}

// (v, i) is a pick (i != NONE) that beats the best so far (none yet, or later in the order)
fn first(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || precedes(v, i, bv, bi));
}

@compute @workgroup_size(256)
fn topk(@builtin(local_invocation_index) li: u32) {
  var pv = 0.0;
  var pi = NONE; // previous pick; NONE before the first round
  for (var j = 0u; j < p.rows; j = j + 1u) { // p.rows holds k here
    var bv = 0.0;
    var bi = NONE;
    for (var c = li; c < p.cols; c = c + 256u) {
      let v = x[c];
      let after = pi == NONE || precedes(pv, pi, v, c);
      if (after && first(v, c, bv, bi)) { bv = v; bi = c; }
    }
    best_v[li] = bv;
    best_i[li] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
      if (li < s && first(best_v[li + s], best_i[li + s], best_v[li], best_i[li])) {
        best_v[li] = best_v[li + s];
        best_i[li] = best_i[li + s];
      }
      workgroupBarrier();
    }
    pv = best_v[0];
    pi = best_i[0];
    if (li == 0u) {
      out[j] = pi;
      out[p.rows + j] = bitcast<u32>(pv);
    }
    workgroupBarrier();
  }
}
