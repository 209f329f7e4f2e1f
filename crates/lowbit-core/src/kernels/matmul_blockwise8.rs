//! Linear layer with block-wise 8-bit weights: `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])`,
//! W `[N, K]` row-major (nn.Linear layout), each weight `W = code[q] * absmax[block]` with `q` a
//! byte, `code` a 256-entry f32 table and blocks of `blocksize` over the FLATTENED weight (a block
//! spans rows when K % blocksize != 0). Two formats are this shape:
//! - bitsandbytes' `quantize_blockwise` (code = the signed dynamic map; see [`crate::blockwise8`]);
//! - GGUF Q8_0 (ggml-common.h `block_q8_0`: 32 int8 `qs` along a row with one f16 scale `d`;
//!   ggml's `dequantize_row_q8_0` computes `x = qs[j] * d` in f32). With `code[q] = (q as i8) as f32`
//!   ("the int8 code", [`INT8_CODE`]) and `absmax = f32(d)` that product is the same f32 multiply,
//!   so the weights are bit-exact.
//!
//! Each weight is `code[q] * absmax` (one f32 multiply, as `dequantize_blockwise` to f32), times
//! the f32 activation, summed in f32. The scalar kernel sums in k order and is bit-identical to
//! "dequantize to f32, then a naive f32 matmul" ([`matmul_blockwise8_reference`]). The SIMD128
//! kernel forms the same products in f32x4 lanes (other summation order, bound in [`super`]):
//! for the int8 code it widens the bytes to i32 and converts them exactly to f32 (`code[q]` is
//! that integer), for any other table it looks a row up into an f32 scratch first.

use super::{add_bias, check_len, mul, scalar_rows};
use crate::blockwise8::check_blocksize;
use crate::error::{bail, Result};
use crate::Kernel;

/// The int8 code: `INT8_CODE[q] = (q as i8) as f32` (two's complement bytes), GGUF Q8_0's values.
pub static INT8_CODE: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8 as i8) as f32;
        i += 1;
    }
    t
};

/// Whether `code` is the int8 code bit for bit (then the SIMD kernel converts instead of looking up).
pub fn is_int8_code(code: &[f32]) -> bool {
    code.len() == 256 && code.iter().zip(&INT8_CODE).all(|(a, b)| a.to_bits() == b.to_bits())
}

/// A borrowed block-wise 8-bit weight `[n, k]` (out features, in features), validated on
/// construction (fields are read through accessors so they cannot drift from the checks).
#[derive(Debug, Clone, Copy)]
pub struct Weight8<'a> {
    q: &'a [u8],
    absmax: &'a [f32],
    code: &'a [f32; 256],
    blocksize: usize,
    n: usize,
    k: usize,
    int8_code: bool,
}

impl<'a> Weight8<'a> {
    /// `q`: `n * k` codes of the flattened weight; `absmax`: one f32 per block of `blocksize`
    /// (`ceil(n * k / blocksize)`); `code`: 256 f32 values (any order: the int8 code is not sorted).
    pub fn new(q: &'a [u8], absmax: &'a [f32], code: &'a [f32], blocksize: usize, n: usize, k: usize) -> Result<Self> {
        let code: &[f32; 256] = match code.try_into() {
            Ok(c) => c,
            Err(_) => bail!(InvalidArgument, "an 8-bit code must have 256 entries, got {}", code.len()),
        };
        check_blocksize(blocksize)?;
        if n == 0 || k == 0 {
            bail!(EmptyTensor, "weight has shape [{n}, {k}]");
        }
        let numel = mul(n, k, "8-bit weight")?;
        if q.len() != numel {
            bail!(LengthMismatch, "8-bit weight has {} codes but [{n}, {k}] needs {numel}", q.len());
        }
        if absmax.len() != numel.div_ceil(blocksize) {
            bail!(InconsistentState, "absmax has {} entries but {numel} elements in blocks of {blocksize} need {}", absmax.len(), numel.div_ceil(blocksize));
        }
        Ok(Weight8 { q, absmax, code, blocksize, n, k, int8_code: is_int8_code(code) })
    }

    pub fn q(&self) -> &'a [u8] {
        self.q
    }
    pub fn absmax(&self) -> &'a [f32] {
        self.absmax
    }
    pub fn code(&self) -> &'a [f32; 256] {
        self.code
    }
    pub fn blocksize(&self) -> usize {
        self.blocksize
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn k(&self) -> usize {
        self.k
    }
    /// True when the code is [`INT8_CODE`] (GGUF Q8_0).
    pub fn is_int8_code(&self) -> bool {
        self.int8_code
    }

    /// Weight row `j` as f32 (`code[q] * absmax`), one block segment at a time (no division per element).
    fn decode_row_scalar(&self, j: usize, row: &mut [f32]) {
        let base = j * self.k;
        let end = base + self.k;
        let mut f = base;
        while f < end {
            let b = f / self.blocksize;
            let e = end.min((b + 1) * self.blocksize);
            let a = self.absmax[b];
            for (r, &c) in row[f - base..e - base].iter_mut().zip(&self.q[f..e]) {
                *r = self.code[c as usize] * a;
            }
            f = e;
        }
    }
}

fn check_io(x: &[f32], m: usize, w: &Weight8, bias: Option<&[f32]>, out: &[f32]) -> Result<()> {
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

/// Scalar reference: dequantize the whole weight to f32 (`dequantize_blockwise`), then a naive
/// f32 matmul summing in k order, bias added last.
pub fn matmul_blockwise8_reference(x: &[f32], m: usize, w: &Weight8, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    let mut out = vec![0f32; mul(m, w.n, "output")?];
    check_io(x, m, w, bias, &out)?;
    let mut wf = vec![0f32; w.n * w.k];
    crate::blockwise8::dequantize_blockwise(w.q, w.absmax, w.code, w.blocksize, &mut wf)?;
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
/// `Kernel::Scalar` gives exactly the bits of [`matmul_blockwise8_reference`] without materializing W.
pub fn matmul_blockwise8(x: &[f32], m: usize, w: &Weight8, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    check_io(x, m, w, bias, out)?;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        simd::matmul(x, m, w, out);
        add_bias(out, w.n, bias);
        return Ok(());
    }
    let _ = kernel;
    // Scalar: dequantize one weight row at a time, then dot it with every activation row.
    scalar_rows(x, m, w.n, w.k, out, |j, row| w.decode_row_scalar(j, row));
    add_bias(out, w.n, bias);
    Ok(())
}

/// One token: `out[n] = x[k] · W[n, k]ᵀ (+ bias)`.
pub fn gemv_blockwise8(x: &[f32], w: &Weight8, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    matmul_blockwise8(x, 1, w, bias, out, kernel)
}


#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::Weight8;
    use crate::simd::wasm128::{hsum, madd};
    use core::arch::wasm32::*;

    /// 16 int8 codes at `p` times `a`: exactly `INT8_CODE[q] * absmax` (i8 -> i32 -> f32 is exact).
    #[inline(always)]
    unsafe fn int8x16(p: *const u8, a: v128) -> [v128; 4] {
        let b = v128_load(p as *const v128);
        let lo = i16x8_extend_low_i8x16(b);
        let hi = i16x8_extend_high_i8x16(b);
        [
            f32x4_mul(f32x4_convert_i32x4(i32x4_extend_low_i16x8(lo)), a),
            f32x4_mul(f32x4_convert_i32x4(i32x4_extend_high_i16x8(lo)), a),
            f32x4_mul(f32x4_convert_i32x4(i32x4_extend_low_i16x8(hi)), a),
            f32x4_mul(f32x4_convert_i32x4(i32x4_extend_high_i16x8(hi)), a),
        ]
    }

    /// Int8 code, decoded in registers: R activation rows (from `x[row0 * k]`) against weight row j.
    #[inline(always)]
    fn tile_int8<const R: usize>(x: &[f32], row0: usize, w: &Weight8, j: usize) -> [f32; R] {
        let k = w.k;
        let base = j * k;
        let end = base + k;
        let mut acc = [[f32x4_splat(0.0); 4]; R];
        let mut sacc = [0f32; R];
        let xs: [&[f32]; R] = core::array::from_fn(|r| &x[(row0 + r) * k..(row0 + r + 1) * k]);
        let mut f = base;
        while f < end {
            let b = f / w.blocksize;
            let e = end.min((b + 1) * w.blocksize);
            let amax = w.absmax[b];
            let a = f32x4_splat(amax);
            // SAFETY: f + 16 <= e <= n * k = q.len(), so the 16 bytes at f lie inside q; the x
            // loads read 16 floats from offset f - base, and f - base + 16 <= k.
            unsafe {
                while f + 16 <= e {
                    let wv = int8x16(w.q.as_ptr().add(f), a);
                    for r in 0..R {
                        let xp = xs[r].as_ptr().add(f - base);
                        for t in 0..4 {
                            acc[r][t] = madd(wv[t], v128_load(xp.add(4 * t) as *const v128), acc[r][t]);
                        }
                    }
                    f += 16;
                }
            }
            while f < e {
                let wv = w.code[w.q[f] as usize] * amax;
                for r in 0..R {
                    sacc[r] += xs[r][f - base] * wv;
                }
                f += 1;
            }
        }
        core::array::from_fn(|r| {
            let a = &acc[r];
            hsum(f32x4_add(f32x4_add(a[0], a[1]), f32x4_add(a[2], a[3]))) + sacc[r]
        })
    }

    /// Weight row j as f32 into `row` (length k): SIMD conversion for the int8 code, table lookups otherwise.
    fn decode_row(w: &Weight8, j: usize, row: &mut [f32]) {
        if !w.int8_code {
            w.decode_row_scalar(j, row);
            return;
        }
        let base = j * w.k;
        let end = base + w.k;
        let mut f = base;
        while f < end {
            let b = f / w.blocksize;
            let e = end.min((b + 1) * w.blocksize);
            let amax = w.absmax[b];
            let a = f32x4_splat(amax);
            // SAFETY: as in tile_int8; the stores write 16 floats at f - base + 16 <= k = row.len().
            unsafe {
                while f + 16 <= e {
                    let wv = int8x16(w.q.as_ptr().add(f), a);
                    let rp = row.as_mut_ptr().add(f - base);
                    for (t, v) in wv.iter().enumerate() {
                        v128_store(rp.add(4 * t) as *mut v128, *v);
                    }
                    f += 16;
                }
            }
            while f < e {
                row[f - base] = w.code[w.q[f] as usize] * amax;
                f += 1;
            }
        }
    }

    /// Dot products of R activation rows with one decoded f32 weight row (all of length k).
    #[inline(always)]
    fn tile_f32<const R: usize>(xs: [&[f32]; R], wr: &[f32]) -> [f32; R] {
        let k = wr.len();
        let mut acc = [[f32x4_splat(0.0); 2]; R];
        let mut c = 0;
        // SAFETY: every load reads 4 floats below index c + 8 <= k of rows of length k.
        unsafe {
            while c + 8 <= k {
                let w0 = v128_load(wr.as_ptr().add(c) as *const v128);
                let w1 = v128_load(wr.as_ptr().add(c + 4) as *const v128);
                for r in 0..R {
                    let xp = xs[r].as_ptr().add(c);
                    acc[r][0] = madd(w0, v128_load(xp as *const v128), acc[r][0]);
                    acc[r][1] = madd(w1, v128_load(xp.add(4) as *const v128), acc[r][1]);
                }
                c += 8;
            }
        }
        core::array::from_fn(|r| {
            let mut s = hsum(f32x4_add(acc[r][0], acc[r][1]));
            for kk in c..k {
                s += xs[r][kk] * wr[kk];
            }
            s
        })
    }

    pub fn matmul(x: &[f32], m: usize, w: &Weight8, out: &mut [f32]) {
        let (n, k) = (w.n, w.k);
        if w.int8_code && m <= 4 {
            // Decode and dot in registers: the weights are read once, nothing is stored.
            for j in 0..n {
                match m {
                    4 => tile_int8::<4>(x, 0, w, j).iter().enumerate().for_each(|(r, y)| out[r * n + j] = *y),
                    3 => tile_int8::<3>(x, 0, w, j).iter().enumerate().for_each(|(r, y)| out[r * n + j] = *y),
                    2 => tile_int8::<2>(x, 0, w, j).iter().enumerate().for_each(|(r, y)| out[r * n + j] = *y),
                    _ => out[j] = tile_int8::<1>(x, 0, w, j)[0],
                }
            }
            return;
        }
        // Decode each weight row once into an f32 scratch row (it stays in L1) and dot it with
        // every activation row, four at a time.
        let mut row = vec![0f32; k];
        for j in 0..n {
            decode_row(w, j, &mut row);
            let xr = |r: usize| &x[r * k..(r + 1) * k];
            let mut i = 0;
            while i < m {
                let rows = (m - i).min(4);
                match rows {
                    4 => tile_f32::<4>([xr(i), xr(i + 1), xr(i + 2), xr(i + 3)], &row).iter().enumerate().for_each(|(r, y)| out[(i + r) * n + j] = *y),
                    3 => tile_f32::<3>([xr(i), xr(i + 1), xr(i + 2)], &row).iter().enumerate().for_each(|(r, y)| out[(i + r) * n + j] = *y),
                    2 => tile_f32::<2>([xr(i), xr(i + 1)], &row).iter().enumerate().for_each(|(r, y)| out[(i + r) * n + j] = *y),
                    _ => out[i * n + j] = tile_f32::<1>([xr(i)], &row)[0],
                }
                i += rows;
            }
        }
    }
}
