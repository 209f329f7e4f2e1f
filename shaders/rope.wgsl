// Rotary position embeddings, transformers' "rotate half" (crates/lowbit-core/src/kernels/rope.rs):
// for head vector q (length d = 2 * half) and i < half,
//   q'[i] = q[i] c - q[i + half] s,   q'[i + half] = q[i + half] c + q[i] s,
// c, s = cos, sin of f32(position * inv_freq[i]). The host fills `cs` (cos, sin pairs for every
// position up to its capacity, [pos][i][2]) from inv_freq — default, Llama 3 scaled or any other —
// with the CPU kernel's arithmetic (f32 angle, cos / sin in f64 rounded to f32): WGSL's cos and
// sin are only accurate to 2^-11 on [-π, π].
// Partial rotary (Phi-4-mini: 2 * half < head_dim): only each head's first 2 * half values turn;
// the host copies x to y first, so the rest pass through. head_dim 0 means 2 * half (a full
// rotation). The table may carry an attention factor (LongRoPE) in
// cos / sin.

struct Params {
  rows: u32,
  n_heads: u32,
  half: u32,
  head_dim: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> cs: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// one invocation per (row, head, i < half)
@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let g = (wid.x + wid.y * nwg.x) * 256u + li;
  let per_row = p.n_heads * p.half;
  if (g >= p.rows * per_row) { return; }
  let r = g / per_row;
  let h = (g % per_row) / p.half;
  let i = g % p.half;
  let stride = select(p.head_dim, 2u * p.half, p.head_dim == 0u);
  let base = r * p.n_heads * stride + h * stride;
  let t = (positions[r] * p.half + i) * 2u;
  let c = cs[t];
  let s = cs[t + 1u];
  let x1 = x[base + i];
  let x2 = x[base + i + p.half];
  y[base + i] = x1 * c - x2 * s;
  y[base + i + p.half] = x2 * c + x1 * s;
}
