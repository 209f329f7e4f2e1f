// Bit-exact helpers shared by several kernels (included, not a module on its own).

// f16 bit pattern (low 16 bits of h) -> f32, exact, subnormals kept (no shader-f16 needed).
fn f16_bits_to_f32(h: u32) -> f32 {
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  let neg = (h & 0x8000u) != 0u;
  if (e == 0u) {
    let v = f32(m) * 5.9604644775390625e-8; // m * 2^-24, exact
    return select(v, -v, neg);
  }
  if (e == 31u) {
    return bitcast<f32>(((h & 0x8000u) << 16u) | 0x7f800000u | (m << 13u));
  }
  return bitcast<f32>(((h & 0x8000u) << 16u) | ((e + 112u) << 23u) | (m << 13u));
}

// bf16 bit pattern -> f32 (exact).
fn bf16_bits_to_f32(h: u32) -> f32 {
  return bitcast<f32>((h & 0xffffu) << 16u);
}

// Rounds an f32 to the nearest f16 value (ties to even, overflow to inf) and returns it as f32:
// torch's `.to(float16)`, done on the bits because WGSL leaves the f32 -> f16 rounding mode open.
fn round_to_f16(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  let sign = b & 0x80000000u;
  let a = b & 0x7fffffffu;
  if (a >= 0x7f800000u) { return v; }                                   // inf, NaN
  if (a >= 0x477ff000u) { return bitcast<f32>(sign | 0x7f800000u); }    // >= 65520 -> inf
  if (a >= 0x38800000u) {                                               // normal f16 (>= 2^-14)
    let rem = a & 0x1fffu;
    var t = a & 0xffffe000u;
    if (rem > 0x1000u || (rem == 0x1000u && (t & 0x2000u) != 0u)) { t = t + 0x2000u; }
    return bitcast<f32>(sign | t);
  }
  if (a <= 0x33000000u) { return bitcast<f32>(sign); }                  // <= 2^-25 -> 0
  // f16 subnormal: q * 2^-24 with q = round(|v| * 2^24), |v| = mant * 2^(e - 23)
  let e = i32(a >> 23u) - 127;                                           // -25 .. -15
  let mant = (a & 0x7fffffu) | 0x800000u;
  let s = u32(-(e + 1));                                                  // 14 .. 24
  var q = mant >> s;
  let rem = mant & ((1u << s) - 1u);
  let half = 1u << (s - 1u);
  if (rem > half || (rem == half && (q & 1u) != 0u)) { q = q + 1u; }
  return bitcast<f32>(sign | bitcast<u32>(f32(q) * 5.9604644775390625e-8));
}

// 1 / m correctly rounded (IEEE division) for a finite normal m > 0, by long division of the
// significands: WGSL's `1.0 / m` may be off by 2.5 ulp.
fn recip_exact(m: f32) -> f32 {
  let b = bitcast<u32>(m);
  let e = i32(b >> 23u) - 127;
  let mant = (b & 0x7fffffu) | 0x800000u;             // m = mant * 2^(e - 23)
  if (mant == 0x800000u) { return bitcast<f32>(u32(127 - e) << 23u); }
  // 2^24 / mant lies in (1, 2): 25 quotient bits (1 integer, 23 fraction, 1 guard) + sticky
  var rem = 0x1000000u;
  var q = 0u;
  for (var i = 0u; i < 25u; i = i + 1u) {
    q = q << 1u;
    if (rem >= mant) { rem = rem - mant; q = q | 1u; }
    rem = rem << 1u;
  }
  var r = q >> 1u;
  if ((q & 1u) != 0u && (rem != 0u || (r & 1u) != 0u)) { r = r + 1u; }
  var ex = 127 - e - 1;                                 // 1/m = (2^24 / mant) * 2^(-e-1)
  if (r == 0x1000000u) { r = 0x800000u; ex = ex + 1; }
  return bitcast<f32>((u32(ex) << 23u) | (r & 0x7fffffu));
}
