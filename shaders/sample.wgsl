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
