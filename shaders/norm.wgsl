// RMSNorm and LayerNorm over each row (crates/lowbit-core/src/kernels/norm.rs), one workgroup
// per row, f32 sums reduced in a tree (the CPU sums in index order):
//   rms_norm    y = w * (x * (1 / sqrt(mean(x²) + eps)))
//   layer_norm  y = (x - mean) * (1 / sqrt(mean((x - mean)²) + eps)) * w (+ b)

struct Params {
  rows: u32,
  hidden: u32,
  eps: f32,
  has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 256>;

fn row_sum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = red[li] + red[li + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

// bindings 0, 1, 2, 4
@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let base = r * p.hidden;
  var ss = 0.0;
  for (var c = li; c < p.hidden; c = c + 256u) {
    let v = x[base + c];
    ss = ss + v * v;
  }
  let total = row_sum(li, ss);
  let inv = 1.0 / sqrt(total / f32(p.hidden) + p.eps);
  for (var c = li; c < p.hidden; c = c + 256u) {
    y[base + c] = w[c] * (x[base + c] * inv);
  }
}

// bindings 0, 1, 2, 3, 4
@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let base = r * p.hidden;
  var s = 0.0;
  for (var c = li; c < p.hidden; c = c + 256u) { s = s + x[base + c]; }
  let mean = row_sum(li, s) / f32(p.hidden);
  var ss = 0.0;
  for (var c = li; c < p.hidden; c = c + 256u) {
    let d = x[base + c] - mean;
    ss = ss + d * d;
  }
  let inv = 1.0 / sqrt(row_sum(li, ss) / f32(p.hidden) + p.eps);
  for (var c = li; c < p.hidden; c = c + 256u) {
    var v = (x[base + c] - mean) * inv * w[c];
    if (p.has_bias != 0u) { v = v + b[c]; }
    y[base + c] = v;
  }
}
