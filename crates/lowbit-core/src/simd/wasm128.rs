//! SIMD128 kernels (wasm32). Bit-exact with the scalar references in `blockwise4`.

use crate::codebook::Codebook4;
use crate::dtype::{f16, SimdLoad};
use core::arch::wasm32::*;

/// `a·b + c` per lane. The relaxed-SIMD build fuses it (`f32x4.relaxed_madd`: one rounding, an
/// FMA where the CPU has one, 1.3–1.7× the GEMM throughput of a separate multiply and add in V8
/// on x86); the SIMD128 build multiplies and adds (two roundings, the scalar reference's bits).
/// Either stays within the kernels' float bounds, which count two roundings per product.
#[inline(always)]
pub fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return f32x4_relaxed_madd(a, b, c);
    #[cfg(not(target_feature = "relaxed-simd"))]
    return f32x4_add(c, f32x4_mul(a, b));
}

/// The sum of an f32x4's lanes, ((0 + 1) + (2 + 3)): the order every kernel's tests assume.
#[inline(always)]
pub fn hsum(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v)) + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

/// max |x| over a slice; NaN if any element is NaN (f32x4.max propagates NaN).
pub fn absmax<T: SimdLoad>(x: &[T]) -> f32 {
    let chunks = x.len() / 4;
    let mut acc = f32x4_splat(0.0);
    // SAFETY: every load reads 4 elements inside `x`.
    unsafe {
        for c in 0..chunks {
            acc = f32x4_max(acc, f32x4_abs(T::load4(x.as_ptr().add(c * 4))));
        }
    }
    let lanes = [f32x4_extract_lane::<0>(acc), f32x4_extract_lane::<1>(acc), f32x4_extract_lane::<2>(acc), f32x4_extract_lane::<3>(acc)];
    let mut m = 0f32;
    for a in lanes.into_iter().chain(x[chunks * 4..].iter().map(|v| v.to_f32().abs())) {
        if a > m || a.is_nan() {
            m = a;
        }
    }
    m
}

/// Quantize a block to packed nibbles: y = x * scale (or x / divisor), code = nearest entry.
/// Handles the first `16 * (len / 16)` elements; returns how many it did (the caller finishes
/// the tail with the scalar reference).
pub fn encode_block<T: SimdLoad>(block: &[T], scale: f32, divide: bool, cb: &Codebook4, out: &mut [u8]) -> usize {
    let chunks = block.len() / 16;
    let mids: [v128; 15] = cb.midpoints.map(|m| f32x4_splat(m));
    let sv = f32x4_splat(scale);
    // SAFETY: order has 16 bytes; loads read 16 elements inside `block`; stores write 8 bytes
    // inside `out`, which holds (block.len() + 1) / 2 bytes.
    unsafe {
        let order = v128_load(cb.order.as_ptr() as *const v128);
        for c in 0..chunks {
            let base = block.as_ptr().add(c * 16);
            let mut idx = [i32x4_splat(0); 4];
            for (q, slot) in idx.iter_mut().enumerate() {
                let x = T::load4(base.add(q * 4));
                let y = if divide { f32x4_div(x, sv) } else { f32x4_mul(x, sv) };
                let mut acc = i32x4_splat(0);
                for m in &mids {
                    acc = i32x4_sub(acc, f32x4_gt(y, *m)); // true lanes are -1
                }
                *slot = acc;
            }
            let sorted = u8x16_narrow_i16x8(i16x8_narrow_i32x4(idx[0], idx[1]), i16x8_narrow_i32x4(idx[2], idx[3]));
            let codes = i8x16_swizzle(order, sorted);
            let even = i8x16_shuffle::<0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0>(codes, codes);
            let odd = i8x16_shuffle::<1, 3, 5, 7, 9, 11, 13, 15, 1, 1, 1, 1, 1, 1, 1, 1>(codes, codes);
            let packed = v128_or(i8x16_shl(even, 4), odd);
            v128_store64_lane::<0>(packed, out.as_mut_ptr().add(c * 8) as *mut u64);
        }
    }
    chunks * 16
}

/// Expand packed nibbles through a 16-entry u16 table (f16 / bf16 bit patterns).
/// Handles the first `32 * (out.len() / 32)` elements and returns that count.
pub fn decode_u16(packed: &[u8], table: &[u16; 16], out: &mut [u16]) -> usize {
    let chunks = out.len() / 32;
    let lo: [u8; 16] = table.map(|v| v as u8);
    let hi: [u8; 16] = table.map(|v| (v >> 8) as u8);
    // SAFETY: each chunk reads 16 bytes of `packed` (it has >= out.len()/2 bytes) and writes
    // 32 u16 inside `out`.
    unsafe {
        let lo_tab = v128_load(lo.as_ptr() as *const v128);
        let hi_tab = v128_load(hi.as_ptr() as *const v128);
        let mask = u8x16_splat(0x0f);
        for c in 0..chunks {
            let bytes = v128_load(packed.as_ptr().add(c * 16) as *const v128);
            let hn = u8x16_shr(bytes, 4);
            let ln = v128_and(bytes, mask);
            let codes = [
                i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(hn, ln),
                i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(hn, ln),
            ];
            let dst = out.as_mut_ptr().add(c * 32);
            for (h, codes) in codes.into_iter().enumerate() {
                let l = i8x16_swizzle(lo_tab, codes);
                let u = i8x16_swizzle(hi_tab, codes);
                let a = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(l, u);
                let b = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(l, u);
                v128_store(dst.add(h * 16) as *mut v128, a);
                v128_store(dst.add(h * 16 + 8) as *mut v128, b);
            }
        }
    }
    chunks * 32
}

/// Expand packed nibbles through a 16-entry f32 table. Same contract as [`decode_u16`].
pub fn decode_f32(packed: &[u8], table: &[f32; 16], out: &mut [f32]) -> usize {
    let chunks = out.len() / 32;
    let bits = table.map(f32::to_bits);
    let planes: [[u8; 16]; 4] = core::array::from_fn(|p| bits.map(|b| (b >> (8 * p)) as u8));
    // SAFETY: as in decode_u16, with 32 f32 written per chunk.
    unsafe {
        let tabs = planes.map(|p| v128_load(p.as_ptr() as *const v128));
        let mask = u8x16_splat(0x0f);
        for c in 0..chunks {
            let bytes = v128_load(packed.as_ptr().add(c * 16) as *const v128);
            let hn = u8x16_shr(bytes, 4);
            let ln = v128_and(bytes, mask);
            let codes = [
                i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(hn, ln),
                i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(hn, ln),
            ];
            let dst = out.as_mut_ptr().add(c * 32);
            for (h, codes) in codes.into_iter().enumerate() {
                let p = tabs.map(|t| i8x16_swizzle(t, codes));
                let lo01 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(p[0], p[1]);
                let hi01 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(p[0], p[1]);
                let lo23 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(p[2], p[3]);
                let hi23 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(p[2], p[3]);
                let d = dst.add(h * 16);
                v128_store(d as *mut v128, i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(lo01, lo23));
                v128_store(d.add(4) as *mut v128, i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(lo01, lo23));
                v128_store(d.add(8) as *mut v128, i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(hi01, hi23));
                v128_store(d.add(12) as *mut v128, i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(hi01, hi23));
            }
        }
    }
    chunks * 32
}

// ---------------------------------------------------------------------------------------------
// f16 fast paths (quantize from f16 input, dequantize to f16 output), used by `blockwise4` for
// full blocks. Same bits as the scalar references; see the comments for why.

/// Per-call constants for [`quantize_block_f16`]: the codebook's midpoints arranged for a
/// two-stage search (3 compares pick one of 4 groups of 4 sorted codes, 3 more inside it).
pub struct EncoderF16 {
    /// splat(midpoints[3]), splat(midpoints[7]), splat(midpoints[11])
    coarse: [v128; 3],
    /// fine[j] = [m[j], m[4 + j], m[8 + j], m[12 + j]] as f32x4: lane g holds the j-th midpoint
    /// of group g (group g = sorted codes 4g..4g+3).
    fine: [v128; 3],
    order: v128,
}

impl EncoderF16 {
    pub fn new(cb: &Codebook4) -> EncoderF16 {
        let m = &cb.midpoints;
        // SAFETY: reads the 16 bytes of `order`.
        let order = unsafe { v128_load(cb.order.as_ptr() as *const v128) };
        EncoderF16 {
            coarse: [f32x4_splat(m[3]), f32x4_splat(m[7]), f32x4_splat(m[11])],
            fine: core::array::from_fn(|j| f32x4(m[j], m[4 + j], m[8 + j], m[12 + j])),
            order,
        }
    }
}

/// max over |x| of a block of f16 bit patterns, as bits (0x7c00 = Inf, above = NaN). For
/// non-NaN input this is exactly the scalar absmax: f16 magnitudes order like their bits.
#[inline(always)]
unsafe fn absmax_bits_f16(block: &[u16]) -> u16 {
    let mask = u16x8_splat(0x7fff);
    let mut acc = u16x8_splat(0);
    for c in 0..block.len() / 8 {
        acc = u16x8_max(acc, v128_and(v128_load(block.as_ptr().add(c * 8) as *const v128), mask));
    }
    acc = u16x8_max(acc, i8x16_shuffle::<8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7>(acc, acc));
    acc = u16x8_max(acc, i8x16_shuffle::<4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3>(acc, acc));
    acc = u16x8_max(acc, i8x16_shuffle::<2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1>(acc, acc));
    u16x8_extract_lane::<0>(acc)
}

/// Quantize one full block of f16 (given as bits; `block.len()` a multiple of 16) to packed
/// nibbles, returning its absmax. Returns None, touching nothing, when the block holds Inf or
/// NaN: the caller then takes the general path (which reports or handles them).
///
/// Bit-exact with `encode_block_scalar(block, 1 / max(absmax, 1e-38), divide = false)`:
/// - absmax: the largest f16 magnitude, converted exactly.
/// - y = x * scale: the f16 bits b are widened to f32 bits `(sign << 31) | ((b & 0x7fff) << 13)`,
///   which is exactly x * 2^-112 (an f32 subnormal for f16 subnormals), and multiplied by
///   scale * 2^112 (exact while scale < 2^15). The real product is x * scale either way and
///   IEEE multiplication rounds it once, so y has the same bits as the scalar `x * scale`.
///   For scale >= 2^15 the two factors are applied one after the other (x * 2^112 is exact).
/// - code: the count of midpoints below y (what `Codebook4::encode` computes), as
///   4 * #{m3, m7, m11 below y} + #{the 3 midpoints of that group below y}; the midpoints are
///   sorted, so this is the same count.
#[inline(always)]
fn quantize_block_f16(block: &[u16], enc: &EncoderF16, out: &mut [u8]) -> Option<f32> {
    if block.len() % 16 != 0 || out.len() < block.len() / 2 {
        return None;
    }
    // SAFETY: loads read 8 u16 inside `block`; stores write 8 bytes inside `out`.
    unsafe {
        let mbits = absmax_bits_f16(block);
        if mbits >= 0x7c00 {
            return None;
        }
        let amax = f32::from_bits((mbits as u32) << 13) * f32::from_bits(0x77800000); // * 2^112, exact
        let scale = 1.0 / amax.max(1e-38);
        if scale < 32768.0 {
            encode_f16::<true>(block, scale * f32::from_bits(0x77800000), enc, out);
        } else {
            encode_f16::<false>(block, scale, enc, out);
        }
        Some(amax)
    }
}

/// [`quantize_block_f16`] over consecutive full blocks (`bits.len()` a multiple of
/// `blocksize`, itself a multiple of 16). Stops before the first block holding Inf or NaN
/// and returns how many blocks it did.
pub fn quantize_blocks_f16(bits: &[u16], blocksize: usize, enc: &EncoderF16, packed: &mut [u8], absmax: &mut [f32]) -> usize {
    for (b, ((block, out), am)) in bits.chunks_exact(blocksize).zip(packed.chunks_exact_mut(blocksize / 2)).zip(absmax.iter_mut()).enumerate() {
        match quantize_block_f16(block, enc, out) {
            Some(a) => *am = a,
            None => return b,
        }
    }
    (bits.len() / blocksize).min(absmax.len()).min(packed.len() * 2 / blocksize)
}

#[inline(always)]
unsafe fn encode_f16<const FUSED: bool>(block: &[u16], scale: f32, enc: &EncoderF16, out: &mut [u8]) {
    let sv = f32x4_splat(scale);
    let pow112 = f32x4_splat(f32::from_bits(0x77800000));
    let keep = u32x4_splat(0x8fff_e000);
    let base = u32x4_splat(0x0302_0100);
    let low_byte = u32x4_splat(0xff);
    let y = |h: v128| {
        let x = v128_and(i32x4_shl(h, 13), keep);
        if FUSED {
            f32x4_mul(x, sv)
        } else {
            f32x4_mul(f32x4_mul(x, pow112), sv)
        }
    };
    let code = |y: v128| {
        let s = i8x16_add(i8x16_add(f32x4_gt(y, enc.coarse[0]), f32x4_gt(y, enc.coarse[1])), f32x4_gt(y, enc.coarse[2]));
        // every byte of a lane: 4 * group + byte position (group = -s)
        let idx = i8x16_sub(base, i8x16_shl(s, 2));
        let f = i32x4_add(
            i32x4_add(f32x4_gt(y, i8x16_swizzle(enc.fine[0], idx)), f32x4_gt(y, i8x16_swizzle(enc.fine[1], idx))),
            f32x4_gt(y, i8x16_swizzle(enc.fine[2], idx)),
        );
        i32x4_sub(v128_and(idx, low_byte), f)
    };
    for c in 0..block.len() / 16 {
        let p = block.as_ptr().add(c * 16) as *const v128;
        let h0 = v128_load(p);
        let h1 = v128_load(p.add(1));
        let c0 = code(y(i32x4_extend_low_i16x8(h0)));
        let c1 = code(y(i32x4_extend_high_i16x8(h0)));
        let c2 = code(y(i32x4_extend_low_i16x8(h1)));
        let c3 = code(y(i32x4_extend_high_i16x8(h1)));
        let sorted = u8x16_narrow_i16x8(i16x8_narrow_i32x4(c0, c1), i16x8_narrow_i32x4(c2, c3));
        let codes = i8x16_swizzle(enc.order, sorted);
        let even = i8x16_shuffle::<0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0>(codes, codes);
        let odd = i8x16_shuffle::<1, 3, 5, 7, 9, 11, 13, 15, 1, 1, 1, 1, 1, 1, 1, 1>(codes, codes);
        let packed = v128_or(i8x16_shl(even, 4), odd);
        v128_store64_lane::<0>(packed, out.as_mut_ptr().add(c * 8) as *mut u64);
    }
}

/// f32 -> f16 bits, round to nearest even, in the low 16 bits of each u32 lane. Same bits as
/// `half::f16::from_f32` (its software path: NaN keeps the top payload bits and sets the quiet
/// bit, overflow gives Inf, subnormals round to nearest even).
#[inline(always)]
fn f32x4_to_f16_bits(x: v128) -> v128 {
    let sign = u32x4_shr(v128_and(x, u32x4_splat(0x8000_0000)), 16);
    let a = v128_and(x, u32x4_splat(0x7fff_ffff));
    // normal results: rebias the exponent, add 0xfff + the lowest kept bit (ties to even), shift
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    let normal = u32x4_shr(i32x4_add(i32x4_add(a, u32x4_splat(0xc800_0fff)), odd), 13);
    // subnormal results (and zero): adding 0.5 rounds to a multiple of 2^-24 (f32 RNE)
    let half = f32x4_splat(0.5);
    let sub = i32x4_sub(f32x4_add(a, half), half);
    // Inf / NaN / overflow
    let nan = v128_or(v128_and(u32x4_shr(a, 13), u32x4_splat(0x3ff)), u32x4_splat(0x7e00));
    let special = v128_bitselect(nan, u32x4_splat(0x7c00), i32x4_gt(a, u32x4_splat(0x7f80_0000)));
    let r = v128_bitselect(sub, normal, i32x4_lt(a, u32x4_splat(113 << 23)));
    let r = v128_bitselect(special, r, i32x4_ge(a, u32x4_splat((127 + 16) << 23)));
    v128_or(r, sign)
}

/// [`f32x4_to_f16_bits`] for lanes that are zero (`nonzero` clear) or whose f16 is normal
/// (2^-14 <= |x| < 2^16; from 65520 up the rounding carries into the Inf exponent, as it should).
#[inline(always)]
fn f32x4_to_f16_bits_normal(x: v128, nonzero: v128) -> v128 {
    let sign = v128_and(u32x4_shr(x, 16), u32x4_splat(0x8000));
    let a = v128_and(x, u32x4_splat(0x7fff_ffff));
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    let r = u32x4_shr(i32x4_add(i32x4_add(a, u32x4_splat(0xc800_0fff)), odd), 13);
    v128_or(v128_and(r, nonzero), sign)
}

/// Decode full blocks to f16 bits: out[k] = f16(values[nibble] * absmax[block]). Handles the
/// first `out.len() / blocksize` blocks when `blocksize` is a multiple of 32 and returns how
/// many elements it wrote (0 otherwise).
///
/// The 16-entry table of each block is computed in SIMD: the products are the same f32
/// multiplications as the scalar `values[i] * absmax`, and the conversion matches
/// `half::f16::from_f32` bit for bit. A block whose absmax is not finite gets its table from
/// the scalar code (NaN payloads then come from the same scalar multiplications).
pub fn decode_f16(packed: &[u8], absmax: &[f32], blocksize: usize, values: &[f32; 16], out: &mut [u16]) -> usize {
    if blocksize % 32 != 0 || blocksize == 0 {
        return 0;
    }
    let blocks = (out.len() / blocksize).min(absmax.len()).min(packed.len() * 2 / blocksize);
    // SAFETY: block b reads packed[b * bs / 2 .. (b + 1) * bs / 2] and writes
    // out[b * bs .. (b + 1) * bs], both inside the slices for b < blocks.
    unsafe {
        let v = [0, 4, 8, 12].map(|i| v128_load(values.as_ptr().add(i) as *const v128));
        let nonzero = v.map(|v| v128_not(f32x4_eq(v, f32x4_splat(0.0))));
        // Blocks where every nonzero product c * amax is an f16 normal (or rounds to Inf by
        // carrying into the exponent) take the short conversion.
        let min_c = values.iter().map(|c| c.abs()).filter(|&c| c > 0.0).fold(f32::INFINITY, f32::min);
        let max_c = values.iter().map(|c| c.abs()).fold(0.0, f32::max);
        let mask = u8x16_splat(0x0f);
        for (b, &amax) in absmax[..blocks].iter().enumerate() {
            let a = amax.abs();
            let (w0, w1) = if a * min_c >= f32::from_bits(0x3880_0000) && a * max_c < 65536.0 {
                let s = f32x4_splat(amax);
                let t: [v128; 4] = core::array::from_fn(|i| f32x4_to_f16_bits_normal(f32x4_mul(v[i], s), nonzero[i]));
                (u16x8_narrow_i32x4(t[0], t[1]), u16x8_narrow_i32x4(t[2], t[3]))
            } else if amax.is_finite() {
                let s = f32x4_splat(amax);
                let [t0, t1, t2, t3] = v.map(|v| f32x4_to_f16_bits(f32x4_mul(v, s)));
                (u16x8_narrow_i32x4(t0, t1), u16x8_narrow_i32x4(t2, t3))
            } else {
                let t = values.map(|c| f16::from_f32(c * amax).to_bits());
                (v128_load(t.as_ptr() as *const v128), v128_load(t.as_ptr().add(8) as *const v128))
            };
            let lo_tab = i8x16_shuffle::<0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30>(w0, w1);
            let hi_tab = i8x16_shuffle::<1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31>(w0, w1);
            let src = packed.as_ptr().add(b * blocksize / 2);
            let dst = out.as_mut_ptr().add(b * blocksize);
            for c in 0..blocksize / 32 {
                let bytes = v128_load(src.add(c * 16) as *const v128);
                let hn = u8x16_shr(bytes, 4);
                let ln = v128_and(bytes, mask);
                let codes = [
                    i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(hn, ln),
                    i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(hn, ln),
                ];
                let d = dst.add(c * 32);
                for (h, codes) in codes.into_iter().enumerate() {
                    let l = i8x16_swizzle(lo_tab, codes);
                    let u = i8x16_swizzle(hi_tab, codes);
                    v128_store(d.add(h * 16) as *mut v128, i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(l, u));
                    v128_store(d.add(h * 16 + 8) as *mut v128, i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(l, u));
                }
            }
        }
    }
    blocks * blocksize
}
