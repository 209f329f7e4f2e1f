//! Mixed-precision linear layer with bitsandbytes 4-bit weights (NF4 / FP4 / INT4):
//! `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])`, W `[N, K]` row-major (nn.Linear layout).
//!
//! The weight is stored as bitsandbytes stores it (spec §1–3): the FLATTENED tensor in blocks of
//! `blocksize` over the flat index (a block spans rows when K % blocksize != 0), packed
//! nibbles with element 2j in the high nibble, one absmax per block ([`Absmax4`]): f32, or
//! double-quantized and kept compressed, each block's absmax rebuilt when the kernel reaches the
//! block (once per block, the same bits as `QuantState::absmax_f32`).
//!
//! Each weight is dequantized exactly as `dequantize_4bit` to f32 does,
//! `w = values[nibble] * absmax` (one f32 multiply), multiplied by the f32 activation and summed
//! in f32. The scalar kernel sums in k order and is bit-identical to "dequantize to f32, then a
//! naive f32 matmul" ([`matmul4_reference`]). The SIMD128 kernels (see [`super`] for the bounds):
//! - GEMV (m = 1; also m = 2, 3 when K % 32 == 0, the rows sharing each decoded vector) factors
//!   absmax out of each block: `y = Σ_b absmax_b · Σ_{k in b} values[c_k]·x_k`, the inner sum
//!   in f32x4 lanes. The code values come from a constant 16-entry table held as 4 byte planes
//!   (one `i8x16.swizzle` per plane, then 8 byte / word interleaves per 16 weights); with
//!   K % 32 == 0 the nibbles of 16 packed bytes serve as two 16-lane index vectors (high
//!   nibbles = even weights, low = odd) against a copy of x permuted to match, so no nibble
//!   interleave is needed. Other products than the reference's, bounded in [`super`].
//!   This is shuffle-bound: the 12 shuffles per 16 weights (V8 adds a saturating add and a
//!   constant load to each swizzle) and the 4 f32 multiplies and 4 adds share Zen 3's four
//!   vector pipes, about 10 cycles per 16 weights in V8 against 18 for the per-block tables
//!   this replaced. The multiply and add alone would need all four pipes to keep up with
//!   memory (8 weights per cycle), so 4-bit GEMV stays compute-bound in 128-bit f32 wasm.
//! - GEMM (m >= 4, or m >= 2 with K % 32 != 0) decodes 8 weight rows at a time to exact f32
//!   (`values * absmax`, the reference's weights) and runs the register-blocked panel kernel
//!   (`simd::panel`): the reference's products and k-order sums, so the same bits as the
//!   scalar kernel in the SIMD128 build (the relaxed-SIMD build fuses each multiply-add:
//!   within the GEMV bound of [`super`]).
//!
//! Activations are f32; for f16 / bf16 compute dtypes the caller rounds x to that dtype first
//! (torch would also round the dequantized weight to the compute dtype: bitsandbytes'
//! dequant + F.linear; we keep the f32 weight, which is closer to the fused CUDA GEMV).

pub use super::absmax4::{Absmax4, NestedAbsmax4};
use super::{add_bias, check_len, mul, scalar_rows};
use crate::blockwise4::check_blocksize;
use crate::codebook::{Codebook4, QuantType4};
use crate::error::{bail, Result};
use crate::quant_state::{Absmax, QuantState};
use crate::Kernel;

/// A borrowed 4-bit weight `[n, k]` (out features, in features).
#[derive(Debug, Clone, Copy)]
pub struct Weight4<'a> {
    pub packed: &'a [u8],
    /// Absmax per block of the flattened weight (`ceil(n * k / blocksize)` entries).
    pub absmax: Absmax4<'a>,
    pub quant_type: QuantType4,
    pub blocksize: usize,
    pub n: usize,
    pub k: usize,
}

impl<'a> Weight4<'a> {
    /// Validates the sizes against each other.
    pub fn new(packed: &'a [u8], absmax: &'a [f32], quant_type: QuantType4, blocksize: usize, n: usize, k: usize) -> Result<Self> {
        Weight4::with_absmax(packed, Absmax4::F32(absmax), quant_type, blocksize, n, k)
    }

    /// With any absmax source (e.g. [`Absmax4::Nested`]); validates the sizes.
    pub fn with_absmax(packed: &'a [u8], absmax: Absmax4<'a>, quant_type: QuantType4, blocksize: usize, n: usize, k: usize) -> Result<Self> {
        let w = Weight4 { packed, absmax, quant_type, blocksize, n, k };
        w.validate()?;
        Ok(w)
    }

    /// From a 2-D quant state (shape `[n, k]`), its absmax as stored (plain f32, or the nested
    /// codes kept compressed).
    pub fn from_state(packed: &'a [u8], state: &'a QuantState) -> Result<Self> {
        state.validate()?;
        if state.shape.len() != 2 {
            bail!(InvalidArgument, "a linear weight must be 2-D [out, in], the quant state has shape {:?}", state.shape);
        }
        let absmax = match &state.absmax {
            Absmax::Plain(a) => Absmax4::F32(a),
            Absmax::Nested(n) => Absmax4::Nested(NestedAbsmax4::from_state(n)?),
        };
        Weight4::with_absmax(packed, absmax, state.quant_type, state.blocksize, state.shape[0], state.shape[1])
    }

    pub fn validate(&self) -> Result<()> {
        check_blocksize(self.blocksize)?;
        if self.n == 0 || self.k == 0 {
            bail!(EmptyTensor, "weight has shape [{}, {}]", self.n, self.k);
        }
        let numel = mul(self.n, self.k, "4-bit weight")?;
        if self.packed.len() != numel.div_ceil(2) {
            bail!(LengthMismatch, "packed weight has {} bytes but [{}, {}] needs {}", self.packed.len(), self.n, self.k, numel.div_ceil(2));
        }
        self.absmax.validate()?;
        if self.absmax.len() != numel.div_ceil(self.blocksize) {
            bail!(InconsistentState, "absmax has {} entries but {numel} elements in blocks of {} need {}", self.absmax.len(), self.blocksize, numel.div_ceil(self.blocksize));
        }
        Ok(())
    }

    /// The 4-bit code of flat element `flat` (element 2j in the high nibble of byte j).
    #[inline(always)]
    pub(crate) fn code(&self, flat: usize) -> usize {
        let byte = self.packed[flat >> 1];
        (if flat & 1 == 0 { byte >> 4 } else { byte & 0x0f }) as usize
    }

    #[inline(always)]
    fn weight(&self, values: &[f32; 16], flat: usize) -> f32 {
        values[self.code(flat)] * self.absmax.get(flat / self.blocksize)
    }
}

pub(crate) fn check_io(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>, out: &[f32]) -> Result<()> {
    w.validate()?;
    if m == 0 {
        bail!(EmptyTensor, "matmul with 0 rows of activations");
    }
    check_len("activations x", x.len(), mul(m, w.k, "activations")?)?;
    check_len("output", out.len(), mul(m, w.n, "output")?)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), w.n)?;
    }
    Ok(())
}

/// Scalar reference: dequantize the whole weight to f32, then a naive f32 matmul summing in k
/// order, bias added last.
pub fn matmul4_reference(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    let mut out = vec![0f32; mul(m, w.n, "output")?];
    check_io(x, m, w, bias, &out)?;
    let mut wf = vec![0f32; w.n * w.k];
    crate::blockwise4::decode(w.packed, &w.absmax.to_vec(), w.blocksize, w.quant_type, &mut wf, Kernel::Scalar)?;
    for i in 0..m {
        for j in 0..w.n {
            let mut acc = 0f32;
            for (a, b) in x[i * w.k..(i + 1) * w.k].iter().zip(&wf[j * w.k..(j + 1) * w.k]) {
                acc += a * b;
            }
            out[i * w.n + j] = acc + bias.map_or(0.0, |b| b[j]);
        }
    }
    Ok(out)
}

/// `out[m, n] = x[m, k] · W[n, k]ᵀ (+ bias)`: GEMV when m == 1, GEMM otherwise.
/// `Kernel::Scalar` gives exactly the bits of [`matmul4_reference`] without materializing W.
pub fn matmul4(x: &[f32], m: usize, w: &Weight4, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    check_io(x, m, w, bias, out)?;
    let values = &Codebook4::get(w.quant_type).values;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        if m == 1 {
            simd::gemv(x, w, values, out);
        } else if !simd::gemv_rows(x, m, w, values, out) {
            simd::gemm(x, m, w, values, out);
        }
        add_bias(out, w.n, bias);
        return Ok(());
    }
    let _ = kernel;
    // Scalar: dequantize one weight row at a time, then dot it with every activation row.
    scalar_rows(x, m, w.n, w.k, out, |j, row| {
        for (kk, r) in row.iter_mut().enumerate() {
            *r = w.weight(values, j * w.k + kk);
        }
    });
    add_bias(out, w.n, bias);
    Ok(())
}

/// One token: `out[n] = x[k] · W[n, k]ᵀ (+ bias)`.
pub fn gemv4(x: &[f32], w: &Weight4, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    matmul4(x, 1, w, bias, out, kernel)
}



#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::Weight4;
    use crate::simd::panel;
    use crate::simd::wasm128::{hsum, madd};
    use core::arch::wasm32::*;

    /// The 16 code values as byte planes: plane p holds byte p of each f32 entry, the tables
    /// that `i8x16.swizzle` looks the codes up in.
    fn planes(values: &[f32; 16]) -> [v128; 4] {
        let bits = values.map(f32::to_bits);
        core::array::from_fn(|p| {
            let plane: [u8; 16] = bits.map(|b| (b >> (8 * p)) as u8);
            // SAFETY: reads the 16 bytes of `plane`.
            unsafe { v128_load(plane.as_ptr() as *const v128) }
        })
    }

    /// f32 values of 16 codes (one per byte lane, each < 16): lanes 0-3, 4-7, 8-11, 12-15.
    /// 4 swizzles then two rounds of byte / word interleaves (the 4x4 byte transposition).
    #[inline(always)]
    fn lookup(codes: v128, t: &[v128; 4]) -> [v128; 4] {
        let b = t.map(|t| i8x16_swizzle(t, codes));
        let lo01 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b[0], b[1]);
        let hi01 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b[0], b[1]);
        let lo23 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b[2], b[3]);
        let hi23 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b[2], b[3]);
        [
            i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(lo01, lo23),
            i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(lo01, lo23),
            i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(hi01, hi23),
            i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(hi01, hi23),
        ]
    }

    /// Codes of 16 consecutive weights starting at an even flat index (8 packed bytes at `p`),
    /// in element order.
    #[inline(always)]
    unsafe fn codes16(p: *const u8) -> v128 {
        let bytes = v128_load64_zero(p as *const u64);
        let mask = u8x16_splat(0x0f);
        let hi = v128_and(u16x8_shr(bytes, 4), mask);
        i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(hi, v128_and(bytes, mask))
    }

    /// Σ of wv[q] · x[4q .. 4q + 4] over q, as one f32x4 (x at `xh`, 16 floats).
    #[inline(always)]
    unsafe fn dot16(wv: &[v128; 4], xh: *const v128) -> v128 {
        let p0 = f32x4_add(f32x4_mul(wv[0], v128_load(xh)), f32x4_mul(wv[1], v128_load(xh.add(1))));
        let p1 = f32x4_add(f32x4_mul(wv[2], v128_load(xh.add(2))), f32x4_mul(wv[3], v128_load(xh.add(3))));
        f32x4_add(p0, p1)
    }

    /// d[q] = wv[q] · a for q < 4.
    #[inline(always)]
    unsafe fn store_scaled(d: *mut v128, wv: [v128; 4], a: v128) {
        v128_store(d, f32x4_mul(wv[0], a));
        v128_store(d.add(1), f32x4_mul(wv[1], a));
        v128_store(d.add(2), f32x4_mul(wv[2], a));
        v128_store(d.add(3), f32x4_mul(wv[3], a));
    }


    /// m = 1: `out[j] = Σ_b absmax_b · Σ_{k in b} values[c_jk] · x_k`.
    pub fn gemv(x: &[f32], w: &Weight4, values: &[f32; 16], out: &mut [f32]) {
        let t = planes(values);
        if w.k.is_multiple_of(32) {
            gemv_aligned::<1>(x, w, &t, out);
        } else {
            gemv_ragged(x, w, values, &t, out);
        }
    }

    /// m = 2 or 3 with K % 32 == 0: the GEMV kernel on all rows at once (decoding is most of
    /// its cost and is shared); below the panel GEMM's break-even. False when not applicable.
    pub fn gemv_rows(x: &[f32], m: usize, w: &Weight4, values: &[f32; 16], out: &mut [f32]) -> bool {
        if !w.k.is_multiple_of(32) {
            return false;
        }
        let t = planes(values);
        match m {
            2 => gemv_aligned::<2>(x, w, &t, out),
            3 => gemv_aligned::<3>(x, w, &t, out),
            _ => return false,
        }
        true
    }

    /// K % 32 == 0 (so every row, and every 32-element chunk of it, starts at a multiple of 32
    /// and lies inside one block, blocksizes being multiples of 32); R activation rows share
    /// each decoded weight vector.
    fn gemv_aligned<const R: usize>(x: &[f32], w: &Weight4, t: &[v128; 4], out: &mut [f32]) {
        let (n, k, bs) = (w.n, w.k, w.blocksize);
        assert!(k % 32 == 0 && bs % 32 == 0 && x.len() == R * k && out.len() == R * n && w.packed.len() * 2 == n * k);
        // x permuted per 32-chunk: the high nibbles of the chunk's 16 bytes (weights 0, 2, .., 30)
        // meet xp[0..16], the low nibbles (weights 1, 3, .., 31) xp[16..32].
        let mut xp = vec![0f32; R * k];
        for (d, s) in xp.chunks_exact_mut(32).zip(x.chunks_exact(32)) {
            for i in 0..16 {
                d[i] = s[2 * i];
                d[16 + i] = s[2 * i + 1];
            }
        }
        let mask = u8x16_splat(0x0f);
        for j in 0..n {
            let (base, end) = (j * k, (j + 1) * k);
            let mut tot = [f32x4_splat(0.0); R];
            let mut f = base;
            while f < end {
                let b = f / bs;
                let e = end.min((b + 1) * bs);
                let mut acc = [f32x4_splat(0.0); R];
                // SAFETY: f and e are multiples of 32 with e <= n * k, so the 16-byte loads at
                // packed[f / 2 ..] stay below (n * k) / 2 = packed.len(), and the x loads read
                // xp[r * k + f - base .. r * k + e - base] with e - base <= k, r < R (asserted).
                unsafe {
                    let mut p = w.packed.as_ptr().add(f / 2) as *const v128;
                    let mut xq = xp.as_ptr().add(f - base) as *const v128;
                    for _ in 0..(e - f) / 32 {
                        let bytes = v128_load(p);
                        // (no loops over [hi, lo] arrays here: LLVM keeps those in memory)
                        let wv = lookup(v128_and(u16x8_shr(bytes, 4), mask), t);
                        for (r, a) in acc.iter_mut().enumerate() {
                            *a = f32x4_add(*a, dot16(&wv, xq.add(r * k / 4)));
                        }
                        let wv = lookup(v128_and(bytes, mask), t);
                        for (r, a) in acc.iter_mut().enumerate() {
                            *a = f32x4_add(*a, dot16(&wv, xq.add(r * k / 4 + 4)));
                        }
                        p = p.add(1);
                        xq = xq.add(8);
                    }
                }
                let amax = f32x4_splat(w.absmax.get(b));
                for (tr, a) in tot.iter_mut().zip(acc) {
                    *tr = madd(a, amax, *tr);
                }
                f = e;
            }
            for (r, tr) in tot.into_iter().enumerate() {
                out[r * n + j] = hsum(tr);
            }
        }
    }

    /// Any K: rows and blocks start anywhere (blocks may span rows); x in element order,
    /// 16 weights per step from an even flat index, scalar heads and tails.
    fn gemv_ragged(x: &[f32], w: &Weight4, values: &[f32; 16], t: &[v128; 4], out: &mut [f32]) {
        let (k, bs) = (w.k, w.blocksize);
        assert!(x.len() == k && out.len() == w.n && w.packed.len() == (w.n * k).div_ceil(2));
        for (j, o) in out.iter_mut().enumerate() {
            let (base, end) = (j * k, (j + 1) * k);
            let mut tot = 0f32;
            let mut f = base;
            while f < end {
                let b = f / bs;
                let e = end.min((b + 1) * bs);
                let mut s = 0f32;
                if f & 1 == 1 {
                    s += values[w.code(f)] * x[f - base];
                    f += 1;
                }
                let mut acc = f32x4_splat(0.0);
                // SAFETY: f is even and f + 16 <= e <= n * k, so the 8 bytes at packed[f / 2]
                // are inside `packed`; the x loads read x[f - base .. f - base + 16] with
                // f - base + 16 <= k.
                unsafe {
                    while f + 16 <= e {
                        let wv = lookup(codes16(w.packed.as_ptr().add(f / 2)), t);
                        let xq = x.as_ptr().add(f - base) as *const v128;
                        for (q, wq) in wv.iter().enumerate() {
                            acc = madd(*wq, v128_load(xq.add(q)), acc);
                        }
                        f += 16;
                    }
                }
                while f < e {
                    s += values[w.code(f)] * x[f - base];
                    f += 1;
                }
                tot += (hsum(acc) + s) * w.absmax.get(b);
            }
            *o = tot;
        }
    }

    /// Exact f32 weights `values[code] * absmax` of the flat elements [f0, f0 + dst.len()).
    fn decode_range(w: &Weight4, values: &[f32; 16], t: &[v128; 4], f0: usize, dst: &mut [f32]) {
        let end = f0 + dst.len();
        assert!(end <= w.n * w.k && w.packed.len() == (w.n * w.k).div_ceil(2));
        let mask = u8x16_splat(0x0f);
        let mut f = f0;
        while f < end {
            let b = f / w.blocksize;
            let e = end.min((b + 1) * w.blocksize);
            let amax = w.absmax.get(b);
            if f & 1 == 1 {
                dst[f - f0] = values[w.code(f)] * amax;
                f += 1;
            }
            let a = f32x4_splat(amax);
            // SAFETY: f is even; a 32-step reads 16 bytes at packed[f / 2] with f + 32 <= e, a
            // 16-step 8 bytes with f + 16 <= e, e <= n * k (asserted): inside `packed`. Stores
            // write dst[f - f0 .. f - f0 + 32 (16)] with f + 32 (16) <= e <= end.
            unsafe {
                while f + 32 <= e {
                    let bytes = v128_load(w.packed.as_ptr().add(f / 2) as *const v128);
                    let hi = v128_and(u16x8_shr(bytes, 4), mask);
                    let lo = v128_and(bytes, mask);
                    let c0 = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(hi, lo);
                    let c1 = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(hi, lo);
                    let d = dst.as_mut_ptr().add(f - f0) as *mut v128;
                    store_scaled(d, lookup(c0, t), a);
                    store_scaled(d.add(4), lookup(c1, t), a);
                    f += 32;
                }
                if f + 16 <= e {
                    store_scaled(dst.as_mut_ptr().add(f - f0) as *mut v128, lookup(codes16(w.packed.as_ptr().add(f / 2)), t), a);
                    f += 16;
                }
            }
            while f < e {
                dst[f - f0] = values[w.code(f)] * amax;
                f += 1;
            }
        }
    }

    /// m >= 2: exact weights, panel GEMM (same bits as the scalar kernel in the SIMD128 build).
    pub fn gemm(x: &[f32], m: usize, w: &Weight4, values: &[f32; 16], out: &mut [f32]) {
        let t = planes(values);
        panel::gemm(x, m, w.n, w.k, out, |j, row| decode_range(w, values, &t, j * w.k, row));
    }
}
