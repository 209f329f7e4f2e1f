// Integer dot products of the integer paths (included, not a module on its own): LLM.int8
// (matmul_int8.wgsl) and the decode GEMVs on 14-bit integer activations (INT_ACT in matmul4.wgsl
// and matmul_blockwise8.wgsl, the CPU's int_activations.rs scheme). Values of up to 14 bits
// travel as two int8 limbs, v = 128 · hi + lo with lo in [-64, 64) and hi in [-64, 64], so that
// dot4I8Packed (DOT4: the WGSL implementation has packed_4x8_integer_dot_product; the including
// file carries `requires` under it) can sum their products exactly; without DOT4 the same sums
// are formed unpacked.

// activations are quantized to q = round(x · ACT_LEVELS / max|x|) per block of 32
const ACT_LEVELS: f32 = 8191.0;

// v -> (hi, lo), v = 128 · hi + lo
fn limbs(v: i32) -> vec2<i32> {
  let lo = ((v + 64i) & 127i) - 64i;
  return vec2<i32>((v - lo) >> 7u, lo);
}

// four int8 values in one word, element i in byte i
fn pack_i8(v: vec4<i32>) -> u32 {
  let b = bitcast<vec4<u32>>(v) & vec4<u32>(255u);
  return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

// Σ of the 4 products of two words of 4 int8 each
fn dot4(a: u32, b: u32) -> i32 {
#ifdef DOT4
  return dot4I8Packed(a, b);
#else
  var s = 0i;
  for (var e = 0u; e < 4u; e = e + 1u) {
    let sh = 24u - 8u * e;
    s = s + (bitcast<i32>(a << sh) >> 24u) * (bitcast<i32>(b << sh) >> 24u);
  }
  return s;
#endif
}

// 32 activations (8 vec4) as 14-bit integers in int8 limb words of 4 elements each (xh: high
// limbs, xl: low limbs; element i of the block in word i / 4, byte i % 4) with their scale d,
// quantized as int_activations.rs quantize_block does: q = round(x / d), d = max|x| / ACT_LEVELS;
// a zero block gives q = 0, d = 0; a non-finite one q = 0 and a non-finite d (so it reaches y, as
// through the f32 path).
struct ActBlock {
  xh: array<u32, 8>,
  xl: array<u32, 8>,
  d: f32,
}

fn quantize_act_block(v: array<vec4<f32>, 8>) -> ActBlock {
  var amax = 0.0;
  for (var i = 0u; i < 8u; i = i + 1u) {
    let a = abs(v[i]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  let finite = amax > 0.0 && amax <= 0x1.fffffep+127f; // the largest f32
  let inv = select(0.0, ACT_LEVELS / amax, finite);
  var b: ActBlock;
  b.d = amax / ACT_LEVELS;
  for (var i = 0u; i < 8u; i = i + 1u) {
    let qf = clamp(round(v[i] * inv), vec4<f32>(-ACT_LEVELS), vec4<f32>(ACT_LEVELS));
    let qv = select(vec4<i32>(0i), vec4<i32>(qf), finite);
    let lo = ((qv + vec4<i32>(64i)) & vec4<i32>(127i)) - vec4<i32>(64i);
    b.xh[i] = pack_i8((qv - lo) >> vec4<u32>(7u));
    b.xl[i] = pack_i8(lo);
  }
  return b;
}
