//! quantize4.wgsl against lowbit-core's CPU quantizer (blockwise4::quantize_packed, scalar),
//! byte for byte and bit for bit: packed codes and absmax, every 4-bit type and blocksize,
//! full and partial final blocks, odd lengths, all-zero blocks, values exactly on the code
//! midpoints (ties go to the lower code), f32 and f16 inputs, and inputs split into chunks of
//! whole blocks for a small binding limit. Left out, as documented in the shader and in
//! ts/backends/webgpu/quantize.ts: f32 subnormal inputs and scaled values below 2^-126, which
//! WGSL may flush to zero.
mod common;
use common::{gpu, Rng};
use lowbit_core::blockwise4::quantize_packed;
use lowbit_core::codebook::Codebook4;
use lowbit_core::{f16, Kernel, QuantType4, BLOCKSIZES_4BIT};
use lowbit_gpu::kernels::quantize4::quantize4;

fn input(rng: &mut Rng, n: usize, bs: usize, qt: QuantType4) -> Vec<f32> {
    let scale = [1e-3f32, 0.05, 1.0, 300.0][rng.below(4)];
    let mut x = rng.vec(n, scale);
    // an all-zero block, a block holding the code midpoints with absmax exactly 1 (so the
    // scaled values are the midpoints themselves), and a zero in the middle of a block
    let nb = n.div_ceil(bs);
    if nb >= 3 {
        x[bs..2 * bs].iter_mut().for_each(|v| *v = 0.0);
        let mids = Codebook4::get(qt).midpoints;
        let blk = &mut x[2 * bs..(3 * bs).min(n)];
        for (i, v) in blk.iter_mut().enumerate() {
            *v = if i == 0 { -1.0 } else { mids[i % 15] };
        }
    }
    if n > 3 {
        x[n / 2] = 0.0;
        x[n / 3] = -0.0;
    }
    x
}

#[test]
fn quantize4_is_bit_identical_to_the_cpu_quantizer() {
    let Some(mut gpu) = gpu() else { return };
    let full_binding = gpu.weight_binding;
    let mut rng = Rng(0x9b05688c2b3e6c1f);
    let mut cases = 0;
    for qt in [QuantType4::Nf4, QuantType4::Fp4, QuantType4::Int4] {
        for (c, &bs) in BLOCKSIZES_4BIT.iter().enumerate() {
            // a partial final block, an exact number of blocks, and an odd length
            for n in [3 * bs + 5 + 2 * c, 4 * bs, 2 * bs + 1, 7] {
                let x = input(&mut rng, n, bs, qt);
                let (wp, wa) = quantize_packed(&x, qt, bs, false, Kernel::Scalar).unwrap();
                for binding in [full_binding, 256] {
                    gpu.weight_binding = binding;
                    let (gp, ga) = quantize4(&gpu, &x, qt, bs).unwrap();
                    let what = format!("{qt:?} bs={bs} n={n} binding={binding}");
                    assert_eq!(gp, wp, "{what}: packed codes");
                    assert_eq!(ga.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), wa.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{what}: absmax");
                    cases += 1;
                }
            }
        }
        // f16 input, as the TS host widens it: the same codes as the CPU quantizer's f16 path
        // (f16 subnormals are normal f32 values)
        let h: Vec<f16> = rng.vec(1000, 0.01).iter().enumerate().map(|(i, &v)| if i % 9 == 0 { f16::from_bits(i as u16 % 0x3ff + 1) } else { f16::from_f32(v) }).collect();
        let widened: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
        gpu.weight_binding = full_binding;
        let (wp, wa) = quantize_packed(&h, qt, 64, false, Kernel::Scalar).unwrap();
        let (gp, ga) = quantize4(&gpu, &widened, qt, 64).unwrap();
        assert_eq!(gp, wp, "{qt:?} f16 input: packed codes");
        assert_eq!(ga.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), wa.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{qt:?} f16 input: absmax");
    }
    eprintln!("quantize4: {cases} cases bit-identical");
}

#[test]
fn quantize4_refuses_bad_input() {
    let Some(gpu) = gpu() else { return };
    assert!(quantize4(&gpu, &[1.0; 8], QuantType4::Nf4, 48).unwrap_err().contains("blocksize"));
    assert!(quantize4(&gpu, &[], QuantType4::Nf4, 64).unwrap_err().contains("empty"));
    assert!(quantize4(&gpu, &[1.0, f32::NAN], QuantType4::Nf4, 64).unwrap_err().contains("element 1"));
}
