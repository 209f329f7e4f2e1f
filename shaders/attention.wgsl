// Causal scaled-dot-product attention of n new positions against a KV cache, grouped-query
// heads (crates/lowbit-core/src/kernels/attention.rs). The host writes the new K / V rows into
// the cache ([max_pos, n_kv_heads, head_dim]) with a buffer copy before this dispatch.
//
// One workgroup per (query head h, new token t); token t sits at position start + t and attends
// to positions 0 ..= start + t of kv head h / (n_heads / n_kv_heads). Scores q·k (summed over
// head_dim in order, as the CPU does) times `scale`, softmax, weighted sum of V. The softmax is
// computed online over chunks of CHUNK positions (running max and sum, rescaling the partial
// output), so memory does not grow with the context; it rounds differently from the CPU's
// two-pass softmax in the last bits. head_dim <= 4 * 64.
//
// Gemma 2 / 3 (lowbit-core's attention_with): `softcap` > 0 caps each scaled score as
// softcap * tanh(score / softcap); `window` > 0 lets position p see p - window < j <= p only
// (sliding-window layers). 0 turns either off.

struct Params {
  n: u32,
  start: u32,
  n_heads: u32,
  group: u32,        // n_heads / n_kv_heads
  head_dim: u32,
  kv_row: u32,       // n_kv_heads * head_dim
  scale: f32,
  window: u32,       // 0: every earlier position
  softcap: f32,      // 0: no soft-capping
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

const WG: u32 = 64u;
const CHUNK: u32 = 512u;
const MAX_R: u32 = 4u; // head_dim / WG, rounded up

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> q_sh: array<f32, 256>;
var<workgroup> s_sh: array<f32, CHUNK>;
var<workgroup> red: array<f32, WG>;

// tanh from exp of a non-positive argument (elementwise.wgsl's tanh_stable): no overflow.
fn tanh_stable(v: f32) -> f32 {
  let t = exp(-2.0 * abs(v));
  let r = (1.0 - t) / (1.0 + t);
  return select(r, -r, v < 0.0);
}

fn reduce_max(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (li < s) { red[li] = red[li] + red[li + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let t = wid.y;
  if (h >= p.n_heads || t >= p.n) { return; }
  let hd = p.head_dim;
  let q_row = p.n_heads * hd;
  let kv_off = (h / p.group) * hd;
  let len = p.start + t + 1u;
  // first position the sliding window lets this query see
  let lo = select(0u, len - min(len, p.window), p.window > 0u);
  for (var d = li; d < hd; d = d + WG) { q_sh[d] = q[t * q_row + h * hd + d]; }
  workgroupBarrier();

  // the lowest finite f32 stands for -inf (an infinite constant is a WGSL error); scores are
  // finite, so exp(m_run - m_new) is still 0 on the first chunk
  let lowest = -0x1.fffffep+127f;
  var m_run = lowest;
  var l_run = 0.0;
  var acc: array<f32, MAX_R>;
  for (var r = 0u; r < MAX_R; r = r + 1u) { acc[r] = 0.0; }

  for (var c0 = lo; c0 < len; c0 = c0 + CHUNK) {
    let cl = min(CHUNK, len - c0);
    var cmax = lowest;
    for (var j = li; j < cl; j = j + WG) {
      let kb = (c0 + j) * p.kv_row + kv_off;
      var dot = 0.0;
      for (var d = 0u; d < hd; d = d + 1u) { dot = dot + q_sh[d] * k_cache[kb + d]; }
      var s = dot * p.scale;
      if (p.softcap > 0.0) { s = tanh_stable(s / p.softcap) * p.softcap; }
      s_sh[j] = s;
      cmax = max(cmax, s);
    }
    let m_new = max(m_run, reduce_max(li, cmax));
    let alpha = exp(m_run - m_new); // 0 on the first chunk
    var psum = 0.0;
    for (var j = li; j < cl; j = j + WG) {
      let e = exp(s_sh[j] - m_new);
      s_sh[j] = e;
      psum = psum + e;
    }
    l_run = l_run * alpha + reduce_sum(li, psum); // (the reduction's barriers publish s_sh)
    for (var r = 0u; r < MAX_R; r = r + 1u) {
      let d = li + r * WG;
      if (d < hd) {
        var a = acc[r] * alpha;
        for (var j = 0u; j < cl; j = j + 1u) {
          a = a + s_sh[j] * v_cache[(c0 + j) * p.kv_row + kv_off + d];
        }
        acc[r] = a;
      }
    }
    m_run = m_new;
    workgroupBarrier(); // s_sh is rewritten by the next chunk
  }
  for (var r = 0u; r < MAX_R; r = r + 1u) {
    let d = li + r * WG;
    if (d < hd) { y[t * q_row + h * hd + d] = acc[r] / l_run; }
  }
}
