//! SIMD128 kernels (wasm32). Bit-exact with the scalar references in `blockwise4`.

use crate::codebook::Codebook4;
use crate::dtype::SimdLoad;
use core::arch::wasm32::*;

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
