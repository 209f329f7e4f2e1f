// GEMV and tiled GEMM over a weight accessor, shared by matmul4.wgsl, matmul_dense.wgsl and
// matmul_blockwise8.wgsl (included, not a module on its own). The including file defines:
//   struct Params with m, k, n_total, n0, n_part, has_bias;   var<uniform> p: Params;
//   x: array<f32> [m, k];  bias: array<f32> [n_part];  y: array<f32> [m, n_total];
//   fn weight(nl: u32, kk: u32) -> f32       W[n0 + nl, kk] widened / dequantized to f32
//   fn gemv_row(nl: u32, lane: u32) -> f32   lane's partial sum of x[0, :] · W[n0 + nl, :],
//                                            lanes taking k (or 8-wide groups of k) in turn
// y = x Wᵀ (+ bias); the bias is added after the sum, as the CPU kernels do.

// y for 4 consecutive output rows of the part from r0 (those inside it), the bias added after
// the sum: the store of the row-group decode GEMVs (gemv_rows, gemv8; row_group.wgsl)
fn store_rows(r0: u32, sum: vec4<f32>) {
  for (var r = 0u; r < 4u; r = r + 1u) {
    let nl = r0 + r;
    if (nl < p.n_part) {
      var v = sum[r];
      if (p.has_bias != 0u) { v = v + bias[nl]; }
      y[p.n0 + nl] = v;
    }
  }
}

const GEMV_LANES: u32 = 32u;
const GEMV_ROWS: u32 = 8u;
var<workgroup> gemv_red: array<f32, 256>;

// One activation row (m == 1): a workgroup takes GEMV_ROWS output rows, GEMV_LANES lanes each.
@compute @workgroup_size(32, 8)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let nl = (wid.x + wid.y * nwg.x) * GEMV_ROWS + lid.y;
  var acc = 0.0;
  if (nl < p.n_part) { acc = gemv_row(nl, lid.x); }
  let slot = lid.y * GEMV_LANES + lid.x;
  gemv_red[slot] = acc;
  workgroupBarrier();
  for (var s = GEMV_LANES / 2u; s > 0u; s = s >> 1u) {
    if (lid.x < s) { gemv_red[slot] = gemv_red[slot] + gemv_red[slot + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u && nl < p.n_part) {
    var v = gemv_red[slot];
    if (p.has_bias != 0u) { v = v + bias[nl]; }
    y[p.n0 + nl] = v;
  }
}

// Several activation rows: 64 x 64 output tiles, k in steps of 16 through workgroup memory,
// 4 x 4 outputs per invocation. Each output sums over k in order (like the scalar CPU kernel).
const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>; // [TK][TM]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * TM;
  let t0 = wid.x * TN;
  var acc: array<f32, 16>;
  for (var i = 0u; i < 16u; i = i + 1u) { acc[i] = 0.0; }
  for (var k0 = 0u; k0 < p.k; k0 = k0 + TK) {
    for (var e = 0u; e < 4u; e = e + 1u) {
      let idx = li * 4u + e;
      let r = idx / TK;
      let c = idx % TK;
      let kk = k0 + c;
      var av = 0.0;
      if (m0 + r < p.m && kk < p.k) { av = x[(m0 + r) * p.k + kk]; }
      a_tile[c * TM + r] = av;
      var bv = 0.0;
      if (t0 + r < p.n_part && kk < p.k) { bv = weight(t0 + r, kk); }
      b_tile[c * TN + r] = bv;
    }
    workgroupBarrier();
    for (var c = 0u; c < TK; c = c + 1u) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i = i + 1u) {
        a[i] = a_tile[c * TM + lid.y + 16u * i];
        b[i] = b_tile[c * TN + lid.x + 16u * i];
      }
      for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
          acc[i * 4u + j] = acc[i * 4u + j] + a[i] * b[j];
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i = i + 1u) {
    let row = m0 + lid.y + 16u * i;
    for (var j = 0u; j < 4u; j = j + 1u) {
      let nl = t0 + lid.x + 16u * j;
      if (row < p.m && nl < p.n_part) {
        var v = acc[i * 4u + j];
        if (p.has_bias != 0u) { v = v + bias[nl]; }
        y[row * p.n_total + p.n0 + nl] = v;
      }
    }
  }
}
