//! The relaxed-SIMD build (scripts/build.sh's second wasm build, `+simd128,+relaxed-simd`):
//! Rust's stable `core::arch::wasm32` relaxed intrinsics compile, and the engine running the
//! tests executes them with the results the integer-dot kernels rely on.
//!
//! Only compiled for that build: `scripts/test.sh` runs the wasm32 tests once per build.
#![cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]

use core::arch::wasm32::*;
use core::hint::black_box;
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::Rng;

fn lanes_i8(v: v128) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        // i8x16_extract_lane needs a constant lane: go through memory instead.
        *o = unsafe { *(&v as *const v128 as *const i8).add(i) };
    }
    out
}

fn lanes_i32(v: v128) -> [i32; 4] {
    [i32x4_extract_lane::<0>(v), i32x4_extract_lane::<1>(v), i32x4_extract_lane::<2>(v), i32x4_extract_lane::<3>(v)]
}

fn random_i8x16(rng: &mut Rng, lo: i32, hi: i32) -> v128 {
    let mut b = [0i8; 16];
    for x in b.iter_mut() {
        *x = (lo + (rng.next() * (hi - lo + 1) as f32) as i32).min(hi) as i8;
    }
    unsafe { v128_load(b.as_ptr() as *const v128) }
}

/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` is deterministic when the second operand is in 0..=127
/// (x86's pmaddubsw reads it unsigned; its i16 pair sums cannot saturate: 2 · 128 · 127 < 2^15),
/// which is how the integer-dot kernels use it: lane i = acc[i] + Σ_j a[4i+j] · b[4i+j].
#[test]
fn relaxed_dot_i8x16_i7x16_add_matches_scalar() {
    let mut rng = Rng(0x5eed_0d07);
    // The extremes first, then random operands.
    let cases: Vec<(v128, v128, v128)> = [(i8x16_splat(-128), i8x16_splat(127), i32x4(i32::MAX - 65024, 0, -1, i32::MIN + 65024))]
        .into_iter()
        .chain((0..2000).map(|_| (random_i8x16(&mut rng, -128, 127), random_i8x16(&mut rng, 0, 127), i32x4((rng.next() * 2e6) as i32 - 1_000_000, 7, -7, 0))))
        .collect();
    for (a, b, acc) in cases {
        let got = lanes_i32(i32x4_relaxed_dot_i8x16_i7x16_add(black_box(a), black_box(b), black_box(acc)));
        let (ai, bi, ci) = (lanes_i8(a), lanes_i8(b), lanes_i32(acc));
        for lane in 0..4 {
            let want = ci[lane].wrapping_add((0..4).map(|j| ai[4 * lane + j] as i32 * bi[4 * lane + j] as i32).sum::<i32>());
            assert_eq!(got[lane], want, "lane {lane}: a {ai:?} b {bi:?} acc {ci:?}");
        }
    }
}

/// `i16x8.relaxed_dot_i8x16_i7x16_s` (pairwise products into i16), same operand rule.
#[test]
fn relaxed_dot_i8x16_i7x16_matches_scalar() {
    let mut rng = Rng(0xd07_16);
    for _ in 0..2000 {
        let (a, b) = (random_i8x16(&mut rng, -128, 127), random_i8x16(&mut rng, 0, 127));
        let got = i16x8_relaxed_dot_i8x16_i7x16(black_box(a), black_box(b));
        let (ai, bi) = (lanes_i8(a), lanes_i8(b));
        let g: [i16; 8] = unsafe { core::mem::transmute(got) };
        for lane in 0..8 {
            assert_eq!(g[lane] as i32, ai[2 * lane] as i32 * bi[2 * lane] as i32 + ai[2 * lane + 1] as i32 * bi[2 * lane + 1] as i32, "lane {lane}");
        }
    }
}

/// `f32x4.relaxed_madd` may or may not round the product: either result is accepted, nothing else.
#[test]
fn relaxed_madd_is_fused_or_unfused() {
    let mut rng = Rng(0x3add);
    for _ in 0..2000 {
        let v: Vec<f32> = (0..12).map(|_| rng.normal()).collect();
        let (a, b, c) = (f32x4(v[0], v[1], v[2], v[3]), f32x4(v[4], v[5], v[6], v[7]), f32x4(v[8], v[9], v[10], v[11]));
        let got: [f32; 4] = unsafe { core::mem::transmute(f32x4_relaxed_madd(black_box(a), black_box(b), black_box(c))) };
        for i in 0..4 {
            let (x, y, z) = (v[i], v[4 + i], v[8 + i]);
            let unfused = x * y + z;
            let fused = x.mul_add(y, z);
            assert!(got[i] == unfused || got[i] == fused, "{x} * {y} + {z}: got {}, unfused {unfused}, fused {fused}", got[i]);
        }
    }
}
