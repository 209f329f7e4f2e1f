//! elementwise.wgsl (add, silu_op, swiglu, gelu, gelu_tanh) against lowbit-core's
//! kernels/activation.rs. Bounds from WGSL's accuracy table (+, -, * correctly rounded; x / y
//! 2.5 ULP; exp(x) 3 + 2|x| ULP), u = 2^-24, per element:
//! - add: exact (one correctly rounded addition on both sides).
//! - silu(v) = v / (1 + exp(-v)): exp's (3 + 2|v|) ULP, the addition 1 ULP, the division
//!   2.5 ULP, and the CPU's own roundings (libm exp < 1 ULP) 2 ULP: |Δ| <= (9 + 2|v|)·u·|y|.
//! - swiglu = silu(g)·u': one more correctly rounded multiply on each side: (10 + 2|g|)·u·|y|.
//! - gelu_tanh = 0.5 v (1 + tanh(w)): the GPU's tanh is (1 - t) / (1 + t), t = exp(-2|w|); its
//!   absolute error is at most 2t·(3 + 4|w|)·u (<= 6u) + 2 ULP of roundings + 2.5 ULP of
//!   division, the CPU's tanh is within 1 ULP, and an FMA in w's cubic moves tanh by at most
//!   3u·|w|·sech²(w) (< 1.5u): E_tanh = 14u absolutely. 1 + tanh cancels for v < 0, so the
//!   bound is absolute: with the roundings of 1 + tanh on both sides and of the products,
//!   |Δ| <= 0.5|v|·(E_tanh + 2u) + 3u·|y|.
//! - gelu = 0.5 v erfc(-v / √2) with Numerical Recipes' erfc evaluated in f32 here and in f64
//!   on the CPU. For z = |v| / √2, erfc's r = t·exp(q): t = 1 / (1 + z/2) is within 3.5 ULP,
//!   the degree-9 Horner polynomial in f32 (Σ|c_i| < 6.5, Σ i|c_i| < 30 for t <= 1) adds at
//!   most 18·6.5u + 30·3.5u < 225u to q, -z² one ULP of z², and exp another (3 + 2|q|) ULP:
//!   E_r = (230 + 3|q|)·u relative to r, |q| <= z² + 1.3. gelu = 0.5 v r (v < 0) or
//!   0.5 v (2 - r) (v >= 0), rounded twice more here (2 - r, the product) and once on the
//!   CPU: |Δ| <= 0.5|v|·r·E_r + 4u·|y|. For |v| <= 10 that is below 3e-5 relative (lavapipe
//!   reaches about half of it near v = -10, where |q| is largest).
//!
//! Inputs stay within |v| <= 20 (silu) and |v| <= 10 (gelu) so that no result is an f32
//! subnormal (which WGSL may flush).
mod common;
use common::{check_exact, check_within, gpu, Rng, U};
use lowbit_core::kernels::activation::{gelu, gelu_tanh, silu, swiglu};
use lowbit_gpu::kernels::elementwise::{elementwise, Op};

/// erfc(z) for z >= 0 in f64 (the reference's fit; only its size matters here).
fn erfc_pos(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    t * p.exp()
}

fn inputs(rng: &mut Rng, n: usize, lim: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|_| rng.range(-lim, lim)).collect();
    let special = [0.0, -0.0, 1e-3, -1e-3, 1e-20, -1e-20, 0.5, -0.5, lim, -lim, 1.0, -1.0];
    v[..special.len()].copy_from_slice(&special);
    v
}

#[test]
fn elementwise_ops_match_the_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(0xbb67ae8584caa73b);
    // 1000 and 257 are not multiples of the 256-wide workgroup
    for count in [1000usize, 257, 12] {
        let a = inputs(&mut rng, count.max(12), 20.0)[..count].to_vec();
        let b = inputs(&mut rng, count.max(12), 20.0)[..count].to_vec();

        let got = elementwise(&gpu, Op::Add, &a, Some(&b)).unwrap();
        check_exact("add", &got, &a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>());

        let got = elementwise(&gpu, Op::Silu, &a, None).unwrap();
        let want: Vec<f32> = a.iter().map(|&v| silu(v)).collect();
        let w_silu = check_within("silu", &got, &want, |i| (9.0 + 2.0 * a[i].abs() as f64) * U * want[i].abs() as f64);

        let got = elementwise(&gpu, Op::Swiglu, &a, Some(&b)).unwrap();
        let mut want = vec![0f32; count];
        swiglu(&a, &b, &mut want).unwrap();
        let w_swiglu = check_within("swiglu", &got, &want, |i| (10.0 + 2.0 * a[i].abs() as f64) * U * want[i].abs() as f64);

        let g = inputs(&mut rng, count.max(12), 10.0)[..count].to_vec();
        let got = elementwise(&gpu, Op::GeluTanh, &g, None).unwrap();
        let want: Vec<f32> = g.iter().map(|&v| gelu_tanh(v)).collect();
        let w_tanh = check_within("gelu_tanh", &got, &want, |i| 0.5 * g[i].abs() as f64 * 16.0 * U + 3.0 * U * want[i].abs() as f64);

        let got = elementwise(&gpu, Op::Gelu, &g, None).unwrap();
        let want: Vec<f32> = g.iter().map(|&v| gelu(v)).collect();
        let w_gelu = check_within("gelu", &got, &want, |i| {
            let z = g[i].abs() as f64 * std::f64::consts::FRAC_1_SQRT_2;
            let e_r = (230.0 + 3.0 * (z * z + 1.3)) * U;
            0.5 * g[i].abs() as f64 * erfc_pos(z) * e_r + 4.0 * U * want[i].abs() as f64
        });
        eprintln!("elementwise count={count}: largest |Δ| / bound: silu {w_silu:.3}, swiglu {w_swiglu:.3}, gelu_tanh {w_tanh:.3}, gelu {w_gelu:.3}");
    }
}

#[test]
fn elementwise_refuses_bad_arguments() {
    let Some(gpu) = gpu() else { return };
    assert!(elementwise(&gpu, Op::Add, &[1.0; 3], Some(&[1.0; 2])).is_err());
    assert!(elementwise(&gpu, Op::Add, &[1.0; 3], None).is_err());
    assert!(elementwise(&gpu, Op::Silu, &[1.0; 3], Some(&[1.0; 3])).is_err());
    assert_eq!(elementwise(&gpu, Op::Silu, &[], None).unwrap(), Vec::<f32>::new());
}
