//! 4-bit linear layer (NF4 / FP4 / INT4, plain or double-quantized absmax) on integer activations:
//! the fast CPU path. Floats appear once per 32 weights, not per weight:
//!
//!   y[r, j] = Σ_b (absmax_b / s) · Σ_{c in b} d_{r,c} · I_{r,j,c},   I = Σ_{k in c} t[code_jk] · q_{r,k}
//!
//! with `t` the code table rounded to integers (`round(values · s)`, s = 8191, or 7168 for INT4:
//! [`Table16`]), `q`, `d` the activations quantized to 14 bits per block of 32
//! ([`IntActivations`]) and I an exact i32 sum (32 products of at most 8191 · 8192 < 2^31). This is
//! llama.cpp's IQ4_NL × Q8_0 scheme with bitsandbytes' blocks: the activation blocks of 32 must
//! lie inside one weight block, so it needs K % 32 == 0 (every bitsandbytes blocksize is a
//! multiple of 32); [`supports`] says when it applies, and the exact kernels
//! ([`super::matmul4`]) take the rest.
//!
//! Error against the exact product Σ x_k · w_k (w_k = values[c] · absmax_b):
//!   |Σ x·w − Σ d·q·t·absmax/s| <= Σ_k |x_k − d q_k|·|w_k| + Σ_k |d q_k|·|w_k − t_k·absmax/s|
//!                               <= Σ_k (d_c / 2)·|w_k| + Σ_k |d_c q_k|·absmax_b / (2s)
//! (the table is rounded to the nearest 1/s), plus f32 rounding of the few float operations
//! (see [`float_bound`]). The tests check exactly this bound against the exact reference.
//!
//! Implementations (each tested against [`matmul4_int_reference`], whose integer sums I are the
//! same; only the order of the float additions differs):
//! - scalar: I per chunk of 32, then the float sums in chunk order;
//! - SIMD128: per 32 weights one 16-byte load, the nibbles as two index vectors, four
//!   `i8x16.swizzle` into the table's low and high byte planes, four byte interleaves into i16
//!   lanes and four `i32x4.dot_i16x8_s` against the activation chunk (i16, in nibble order); one
//!   convert, multiply and add per chunk (in f32x4 lanes);
//! - relaxed SIMD: the same, with `i8x16.relaxed_swizzle` (no handling of out-of-range indices,
//!   which V8 otherwise adds to every swizzle); the same bits as SIMD128. The relaxed int8 dot
//!   (`i32x4.relaxed_dot_i8x16_i7x16_add_s`) is not used: it needs 8-bit activations and a
//!   7-bit table, which cost too much accuracy (see [`super::int_activations`] and [`Table16`]).
//!
//! GEMV and GEMM share the loop: up to four activation rows go through each decoded chunk.

use super::matmul4::{check_io, Weight4};
use super::int_activations::{IntActivations, QK};
use super::{add_bias, check_len, mul};
use crate::codebook::{Codebook4, QuantType4};
use crate::error::{bail, Result};
use crate::Kernel;

/// The 16 code values as integers: `t = round(values · scale)`, so `values ≈ t / scale`.
/// NF4 and FP4 lie in [-1, 1] and use scale 8191 (13 bits); INT4's levels are q/7 for q in
/// -8..=7 and use scale 7168 (t = 1024·q, exact). A table rounded to int8 (1/127, as llama.cpp's
/// IQ4_NL table) moved some NF4 values by 2 % of themselves and the default model's top-1
/// agreement with the exact kernels below 98 %; 13 bits cost two more byte shuffles per 16 weights.
#[derive(Debug, Clone, Copy)]
pub struct Table16 {
    pub t: [i16; 16],
    pub scale: f32,
}

impl Table16 {
    pub fn get(qt: QuantType4) -> Table16 {
        let scale = match qt {
            QuantType4::Int4 => 7168.0,
            QuantType4::Nf4 | QuantType4::Fp4 => 8191.0,
        };
        Table16 { t: Codebook4::get(qt).values.map(|v| (v * scale).round_ties_even() as i16), scale }
    }
}

/// Whether the integer path applies to this weight (K % 32 == 0 and blocks of at least 32).
pub fn supports(w: &Weight4) -> bool {
    w.k.is_multiple_of(QK) && w.blocksize.is_multiple_of(QK)
}

fn check(xq: &IntActivations, w: &Weight4, bias: Option<&[f32]>, out: &[f32]) -> Result<()> {
    w.validate()?;
    if !supports(w) {
        bail!(InvalidArgument, "the integer-activation kernel needs K and the blocksize to be multiples of {QK} (K = {}, blocksize = {})", w.k, w.blocksize);
    }
    if xq.k != w.k {
        bail!(LengthMismatch, "activations have {} columns but the weight has {} inputs", xq.k, w.k);
    }
    check_len("output", out.len(), mul(xq.m, w.n, "output")?)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), w.n)?;
    }
    Ok(())
}

/// `out[m, n] = x · Wᵀ (+ bias)` with x quantized here (see the module docs).
pub fn matmul4_int(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    check_io(x, m, w, bias, out)?;
    let xq = IntActivations::new(x, m, w.k)?;
    matmul4_int_quantized(&xq, w, bias, out, kernel)
}

/// The same with activations already quantized (one quantization shared by several layers).
pub fn matmul4_int_quantized(xq: &IntActivations, w: &Weight4, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    check(xq, w, bias, out)?;
    let table = Table16::get(w.quant_type);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        let n = w.n;
        let mut r0 = 0;
        while r0 < xq.m {
            let rows = (xq.m - r0).min(4);
            match rows {
                1 if xq.m == 1 => simd::gemv(xq, w, &table, out),
                1 => simd::rows::<1>(xq, r0, w, &table, out, 0, n),
                2 => simd::rows::<2>(xq, r0, w, &table, out, 0, n),
                3 => simd::rows::<3>(xq, r0, w, &table, out, 0, n),
                _ => simd::rows::<4>(xq, r0, w, &table, out, 0, n),
            }
            r0 += rows;
        }
        add_bias(out, w.n, bias);
        return Ok(());
    }
    let _ = kernel;
    scalar(xq, w, &table, out);
    add_bias(out, w.n, bias);
    Ok(())
}

/// Scalar reference (also the non-wasm kernel): exact I per chunk, float sums in chunk order.
pub fn matmul4_int_reference(xq: &IntActivations, w: &Weight4, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    let mut out = vec![0f32; mul(xq.m, w.n, "output")?];
    check(xq, w, bias, &out)?;
    scalar(xq, w, &Table16::get(w.quant_type), &mut out);
    add_bias(&mut out, w.n, bias);
    Ok(out)
}

fn scalar(xq: &IntActivations, w: &Weight4, t: &Table16, out: &mut [f32]) {
    let k = w.k;
    super::int_activations::scalar_rows(xq, w.n, w.blocksize, out, |b| w.absmax.get(b) / t.scale, |j, kk, x| {
        (0..QK).map(|i| t.t[w.code(j * k + kk + i)] as i32 * xq.q[x + i] as i32).sum()
    });
}

/// A bound on |kernel − reference| for output `[r, j]` from the float operations alone (the
/// integers are exact in both; the reference's conversion of a chunk's I, which may exceed
/// 2^24, is one more rounding): each term of the reference's sums, and ours, passes through at
/// most C + 4 roundings, so the two differ by at most 2·γ_{C+4}·S <= (C + 6)·2^-22·S with
/// S = Σ_b |absmax_b/s| Σ_c |d_c| Σ_k |t_k q_k| (+ |bias|).
pub fn float_bound(xq: &IntActivations, w: &Weight4, bias: Option<&[f32]>, r: usize, j: usize) -> f32 {
    let (k, bs) = (w.k, w.blocksize);
    let t = Table16::get(w.quant_type);
    super::int_activations::float_bound_of(xq, r, bias.map_or(0.0, |b| b[j]), |c| {
        let sum: f64 = (c * QK..(c + 1) * QK).map(|kk| (t.t[w.code(j * k + kk)] as f64 * xq.q[r * k + kk] as f64).abs()).sum();
        (w.absmax.get((j * k + c * QK) / bs) as f64 / t.scale as f64, sum)
    })
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::{Table16, Weight4};
    use crate::kernels::int_activations::{IntActivations, QK};
    use crate::simd::wasm128::{hsum, madd};
    use core::arch::wasm32::*;


    /// The int8 code table, and the decoding of 32 packed weights into four i16x8 vectors in
    /// nibble order.
    struct Chunk {
        /// The table's low and high bytes, one plane each (the tables `i8x16.swizzle` reads).
        lo: v128,
        hi: v128,
        mask: v128,
    }

    impl Chunk {
        fn new(t: &Table16) -> Chunk {
            let lo = t.t.map(|v| v as u8);
            let hi = t.t.map(|v| (v >> 8) as u8);
            // SAFETY: reads the 16 bytes of each plane.
            let (lo, hi) = unsafe { (v128_load(lo.as_ptr() as *const v128), v128_load(hi.as_ptr() as *const v128)) };
            Chunk { lo, hi, mask: u8x16_splat(0x0f) }
        }

        /// Byte-plane lookup of codes (each < 16); the relaxed build skips SIMD128's handling of
        /// indices >= 16, which codes never are.
        #[inline(always)]
        fn lookup(plane: v128, codes: v128) -> v128 {
            #[cfg(target_feature = "relaxed-simd")]
            return i8x16_relaxed_swizzle(plane, codes);
            #[cfg(not(target_feature = "relaxed-simd"))]
            return i8x16_swizzle(plane, codes);
        }

        /// The i16 table entries of 16 codes, as two i16x8 vectors (codes 0-7, 8-15).
        #[inline(always)]
        fn entries(&self, codes: v128) -> [v128; 2] {
            let (l, h) = (Self::lookup(self.lo, codes), Self::lookup(self.hi, codes));
            [
                i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(l, h),
                i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(l, h),
            ]
        }

        /// Decodes 16 packed bytes at `p` (32 weights) in nibble order.
        #[inline(always)]
        unsafe fn decode(&self, p: *const v128) -> [v128; 4] {
            let bytes = v128_load(p);
            let [h0, h1] = self.entries(v128_and(u16x8_shr(bytes, 4), self.mask));
            let [l0, l1] = self.entries(v128_and(bytes, self.mask));
            [h0, h1, l0, l1]
        }

        /// Lane sums of Σ t·q over the chunk against activations at `x` (32 i16 in nibble order).
        #[inline(always)]
        unsafe fn dot(wv: &[v128; 4], x: *const i16) -> v128 {
            let x = x as *const v128;
            let a = i32x4_add(i32x4_dot_i16x8(wv[0], v128_load(x)), i32x4_dot_i16x8(wv[1], v128_load(x.add(1))));
            let b = i32x4_add(i32x4_dot_i16x8(wv[2], v128_load(x.add(2))), i32x4_dot_i16x8(wv[3], v128_load(x.add(3))));
            i32x4_add(a, b)
        }
    }

    /// Activation rows [r0, r0 + R) against weight rows [j0, j1).
    pub fn rows<const R: usize>(xq: &IntActivations, r0: usize, w: &Weight4, t: &Table16, out: &mut [f32], j0: usize, j1: usize) {
        let (n, k, bs) = (w.n, w.k, w.blocksize);
        let cpr = k / QK;
        assert!(k % QK == 0 && bs % QK == 0 && r0 + R <= xq.m && xq.k == k && out.len() == xq.m * n && j1 <= n);
        assert!(w.packed.len() * 2 == n * k && xq.nibble_order.len() == xq.m * k && xq.d.len() == xq.m * cpr);
        let ch = Chunk::new(t);
        let xs = xq.nibble_order.as_ptr();
        let cpb = bs / QK; // chunks per weight block
        for j in j0..j1 {
            let mut tot = [f32x4_splat(0.0); R];
            // the row's first block and the chunks of it before the row starts (no division in the loop)
            let mut b = j * k / bs;
            let mut c = 0;
            let mut c_end = cpr.min(cpb - (j * k % bs) / QK);
            while c < cpr {
                let mut acc = [f32x4_splat(0.0); R];
                while c < c_end {
                    // SAFETY: chunk c of row j covers flat elements [j·k + 32c, j·k + 32c + 32)
                    // with c < k / 32, so the 16 bytes at packed[(j·k + 32c) / 2] are inside
                    // `packed` (n·k / 2 bytes, asserted); the activation reads cover
                    // nibble_order[(r0 + r)·k + 32c ..+ 32] with r0 + r < m (asserted).
                    unsafe {
                        let wv = ch.decode(w.packed.as_ptr().add((j * k + c * QK) / 2) as *const v128);
                        for (r, a) in acc.iter_mut().enumerate() {
                            let row = r0 + r;
                            let i = Chunk::dot(&wv, xs.add(row * k + c * QK));
                            *a = madd(f32x4_convert_i32x4(i), f32x4_splat(*xq.d.get_unchecked(row * cpr + c)), *a);
                        }
                    }
                    c += 1;
                }
                let scale = f32x4_splat(w.absmax.get(b) / t.scale);
                for (tr, a) in tot.iter_mut().zip(acc) {
                    *tr = madd(a, scale, *tr);
                }
                b += 1;
                c_end = cpr.min(c + cpb);
            }
            for (r, tr) in tot.into_iter().enumerate() {
                out[(r0 + r) * n + j] = hsum(tr);
            }
        }
    }

    /// One activation row (m = 1) against every weight row. With K % blocksize == 0 every row
    /// starts a block, so two weight rows go through the loop together (two independent chains,
    /// one activation load each); the float operations per row are those of `rows::<1>`, so the
    /// bits are too.
    pub fn gemv(xq: &IntActivations, w: &Weight4, t: &Table16, out: &mut [f32]) {
        let (n, k, bs) = (w.n, w.k, w.blocksize);
        if !k.is_multiple_of(bs) || n < 2 {
            rows::<1>(xq, 0, w, t, out, 0, n);
            return;
        }
        let cpr = k / QK;
        let (cpb, bpr) = (bs / QK, k / bs);
        assert!(k % QK == 0 && bs % QK == 0 && xq.m == 1 && xq.k == k && out.len() == n);
        assert!(w.packed.len() * 2 == n * k && xq.nibble_order.len() == k && xq.d.len() == cpr);
        let ch = Chunk::new(t);
        let xs = xq.nibble_order.as_ptr();
        let pairs = n / 2;
        for p in 0..pairs {
            let j = 2 * p;
            let (mut tot0, mut tot1) = (f32x4_splat(0.0), f32x4_splat(0.0));
            for blk in 0..bpr {
                let (mut acc0, mut acc1) = (f32x4_splat(0.0), f32x4_splat(0.0));
                for c in blk * cpb..(blk + 1) * cpb {
                    // SAFETY: c < k / 32 and j + 1 < n, so both 16-byte loads at
                    // packed[((j + {0,1})·k + 32c) / 2] are inside `packed` (n·k / 2 bytes) and
                    // the activation reads nibble_order[32c ..+ 32] inside its k values (asserted).
                    unsafe {
                        let p0 = w.packed.as_ptr().add((j * k + c * QK) / 2) as *const v128;
                        let w0 = ch.decode(p0);
                        let w1 = ch.decode(p0.add(k / QK));
                        let x = xs.add(c * QK);
                        let d = f32x4_splat(*xq.d.get_unchecked(c));
                        acc0 = madd(f32x4_convert_i32x4(Chunk::dot(&w0, x)), d, acc0);
                        acc1 = madd(f32x4_convert_i32x4(Chunk::dot(&w1, x)), d, acc1);
                    }
                }
                let b = j * bpr + blk;
                tot0 = madd(acc0, f32x4_splat(w.absmax.get(b) / t.scale), tot0);
                tot1 = madd(acc1, f32x4_splat(w.absmax.get(b + bpr) / t.scale), tot1);
            }
            out[j] = hsum(tot0);
            out[j + 1] = hsum(tot1);
        }
        rows::<1>(xq, 0, w, t, out, 2 * pairs, n);
    }
}
