// Element-wise ops (crates/lowbit-core/src/kernels/activation.rs), one invocation per element:
//   add        a + b
//   silu       x / (1 + exp(-x))
//   swiglu     silu(gate) * up
//   gelu       0.5 x erfc(-x / √2) (exact GELU; erfc by the Numerical Recipes fit the CPU uses,
//              evaluated in f32 here, in f64 there)
//   gelu_tanh  0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
//   geglu      gelu_tanh(gate) * up (Gemma's gated MLP)
//   scale_op   x * value (Gemma's embedding scale)
//   softcap    value * tanh(x / value) (Gemma 2's final logit soft-capping)
// WGSL's exp / division are within a few ulp, not correctly rounded: results differ from the
// CPU's in the last bits.

struct Params {
  count: u32,
  value: f32,        // scale_op's factor, softcap's cap
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + li;
}

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}

// tanh from exp of a non-positive argument: no overflow for large |v| (some tanh builtins
// return NaN there).
fn tanh_stable(v: f32) -> f32 {
  let t = exp(-2.0 * abs(v));
  let r = (1.0 - t) / (1.0 + t);
  return select(r, -r, v < 0.0);
}

fn erfc_nr(z: f32) -> f32 {
  let az = abs(z);
  let t = 1.0 / (1.0 + 0.5 * az);
  let q = -az * az - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * exp(q);
  return select(2.0 - r, r, z >= 0.0);
}

// bindings 0, 1, 2, 3
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) { y[i] = a[i] + b[i]; }
}

// bindings 0, 1, 2, 3
@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) { y[i] = silu(a[i]) * b[i]; }
}

fn gelu_tanh_of(v: f32) -> f32 {
  return 0.5 * v * (1.0 + tanh_stable(0.7978846 * (v + 0.044715 * v * v * v)));
}

// bindings 0, 1, 2, 3
@compute @workgroup_size(256)
fn geglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) { y[i] = gelu_tanh_of(a[i]) * b[i]; }
}

// bindings 0, 1, 3
@compute @workgroup_size(256)
fn scale_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) { y[i] = a[i] * p.value; }
}

// bindings 0, 1, 3
@compute @workgroup_size(256)
fn softcap(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) { y[i] = tanh_stable(a[i] / p.value) * p.value; }
}

// bindings 0, 1, 3
@compute @workgroup_size(256)
fn silu_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) { y[i] = silu(a[i]); }
}

// bindings 0, 1, 3
@compute @workgroup_size(256)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) {
    let v = a[i];
    y[i] = 0.5 * v * erfc_nr(-v * 0.70710678118654752);
  }
}

// bindings 0, 1, 3
@compute @workgroup_size(256)
fn gelu_tanh(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = index(wid, nwg, li);
  if (i < p.count) {
    y[i] = gelu_tanh_of(a[i]);
  }
}
