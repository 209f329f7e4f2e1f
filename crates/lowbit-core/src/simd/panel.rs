//! Register-blocked f32 GEMM over weight panels (wasm SIMD128), shared by the 4-bit and the
//! dense linear layers when there are m >= 2 activation rows (prefill).
//!
//! Weight rows are first written as exact f32 (4-bit: `values[code] * absmax`, the f32 product
//! dequantization computes; f16 / bf16: exact widening) by the caller's `fill`, NR = 8 rows at
//! a time, then transposed k-major (`panel[kk * 8 + c] = W[j0 + c, kk]`) so that one f32x4 load
//! holds 4 output columns. The microkernel keeps MR x 8 outputs in registers (MR = 4: eight
//! f32x4 accumulators, which is what V8's 15 allocatable xmm registers hold without spilling;
//! 6 x 8 and 4 x 12 spill and run at a third of the speed) and for each k adds
//! `splat(x[r, k]) * panel[k]`: the products and the k-order sums of the scalar reference
//! (`acc += x * w`, k = 0, 1, ...), so the result has the same bits as the scalar kernel. The
//! relaxed-SIMD build fuses each multiply-add ([`super::wasm128::madd`]: one rounding instead of
//! two, 1.3–1.7× the throughput), which keeps it within the GEMV bound instead.
//!
//! Decoding / widening a panel costs about as much as one GEMV over it; it is paid once per
//! call and shared by all m rows.

use core::arch::wasm32::*;
use crate::simd::wasm128::madd;

/// Weight rows per panel (two f32x4 of output columns).
const NR: usize = 8;
/// Activation rows per register tile.
const MR: usize = 4;

/// `out[m, n] = x[m, k] · Wᵀ` (no bias). `fill(j, row)` writes weight row j (k f32 values) into
/// `row`. The caller has checked the slice lengths (`x`: m·k, `out`: m·n).
pub(crate) fn gemm<F: FnMut(usize, &mut [f32])>(x: &[f32], m: usize, n: usize, k: usize, out: &mut [f32], mut fill: F) {
    debug_assert!(x.len() == m * k && out.len() == m * n);
    let mut rows = vec![0f32; NR * k];
    let mut panel = vec![0f32; NR * k];
    let mut j0 = 0;
    while j0 < n {
        let nr = (n - j0).min(NR);
        for (c, row) in rows.chunks_exact_mut(k).enumerate() {
            if c < nr {
                fill(j0 + c, row);
            } else {
                row.fill(0.0); // padding columns of the last panel (never stored)
            }
        }
        transpose(&rows, k, &mut panel);
        let mut i0 = 0;
        while i0 < m {
            let mr = (m - i0).min(MR);
            let xs = &x[i0 * k..(i0 + mr) * k];
            match mr {
                4 => store(tile::<4>(xs, k, &panel), out, i0, j0, n, nr),
                3 => store(tile::<3>(xs, k, &panel), out, i0, j0, n, nr),
                2 => store(tile::<2>(xs, k, &panel), out, i0, j0, n, nr),
                _ => store(tile::<1>(xs, k, &panel), out, i0, j0, n, nr),
            }
            i0 += mr;
        }
        j0 += nr;
    }
}

/// `rows` [8, k] -> `panel` [k, 8].
fn transpose(rows: &[f32], k: usize, panel: &mut [f32]) {
    assert!(rows.len() == NR * k && panel.len() == NR * k);
    let k4 = k - k % 4;
    // SAFETY: loads read rows[(4h + r) * k + kk .. + 4] with kk + 4 <= k4 <= k; stores write
    // panel[(kk + q) * 8 + 4h .. + 4] with kk + q < k: all inside the slices (asserted above).
    unsafe {
        let (src, dst) = (rows.as_ptr(), panel.as_mut_ptr());
        for h in 0..2 {
            let r = src.add(4 * h * k);
            let mut kk = 0;
            while kk < k4 {
                let r0 = v128_load(r.add(kk) as *const v128);
                let r1 = v128_load(r.add(k + kk) as *const v128);
                let r2 = v128_load(r.add(2 * k + kk) as *const v128);
                let r3 = v128_load(r.add(3 * k + kk) as *const v128);
                let t0 = i32x4_shuffle::<0, 4, 1, 5>(r0, r1);
                let t1 = i32x4_shuffle::<2, 6, 3, 7>(r0, r1);
                let t2 = i32x4_shuffle::<0, 4, 1, 5>(r2, r3);
                let t3 = i32x4_shuffle::<2, 6, 3, 7>(r2, r3);
                let d = dst.add(kk * NR + 4 * h);
                v128_store(d as *mut v128, i64x2_shuffle::<0, 2>(t0, t2));
                v128_store(d.add(NR) as *mut v128, i64x2_shuffle::<1, 3>(t0, t2));
                v128_store(d.add(2 * NR) as *mut v128, i64x2_shuffle::<0, 2>(t1, t3));
                v128_store(d.add(3 * NR) as *mut v128, i64x2_shuffle::<1, 3>(t1, t3));
                kk += 4;
            }
        }
    }
    for kk in k4..k {
        for c in 0..NR {
            panel[kk * NR + c] = rows[c * k + kk];
        }
    }
}

/// R activation rows (`xs` = R·k values) against one panel: R x 8 outputs.
#[inline(always)]
fn tile<const R: usize>(xs: &[f32], k: usize, panel: &[f32]) -> [[v128; 2]; R] {
    assert!(xs.len() == R * k && panel.len() == NR * k);
    let mut acc = [[f32x4_splat(0.0); 2]; R];
    // SAFETY: panel loads read panel[kk * 8 .. kk * 8 + 8], x loads read xs[r * k + kk], with
    // kk < k and r < R: inside the slices (asserted above).
    unsafe {
        let (x, p) = (xs.as_ptr(), panel.as_ptr());
        for kk in 0..k {
            let w0 = v128_load(p.add(kk * NR) as *const v128);
            let w1 = v128_load(p.add(kk * NR + 4) as *const v128);
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = v128_load32_splat(x.add(r * k + kk) as *const u32);
                a[0] = madd(xv, w0, a[0]);
                a[1] = madd(xv, w1, a[1]);
            }
        }
    }
    acc
}

#[inline(always)]
fn store<const R: usize>(acc: [[v128; 2]; R], out: &mut [f32], i0: usize, j0: usize, n: usize, nr: usize) {
    for (r, a) in acc.iter().enumerate() {
        let o = (i0 + r) * n + j0;
        let dst = &mut out[o..o + nr];
        if nr == NR {
            // SAFETY: dst has 8 floats. (A full panel: no memory.copy call per row.)
            unsafe {
                v128_store(dst.as_mut_ptr() as *mut v128, a[0]);
                v128_store(dst.as_mut_ptr().add(4) as *mut v128, a[1]);
            }
        } else {
            let mut v = [0f32; NR];
            // SAFETY: v has 8 floats.
            unsafe {
                v128_store(v.as_mut_ptr() as *mut v128, a[0]);
                v128_store(v.as_mut_ptr().add(4) as *mut v128, a[1]);
            }
            dst.copy_from_slice(&v[..nr]);
        }
    }
}
