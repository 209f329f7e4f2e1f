//! Linear layers left unquantized: f32 activations with f32 / f16 / bf16 weights `[N, K]`
//! (nn.Linear layout), `y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n])`, f32 accumulation.
//!
//! Weights are widened exactly to f32 (f16 / bf16 -> f32 is exact). The scalar kernel sums in k
//! order. The SIMD128 kernels form the same f32 products:
//! - GEMV (m = 1) sums them in f32x4 lanes (bound in [`super`]). f16 / bf16 rows are widened 8
//!   at a time without shuffles: against a copy of x permuted per 8 (even elements, then odd),
//!   the even halfwords become f32 lanes by a 32-bit shift and the odd ones by a mask. f16 bits
//!   go to f32 by an arithmetic shift (`(h << 16) >> 3`, sign kept) that gives w·2^-112 exactly;
//!   x is pre-scaled by 2^112 (exact while |x| < 2^16), so each product is the one real number
//!   w·x rounded once, as in the reference. A row holding f16 Inf / NaN (seen from the largest
//!   exponent) is redone with the exact widening; x with a finite |x| >= 2^16 scales w instead.
//! - GEMM (m >= 2) widens 8 rows at a time into the register-blocked panel kernel
//!   (`simd::panel`): the reference's products and k-order sums, the same bits as scalar in
//!   the SIMD128 build (fused multiply-adds in the relaxed-SIMD build, within the GEMV bound).
//!
//! For an f16 / bf16 compute dtype torch would round the product sums to that dtype; callers
//! round activations (and outputs) themselves.

use super::{add_bias, check_len, mul};
use crate::dtype::SimdLoad;
use crate::error::{bail, Result};
use crate::Kernel;

/// `out[m, n] = x[m, k] · W[n, k]ᵀ (+ bias)`; W has `n * k` elements.
#[allow(clippy::too_many_arguments)]
pub fn matmul_dense<T: SimdLoad>(x: &[f32], m: usize, w: &[T], n: usize, k: usize, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    if m == 0 || n == 0 || k == 0 {
        bail!(EmptyTensor, "dense matmul with shape m={m} n={n} k={k}");
    }
    check_len("weight", w.len(), mul(n, k, "weight")?)?;
    check_len("activations x", x.len(), mul(m, k, "activations")?)?;
    check_len("output", out.len(), mul(m, n, "output")?)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), n)?;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if kernel.use_simd() {
        if m == 1 {
            simd::gemv(x, w, n, k, out);
        } else {
            simd::gemm(x, m, w, n, k, out);
        }
        add_bias(out, n, bias);
        return Ok(());
    }
    let _ = kernel;
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let mut acc = 0f32;
            for (a, b) in xr.iter().zip(&w[j * k..(j + 1) * k]) {
                acc += a * b.to_f32();
            }
            out[i * n + j] = acc;
        }
    }
    add_bias(out, n, bias);
    Ok(())
}

/// One token: `out[n] = x[k] · W[n, k]ᵀ (+ bias)`.
pub fn gemv_dense<T: SimdLoad>(x: &[f32], w: &[T], n: usize, k: usize, bias: Option<&[f32]>, out: &mut [f32], kernel: Kernel) -> Result<()> {
    matmul_dense(x, 1, w, n, k, bias, out, kernel)
}



#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use crate::dtype::{bf16, f16, SimdLoad};
    use crate::simd::panel;
    use core::any::TypeId;
    use crate::simd::wasm128::{hsum, madd};
    use core::arch::wasm32::*;


    /// `w` viewed as its u16 bit patterns when T is f16 or bf16.
    fn halves<T: SimdLoad>(w: &[T]) -> Option<&[u16]> {
        if TypeId::of::<T>() == TypeId::of::<f16>() || TypeId::of::<T>() == TypeId::of::<bf16>() {
            // SAFETY: T is f16 or bf16, both `repr(transparent)` over u16.
            Some(unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u16, w.len()) })
        } else {
            None
        }
    }

    pub fn gemv<T: SimdLoad>(x: &[f32], w: &[T], n: usize, k: usize, out: &mut [f32]) {
        let exact_row = |j: usize, o: &mut f32| *o = dot(x, &w[j * k..(j + 1) * k]);
        match halves(w) {
            // x·2^112 is exact (and finite) unless some finite |x| >= 2^16.
            Some(bits) if TypeId::of::<T>() == TypeId::of::<f16>() && x.iter().all(|v| !(v.is_finite() && v.abs() >= 65536.0)) => {
                gemv_half::<true>(&permute8(x, P112), bits, x, n, k, out, exact_row)
            }
            Some(bits) if TypeId::of::<T>() == TypeId::of::<bf16>() => gemv_half::<false>(&permute8(x, 1.0), bits, x, n, k, out, exact_row),
            _ => out.iter_mut().enumerate().for_each(|(j, o)| exact_row(j, o)),
        }
    }

    /// One row in element order with the exact `load4` widening.
    fn dot<T: SimdLoad>(x: &[f32], wr: &[T]) -> f32 {
        let k = wr.len();
        assert!(x.len() == k);
        let mut acc = [f32x4_splat(0.0); 2];
        let mut c = 0;
        // SAFETY: every load reads 4 elements below index c + 8 <= k of slices of length k.
        unsafe {
            while c + 8 <= k {
                let w0 = T::load4(wr.as_ptr().add(c));
                let w1 = T::load4(wr.as_ptr().add(c + 4));
                acc[0] = madd(w0, v128_load(x.as_ptr().add(c) as *const v128), acc[0]);
                acc[1] = madd(w1, v128_load(x.as_ptr().add(c + 4) as *const v128), acc[1]);
                c += 8;
            }
        }
        let mut s = hsum(f32x4_add(acc[0], acc[1]));
        for kk in c..k {
            s += x[kk] * wr[kk].to_f32();
        }
        s
    }

    /// x (first 8·floor(k/8) elements) permuted per 8 as [x0, x2, x4, x6, x1, x3, x5, x7] and
    /// multiplied by `scale` (a power of two, exact for the x it is used with).
    fn permute8(x: &[f32], scale: f32) -> Vec<f32> {
        let mut xp = vec![0f32; x.len() - x.len() % 8];
        for (d, s) in xp.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
            for i in 0..4 {
                d[i] = s[2 * i] * scale;
                d[4 + i] = s[2 * i + 1] * scale;
            }
        }
        xp
    }

    /// 2^112: f16 bits shifted into an f32 (`(h << 16) >> 3`, exponent and mantissa 13 bits up)
    /// read as w·2^-112, exactly, for every finite f16 (subnormals included).
    const P112: f32 = f32::from_bits(0x7780_0000);

    /// Rows of 16-bit floats: bf16 (F16 = false) or f16 with x pre-scaled by 2^112 (F16 = true;
    /// rows holding Inf / NaN are handed to `exact_row`). `xp` is x permuted by [`permute8`];
    /// the k % 8 tail is summed in element order from `x`.
    #[allow(clippy::too_many_arguments)]
    fn gemv_half<const F16: bool>(xp: &[f32], bits: &[u16], x: &[f32], n: usize, k: usize, out: &mut [f32], exact_row: impl Fn(usize, &mut f32)) {
        let k8 = k - k % 8;
        assert!(xp.len() == k8 && x.len() == k && bits.len() == n * k && out.len() == n);
        let high = u32x4_splat(0xffff_0000);
        let keep = u32x4_splat(0x8fff_e000);
        for (j, o) in out.iter_mut().enumerate() {
            let row = &bits[j * k..(j + 1) * k];
            let mut acc = [f32x4_splat(0.0); 2];
            let mut top = u16x8_splat(0);
            // SAFETY: loads read row[c .. c + 8] and xp[c .. c + 8] with c + 8 <= k8.
            unsafe {
                let mut c = 0;
                while c < k8 {
                    let h = v128_load(row.as_ptr().add(c) as *const v128);
                    let (mut even, mut odd) = (i32x4_shl(h, 16), v128_and(h, high));
                    if F16 {
                        top = u16x8_max(top, i16x8_shl(h, 1)); // exponent 31 (Inf / NaN) -> >= 0xf800
                        even = v128_and(i32x4_shr(even, 3), keep);
                        odd = v128_and(i32x4_shr(odd, 3), keep);
                    }
                    let xq = xp.as_ptr().add(c) as *const v128;
                    acc[0] = madd(even, v128_load(xq), acc[0]);
                    acc[1] = madd(odd, v128_load(xq.add(1)), acc[1]);
                    c += 8;
                }
            }
            if F16 && !u16x8_all_true(u16x8_lt(top, u16x8_splat(0xf800))) {
                exact_row(j, o);
                continue;
            }
            let mut s = hsum(f32x4_add(acc[0], acc[1]));
            for kk in k8..k {
                let v = if F16 { f16::from_bits(row[kk]).to_f32() } else { bf16::from_bits(row[kk]).to_f32() };
                s += x[kk] * v;
            }
            *o = s;
        }
    }

    /// m >= 2: rows widened exactly, panel GEMM (same bits as the scalar kernel in the SIMD128 build).
    pub fn gemm<T: SimdLoad>(x: &[f32], m: usize, w: &[T], n: usize, k: usize, out: &mut [f32]) {
        let bits = halves(w);
        let is_f16 = TypeId::of::<T>() == TypeId::of::<f16>();
        panel::gemm(x, m, n, k, out, |j, row| {
            let done = match bits {
                Some(b) if is_f16 => widen_f16(&b[j * k..(j + 1) * k], row),
                Some(b) => widen_bf16(&b[j * k..(j + 1) * k], row),
                None => false,
            };
            if !done {
                widen_exact(&w[j * k..(j + 1) * k], row);
            }
        });
    }

    fn widen_exact<T: SimdLoad>(src: &[T], row: &mut [f32]) {
        assert!(src.len() == row.len());
        let k4 = src.len() - src.len() % 4;
        // SAFETY: loads read src[c .. c + 4], stores write row[c .. c + 4], c + 4 <= k4.
        unsafe {
            for c in (0..k4).step_by(4) {
                v128_store(row.as_mut_ptr().add(c) as *mut v128, T::load4(src.as_ptr().add(c)));
            }
        }
        for (r, s) in row[k4..].iter_mut().zip(&src[k4..]) {
            *r = s.to_f32();
        }
    }

    fn widen_bf16(src: &[u16], row: &mut [f32]) -> bool {
        assert!(src.len() == row.len());
        let k8 = src.len() - src.len() % 8;
        // SAFETY: loads read src[c .. c + 8], stores write row[c .. c + 8], c + 8 <= k8.
        unsafe {
            for c in (0..k8).step_by(8) {
                let h = v128_load(src.as_ptr().add(c) as *const v128);
                let d = row.as_mut_ptr().add(c) as *mut v128;
                v128_store(d, i32x4_shl(u32x4_extend_low_u16x8(h), 16));
                v128_store(d.add(1), i32x4_shl(u32x4_extend_high_u16x8(h), 16));
            }
        }
        for (r, s) in row[k8..].iter_mut().zip(&src[k8..]) {
            *r = bf16::from_bits(*s).to_f32();
        }
        true
    }

    /// f16 -> f32 by `((h << 16) >> 3) * 2^112` (see the module docs), exact for finite values;
    /// false (row unusable) when the row holds Inf / NaN.
    fn widen_f16(src: &[u16], row: &mut [f32]) -> bool {
        assert!(src.len() == row.len());
        let k8 = src.len() - src.len() % 8;
        let keep = u32x4_splat(0x8fff_e000);
        let p112 = f32x4_splat(P112);
        let mut top = u16x8_splat(0);
        // SAFETY: loads read src[c .. c + 8], stores write row[c .. c + 8], c + 8 <= k8.
        unsafe {
            for c in (0..k8).step_by(8) {
                let h = v128_load(src.as_ptr().add(c) as *const v128);
                top = u16x8_max(top, i16x8_shl(h, 1));
                let d = row.as_mut_ptr().add(c) as *mut v128;
                let widen = |half: v128| f32x4_mul(v128_and(i32x4_shr(i32x4_shl(half, 16), 3), keep), p112);
                v128_store(d, widen(u32x4_extend_low_u16x8(h)));
                v128_store(d.add(1), widen(u32x4_extend_high_u16x8(h)));
            }
        }
        if !u16x8_all_true(u16x8_lt(top, u16x8_splat(0xf800))) {
            return false;
        }
        for (r, s) in row[k8..].iter_mut().zip(&src[k8..]) {
            *r = f16::from_bits(*s).to_f32();
        }
        true
    }
}
