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
//
// Split over the context (flash decoding) for decode steps against a long context, where one
// workgroup per (head, token) leaves most of a GPU idle: `attention_split` runs one workgroup per
// (head, token, split), each over split_len positions of the span the call's tokens see, and
// writes its running max, sum of exp and un-normalized output to `part`; `attention_combine`
// rescales the splits to their common max and normalizes. A split outside a token's causal or
// sliding window does nothing (max = lowest, sum 0) and the combine skips it. The host picks the
// split count (ts/backends/webgpu/attention-split.ts). The combine is a dispatch of its own, not
// the last split workgroup to finish: WGSL's atomics are relaxed and storageBarrier orders only
// within a workgroup, so no workgroup may read another's partials within one dispatch.

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
  split_len: u32,    // attention_split / _combine: positions per split
  n_split: u32,      // splits per (head, token)
  _pad: u32,
}

const WG: u32 = 64u;
const CHUNK: u32 = 512u;
const MAX_R: u32 = 4u; // head_dim / WG, rounded up

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// per (token, head, split): max, sum of exp, head_dim un-normalized outputs
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

var<workgroup> q_sh: array<f32, 256>;
var<workgroup> s_sh: array<f32, CHUNK>;
var<workgroup> red: array<f32, WG>;

// the online softmax's state (walk): running max, running sum of exp, this lane's outputs
var<private> m_run: f32;
var<private> l_run: f32;
var<private> acc: array<f32, MAX_R>;

// the lowest finite f32 stands for -inf (an infinite constant is a WGSL error); scores are
// finite, so exp(m_run - m_new) is still 0 on the first chunk
const LOWEST: f32 = -0x1.fffffep+127f;

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

// The first position a query at position pos (len = pos + 1) sees under the sliding window.
fn first_seen(len: u32) -> u32 {
  return select(0u, len - min(len, p.window), p.window > 0u);
}

// Query row (t, h) into q_sh and an empty softmax state.
fn begin(h: u32, t: u32, li: u32) {
  let hd = p.head_dim;
  for (var d = li; d < hd; d = d + WG) { q_sh[d] = q[t * p.n_heads * hd + h * hd + d]; }
  workgroupBarrier();
  m_run = LOWEST;
  l_run = 0.0;
  for (var r = 0u; r < MAX_R; r = r + 1u) { acc[r] = 0.0; }
}

// Folds positions [first, last) of kv head offset kv_off into the state, CHUNK at a time.
fn walk(kv_off: u32, first: u32, last: u32, li: u32) {
  let hd = p.head_dim;
  for (var c0 = first; c0 < last; c0 = c0 + CHUNK) {
    let cl = min(CHUNK, last - c0);
    var cmax = LOWEST;
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
}

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let t = wid.y;
  if (h >= p.n_heads || t >= p.n) { return; }
  let hd = p.head_dim;
  let len = p.start + t + 1u;
  begin(h, t, li);
  walk((h / p.group) * hd, first_seen(len), len, li);
  for (var r = 0u; r < MAX_R; r = r + 1u) {
    let d = li + r * WG;
    if (d < hd) { y[(t * p.n_heads + h) * hd + d] = acc[r] / l_run; }
  }
}

// One workgroup per (head h, token t, split s): split s covers positions
// [base + s * split_len, base + (s + 1) * split_len) of the span that starts at the first
// position token 0 sees (base), cut to what token t sees.
@compute @workgroup_size(64)
fn attention_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let t = wid.y;
  let s = wid.z;
  if (h >= p.n_heads || t >= p.n || s >= p.n_split) { return; }
  let hd = p.head_dim;
  let len = p.start + t + 1u;
  let base = first_seen(p.start + 1u);
  let first = max(base + s * p.split_len, first_seen(len));
  let last = min(base + (s + 1u) * p.split_len, len);
  begin(h, t, li);
  walk((h / p.group) * hd, first, last, li); // nothing when first >= last
  let o = ((t * p.n_heads + h) * p.n_split + s) * (hd + 2u);
  if (li == 0u) {
    part[o] = m_run;
    part[o + 1u] = l_run;
  }
  for (var r = 0u; r < MAX_R; r = r + 1u) {
    let d = li + r * WG;
    if (d < hd) { part[o + 2u + d] = acc[r]; }
  }
}

// One workgroup per (head, token): out = Σ_s e^(m_s - M) acc_s / Σ_s e^(m_s - M) l_s with M the
// largest max of the splits that saw a position (sum > 0; at least the token's own position).
@compute @workgroup_size(64)
fn attention_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let t = wid.y;
  if (h >= p.n_heads || t >= p.n) { return; }
  let hd = p.head_dim;
  let stride = hd + 2u;
  let b = (t * p.n_heads + h) * p.n_split * stride;
  var m = LOWEST;
  for (var s = 0u; s < p.n_split; s = s + 1u) {
    if (part[b + s * stride + 1u] > 0.0) { m = max(m, part[b + s * stride]); }
  }
  var l = 0.0;
  var o: array<f32, MAX_R>;
  for (var r = 0u; r < MAX_R; r = r + 1u) { o[r] = 0.0; }
  for (var s = 0u; s < p.n_split; s = s + 1u) {
    let at = b + s * stride;
    let ls = part[at + 1u];
    if (ls > 0.0) {
      let w = exp(part[at] - m);
      l = l + ls * w;
      for (var r = 0u; r < MAX_R; r = r + 1u) {
        let d = li + r * WG;
        if (d < hd) { o[r] = o[r] + part[at + 2u + d] * w; }
      }
    }
  }
  for (var r = 0u; r < MAX_R; r = r + 1u) {
    let d = li + r * WG;
    if (d < hd) { y[(t * p.n_heads + h) * hd + d] = o[r] / l; }
  }
}
