//! Code tables. NF4 and FP4 are bitsandbytes' own (bit patterns from
//! ../shared/spec/bnb-format.md §1, i.e. bitsandbytes `functional.get_4bit_type` and
//! `csrc/kernels.cu`); INT4 is lowbit's symmetric absmax format; the 8-bit "dynamic" map is
//! regenerated the way `functional.create_dynamic_map` builds it.

use crate::error::{bail, Result};
use std::sync::OnceLock;

/// 4-bit quantization types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType4 {
    /// NormalFloat4 (QLoRA), bitsandbytes' `nf4`.
    Nf4,
    /// bitsandbytes' own FP4 (1 sign, 2 "exponent", 1 mantissa bit), `fp4`.
    Fp4,
    /// lowbit's INT4: symmetric absmax, levels q/7 for q in -7..=7, stored as a 4-bit two's
    /// complement nibble. Not a bitsandbytes format (bitsandbytes cannot load it).
    Int4,
}

impl QuantType4 {
    pub fn name(self) -> &'static str {
        match self {
            QuantType4::Nf4 => "nf4",
            QuantType4::Fp4 => "fp4",
            QuantType4::Int4 => "int4",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "nf4" => QuantType4::Nf4,
            "fp4" => QuantType4::Fp4,
            "int4" => QuantType4::Int4,
            other => bail!(UnsupportedQuantType, "unknown 4-bit quant type '{other}' (expected 'nf4', 'fp4' or 'int4')"),
        })
    }
}

/// f32 bit patterns of the NF4 code, index = 4-bit code (spec §1.1).
const NF4_BITS: [u32; 16] = [
    0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
    0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
];

/// FP4 magnitudes by the low 3 bits (spec §1.2); bit 3 is the sign. The dequantization kernels
/// (CUDA, bitsandbytes' C++ CPU code) give code 8 the value -0.0; the `quant_map` that
/// `get_4bit_type("fp4")` returns and checkpoints store has +0.0 there.
const FP4_MAGNITUDE_BITS: [u32; 8] =
    [0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000];

/// A 16-entry code with what quantization needs: the values sorted, the f32 midpoints between
/// neighbours (as bitsandbytes' default backend computes them: `(a + b) / 2` in f32) and the
/// map from sorted position back to the 4-bit code (`argsort` in bitsandbytes).
#[derive(Debug, Clone)]
pub struct Codebook4 {
    pub quant_type: QuantType4,
    /// value of each 4-bit code as the dequantization kernels use it (multiplied by absmax).
    pub values: [f32; 16],
    /// the table bitsandbytes stores as `quant_map` (differs from `values` only in FP4's -0.0).
    pub quant_map: [f32; 16],
    /// midpoints[i] lies between the i-th and (i+1)-th smallest values.
    pub midpoints: [f32; 15],
    /// sorted position -> 4-bit code.
    pub order: [u8; 16],
}

impl Codebook4 {
    pub fn get(qt: QuantType4) -> &'static Codebook4 {
        static NF4: OnceLock<Codebook4> = OnceLock::new();
        static FP4: OnceLock<Codebook4> = OnceLock::new();
        static INT4: OnceLock<Codebook4> = OnceLock::new();
        match qt {
            QuantType4::Nf4 => NF4.get_or_init(|| Codebook4::build(qt, NF4_BITS.map(f32::from_bits))),
            QuantType4::Fp4 => FP4.get_or_init(|| {
                let mut v = [0f32; 16];
                for (code, slot) in v.iter_mut().enumerate() {
                    let m = f32::from_bits(FP4_MAGNITUDE_BITS[code & 7]);
                    *slot = if code & 8 != 0 { -m } else { m };
                }
                Codebook4::build(qt, v)
            }),
            QuantType4::Int4 => INT4.get_or_init(|| {
                let mut v = [0f32; 16];
                for (code, slot) in v.iter_mut().enumerate() {
                    let q = ((code as i8) << 4) >> 4; // sign-extend the nibble
                    *slot = q as f32 / 7.0;
                }
                Codebook4::build(qt, v)
            }),
        }
    }

    fn build(quant_type: QuantType4, values: [f32; 16]) -> Codebook4 {
        // Stable sort by value keeps equal values (FP4's two zeros) in code order, which is
        // what torch.argsort gives for bitsandbytes' FP4 table (spec §2.5: order[7]=0, order[8]=8).
        let mut order: [u8; 16] = core::array::from_fn(|i| i as u8);
        order.sort_by(|&a, &b| values[a as usize].partial_cmp(&values[b as usize]).unwrap());
        let sorted = order.map(|c| values[c as usize]);
        let midpoints = core::array::from_fn(|i| (sorted[i] + sorted[i + 1]) / 2.0);
        let quant_map = values.map(|v| if v == 0.0 { 0.0 } else { v });
        Codebook4 { quant_type, values, quant_map, midpoints, order }
    }

    /// The 4-bit code of a value already scaled into [-1, 1]: nearest code, ties to the lower
    /// value (bucketize with right=False). NaN compares false everywhere and gives order[0].
    #[inline(always)]
    pub fn encode(&self, y: f32) -> u8 {
        let mut idx = 0usize;
        for &m in &self.midpoints {
            idx += (y > m) as usize;
        }
        self.order[idx]
    }
}

/// bitsandbytes' signed dynamic 8-bit map (`create_dynamic_map(signed=True)`), the code of
/// `quantize_blockwise` and of the nested absmax in double quantization.
pub fn dynamic_map_signed() -> &'static [f32; 256] {
    static MAP: OnceLock<[f32; 256]> = OnceLock::new();
    MAP.get_or_init(|| build_dynamic_map(true))
}

/// The unsigned variant ("udynamic"), used by 8-bit optimizers for Adam's second state.
pub fn dynamic_map_unsigned() -> &'static [f32; 256] {
    static MAP: OnceLock<[f32; 256]> = OnceLock::new();
    MAP.get_or_init(|| build_dynamic_map(false))
}

/// torch.linspace(start, end, steps) for float32 on CPU: the first half counts up from start,
/// the second half down from end (ATen's RangeFactoriesKernel). The compiler contracts
/// `start + step * i` to a fused multiply-add there: emulating that (one rounding) reproduces
/// torch 2.15's map bit for bit, where two roundings differ in 42 of 256 entries.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| if i < halfway { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - i - 1) as f32, end) })
        .collect()
}

fn build_dynamic_map(signed: bool) -> [f32; 256] {
    const MAX_EXPONENT_BITS: i32 = 7;
    const TOTAL_BITS: i32 = 8;
    let non_sign_bits = TOTAL_BITS - 1;
    let mut data: Vec<f32> = Vec::with_capacity(256);
    for i in 0..MAX_EXPONENT_BITS {
        let fraction_items = if signed {
            (1usize << (i + non_sign_bits - MAX_EXPONENT_BITS)) + 1
        } else {
            (1usize << (i + non_sign_bits - MAX_EXPONENT_BITS + 1)) + 1
        };
        let b = torch_linspace_f32(0.1, 1.0, fraction_items);
        let scale = 10f64.powi(-(MAX_EXPONENT_BITS - 1) + i) as f32;
        for w in b.windows(2) {
            let mean = (w[0] + w[1]) / 2.0;
            data.push(scale * mean);
        }
        if signed {
            for w in b.windows(2) {
                let mean = (w[0] + w[1]) / 2.0;
                data.push(-scale * mean);
            }
        }
    }
    data.push(0.0);
    data.push(1.0);
    while data.len() < 256 {
        data.push(0.0);
    }
    data.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut out = [0f32; 256];
    out.copy_from_slice(&data[..256]);
    out
}

/// Midpoints of a sorted 256-entry code, for nearest-code search.
pub fn midpoints_256(code: &[f32; 256]) -> [f32; 255] {
    core::array::from_fn(|i| (code[i] + code[i + 1]) / 2.0)
}

/// Nearest entry of a sorted code by its midpoints; ties go to the lower index; NaN gives 0.
#[inline]
pub fn encode_sorted(midpoints: &[f32], y: f32) -> u8 {
    midpoints.partition_point(|&m| m < y) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_midpoints_match_cuda_thresholds() {
        // bitsandbytes' CUDA decision tree thresholds as f32 (spec §2.3).
        let expect: [u32; 15] = [
            0xbf591cd8, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff,
            0x3df64862, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d04, 0x3f248daf, 0x3f5c89da,
        ];
        let cb = Codebook4::get(QuantType4::Nf4);
        assert_eq!(cb.midpoints.map(f32::to_bits), expect);
        assert_eq!(cb.order, core::array::from_fn(|i| i as u8));
    }

    #[test]
    fn fp4_order_matches_torch_argsort() {
        let cb = Codebook4::get(QuantType4::Fp4);
        assert_eq!(cb.order, [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3]);
        // exact f32 midpoints (spec §2.4)
        let pos: Vec<u32> = cb.midpoints[8..].iter().map(|m| m.to_bits()).collect();
        assert_eq!(pos, [0x3b2aaaab, 0x3db00000, 0x3e555556, 0x3e955556, 0x3ed55556, 0x3f155556, 0x3f555556]);
    }

    #[test]
    fn int4_levels_are_symmetric() {
        let cb = Codebook4::get(QuantType4::Int4);
        assert_eq!(cb.encode(1.0), 7);
        assert_eq!(cb.encode(-1.0), 9); // -7 as a nibble
        assert_eq!(cb.encode(0.0), 0);
        assert_eq!(cb.encode(3.0 / 7.0), 3);
        assert_eq!(cb.values[8], -8.0 / 7.0); // never produced
    }

    #[test]
    fn dynamic_map_shape() {
        let m = dynamic_map_signed();
        assert_eq!(m[127], 0.0);
        assert_eq!(m[255], 1.0);
        assert_eq!(m[0].to_bits(), 0xbf7e3333);
        assert!(m.windows(2).all(|w| w[0] < w[1]));
    }
}
