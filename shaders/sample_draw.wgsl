// Sampling on the device, so that a decode step reads back one token id: the host's choice
// (ts/generation/sampling.ts pickToken) made here — repetition penalty, then temperature,
// top-k, top-p and a draw with the host's uniform number `u` (from its seeded generator).
//
//   penalize      logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty for
//                 each of the (distinct) ids already seen; runs on a copy of the logits
//   draw_sorted   the draw over candidates sorted by descending logit (sample.wgsl topk's
//                 output: k ids, then k f32 bits): one invocation walks them as sampleCandidates
//   draw_full     the same over a whole row (top-k off) in one workgroup, without sorting: the
//                 order is larger logit first, lower index first on ties; the element where the
//                 running probability mass reaches a goal is found by bisection on the
//                 logit's order key (32 passes over the row) and, among equal logits, on the
//                 index
//
// Probabilities are exp((v - max) / temperature) in f32 (the host uses f64): the two choose the
// same token unless u lands within a few ulp of a boundary between two tokens' mass.

struct Params {
  n: u32,            // penalize: ids; draw_*: candidates (draw_sorted) or row length (draw_full)
  _pad0: u32,
  temperature: f32,  // draw_*
  top_p: f32,        // draw_*: 1 = off
  u: f32,            // draw_*: the host's uniform number in [0, 1)
  penalty: f32,      // penalize
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// penalize: the seen ids; draw_sorted: the candidates (ids, then value bits)
@group(0) @binding(1) var<storage, read> src: array<u32>;
// penalize: the logits (changed in place); draw_full: the logits
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
// draw_*: the chosen id at [0]
@group(0) @binding(3) var<storage, read_write> chosen: array<u32>;
// draw_full: scratch for the row's probabilities
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;

@compute @workgroup_size(256)
fn penalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let id = src[i];
  let v = logits[id];
  logits[id] = select(v * p.penalty, v / p.penalty, v > 0.0);
}

// sampleCandidates over sorted candidates: temperature, the smallest prefix whose mass reaches
// top_p (at least one), then the first whose running mass reaches u * (the prefix's mass)
@compute @workgroup_size(1)
fn draw_sorted() {
  let k = p.n;
  let top = bitcast<f32>(src[k]);
  var sum = 0.0;
  for (var j = 0u; j < k; j = j + 1u) { sum = sum + exp((bitcast<f32>(src[k + j]) - top) / p.temperature); }
  var keep = k;
  var kept = sum;
  if (p.top_p < 1.0) {
    var acc = 0.0;
    keep = 0u;
    while (keep < k && acc < p.top_p * sum) {
      acc = acc + exp((bitcast<f32>(src[k + keep]) - top) / p.temperature);
      keep = keep + 1u;
    }
    keep = max(keep, 1u);
    kept = max(acc, exp((bitcast<f32>(src[k]) - top) / p.temperature));
  }
  var r = p.u * kept;
  for (var j = 0u; j < keep; j = j + 1u) {
    r = r - exp((bitcast<f32>(src[k + j]) - top) / p.temperature);
    if (r <= 0.0) {
      chosen[0] = src[j];
      return;
    }
  }
  chosen[0] = src[keep - 1u];
}

// --- draw_full

var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;

// monotone u32 key of an f32 (a larger value has a larger key; -0.0 and +0.0 are equal, as
// the host's comparisons have them)
fn order_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) == 0u) { return 0x80000000u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn key_value(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

fn sum_all(li: u32, v: f32) -> f32 {
  red_f[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { red_f[li] = red_f[li] + red_f[li + s]; }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&red_f[0]);
  return r;
}

fn max_all(li: u32, v: f32) -> f32 {
  red_f[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { red_f[li] = max(red_f[li], red_f[li + s]); }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&red_f[0]);
  return r;
}

fn count_all(li: u32, v: u32) -> u32 {
  red_u[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { red_u[li] = red_u[li] + red_u[li + s]; }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&red_u[0]);
  return r;
}

// probability mass of the elements whose key is >= k
fn mass_from(li: u32, k: u32) -> f32 {
  var acc = 0.0;
  for (var i = li; i < p.n; i = i + 256u) {
    if (order_key(logits[i]) >= k) { acc = acc + probs[i]; }
  }
  return sum_all(li, acc);
}

// elements with key k and index <= last
fn ties_upto(li: u32, k: u32, last: u32) -> u32 {
  var c = 0u;
  for (var i = li; i <= last && i < p.n; i = i + 256u) {
    if (order_key(logits[i]) == k) { c = c + 1u; }
  }
  return count_all(li, c);
}

// The first element, in the order (larger logit first, lower index first), whose running mass
// (its own included) reaches `goal` (> 0): its index, key and running mass.
struct Found {
  index: u32,
  key: u32,
  mass: f32,
}

fn find(li: u32, goal: f32, top: f32) -> Found {
  // the largest key whose mass_from reaches the goal: the found element's logit
  var lo = 0u;
  var hi = 0xffffffffu;
  for (var it = 0u; it < 32u; it = it + 1u) {
    if (lo >= hi) { break; }
    let mid = lo + ((hi - lo) >> 1u) + ((hi - lo) & 1u);
    if (mass_from(li, mid) >= goal) { lo = mid; } else { hi = mid - 1u; }
  }
  let k = lo;
  var above = 0.0;
  if (k != 0xffffffffu) { above = mass_from(li, k + 1u); }
  let pk = exp((key_value(k) - top) / p.temperature);
  // among the elements with this logit, in index order: the c-th, where above + c * pk first
  // reaches the goal
  let ties = ties_upto(li, k, p.n - 1u);
  var c = ties;
  if (pk > 0.0) { c = clamp(u32(ceil(max(goal - above, 0.0) / pk)), 1u, ties); }
  // the smallest index with c ties at or below it
  var a = 0u;
  var b = p.n - 1u;
  for (var it = 0u; it < 32u; it = it + 1u) {
    if (a >= b) { break; }
    let mid = a + ((b - a) >> 1u);
    if (ties_upto(li, k, mid) >= c) { b = mid; } else { a = mid + 1u; }
  }
  return Found(a, k, above + f32(c) * pk);
}

@compute @workgroup_size(256)
fn draw_full(@builtin(local_invocation_index) li: u32) {
  var m = -3.4028234663852886e38;
  for (var i = li; i < p.n; i = i + 256u) { m = max(m, logits[i]); }
  let top = max_all(li, m);
  var acc = 0.0;
  for (var i = li; i < p.n; i = i + 256u) {
    let e = exp((logits[i] - top) / p.temperature);
    probs[i] = e;
    acc = acc + e;
  }
  let total = sum_all(li, acc);
  // top-p: the smallest prefix whose mass reaches top_p * total ends at `last`
  var kept = total;
  var last = Found(0u, 0u, total);
  var cut = false;
  if (p.top_p < 1.0) {
    last = find(li, max(p.top_p * total, 1.0e-38), top);
    kept = last.mass;
    cut = true;
  }
  var pick = find(li, max(p.u * kept, 1.0e-38), top);
  // past the prefix by rounding: the prefix's last element (as the host's loop ends there)
  if (cut && (pick.key < last.key || (pick.key == last.key && pick.index > last.index))) { pick = last; }
  if (li == 0u) { chosen[0] = pick.index; }
}
