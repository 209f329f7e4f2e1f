//! matmul4.wgsl: 4-bit (NF4 / FP4 / INT4) linear layers on bitsandbytes' packed nibbles and f32
//! absmax — or a double-quantized absmax kept compressed (NESTED_ABSMAX) — split into parts as
//! weights.ts `fourBitParts` does, dispatched as index.ts `matmul` (and `linearForwardMany`'s
//! QKV fusion: [`qkv_steps`]).
use super::{bias_part, check_bias, grid, linear_steps, rows_per_part, forward_from_host, runs, LinearFormat, Part};
use crate::{Gpu, Params, Step};
use lowbit_core::codebook::Codebook4;
use lowbit_core::quant_state::NestedAbsmax;
use lowbit_core::{DType, QuantType4};

/// The absmax a 4-bit weight is uploaded with: f32 per block, or bitsandbytes' double
/// quantization (one 8-bit code per block, nested blocks of 256; weights.ts `NestedAbsmax`).
#[derive(Clone, Copy)]
pub enum Absmax<'a> {
    F32(&'a [f32]),
    Nested(&'a NestedAbsmax),
}

/// matmul4.wgsl NESTED_ABSMAX: words before the nested scales (code, offset, dtype, padding).
const NESTED_HEADER_WORDS: usize = 260;

/// A part's `scales` words for blocks [b0, b1) of a double-quantized absmax, as matmul4.wgsl
/// `block_scale` reads them (weights.ts `nestedScales`); b0 a multiple of 4. Returns the words
/// and where the 8-bit codes start.
fn nested_scales(a: &NestedAbsmax, b0: usize, b1: usize) -> (Vec<u32>, usize) {
    let (n0, n1) = (b0 / a.blocksize, b1.div_ceil(a.blocksize));
    let codes_at = NESTED_HEADER_WORDS + (n1 - n0);
    let mut words = vec![0u32; codes_at + (b1 - b0).div_ceil(4)];
    for (w, c) in words.iter_mut().zip(&a.code) {
        *w = c.to_bits();
    }
    words[256] = a.offset.to_bits();
    words[257] = match a.dtype {
        DType::F16 => 1,
        DType::BF16 => 2,
        _ => 0,
    };
    for (w, v) in words[NESTED_HEADER_WORDS..].iter_mut().zip(&a.absmax[n0..n1]) {
        *w = v.to_bits();
    }
    for (i, &c) in a.quantized[b0..b1].iter().enumerate() {
        words[codes_at + i / 4] |= (c as u32) << (8 * (i % 4));
    }
    (words, codes_at)
}

/// matmul4.wgsl gemv4: output rows per row group (G4_OUT).
pub const GEMV4_ROWS: usize = 4;

/// gemv4's threads per row group for rows of k weights (index.ts `gemv4Lanes`): the smallest
/// power of two covering the row's 32-weight words, 8 to 64 (the workgroup).
pub fn gemv4_lanes(k: usize) -> usize {
    let mut lanes = 8;
    while lanes < 64 && lanes * 32 < k {
        lanes *= 2;
    }
    lanes
}

/// A 4-bit weight `[n, k]` (bitsandbytes layout, f32 absmax) uploaded for matmul4.wgsl.
#[derive(Debug)]
pub struct Matmul4 {
    pub n: usize,
    pub k: usize,
    pub blocksize: usize,
    pub quant_type: QuantType4,
    pub parts: Vec<Part>,
    /// NESTED_ABSMAX: each part's word where its 8-bit absmax codes start (the shader's q_at).
    pub codes_at: Option<Vec<usize>>,
    /// Bytes of packed weights + absmax a forward reads (what a GEMV must read).
    pub weight_bytes: usize,
}

impl Matmul4 {
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, packed: &[u8], absmax: &[f32], quant_type: QuantType4, blocksize: usize, n: usize, k: usize, bias: Option<&[f32]>) -> Result<Matmul4, String> {
        Matmul4::with_absmax(gpu, packed, Absmax::F32(absmax), quant_type, blocksize, n, k, bias)
    }

    /// With either absmax form (a double-quantized one stays compressed on the device).
    #[allow(clippy::too_many_arguments)]
    pub fn with_absmax(gpu: &Gpu, packed: &[u8], absmax: Absmax, quant_type: QuantType4, blocksize: usize, n: usize, k: usize, bias: Option<&[f32]>) -> Result<Matmul4, String> {
        if n == 0 || k == 0 {
            return Err(format!("a linear weight needs positive sizes, got [{n}, {k}]"));
        }
        let numel = n.checked_mul(k).filter(|&e| e <= 0xffff_ffff - 8).ok_or_else(|| format!("[{n}, {k}] has more elements than 32-bit indices reach"))?;
        if packed.len() != numel.div_ceil(2) {
            return Err(format!("packed weight has {} bytes but [{n}, {k}] needs {}", packed.len(), numel.div_ceil(2)));
        }
        if !blocksize.is_power_of_two() || blocksize < 8 {
            return Err(format!("blocksize {blocksize} is not a power of two >= 8"));
        }
        let blocks = match absmax {
            Absmax::F32(a) => a.len(),
            Absmax::Nested(a) => {
                if a.code.len() != 256 || a.blocksize != 256 || a.absmax.len() != a.quantized.len().div_ceil(256) {
                    return Err(format!("a nested absmax needs a 256-entry code and blocks of 256, got {} / {}", a.code.len(), a.blocksize));
                }
                a.quantized.len()
            }
        };
        if blocks != numel.div_ceil(blocksize) {
            return Err(format!("{blocks} absmax for {} blocks", numel.div_ceil(blocksize)));
        }
        check_bias(bias, n)?;
        let mut parts = Vec::new();
        let mut codes_at = Vec::new();
        let mut weight_bytes = 0;
        // a part's words start at floor(r0 k / 8) and end at ceil(r1 k / 8): up to 8 bytes of slack
        for (r0, r1) in runs(n, rows_per_part(gpu, k, 16, "4-bit weight")?) {
            let (w0, w1) = (r0 * k / 8, (r1 * k).div_ceil(8));
            // padded to 16 bytes: matmul4.wgsl binds the words as vec4<u32>
            let mut bytes = vec![0u8; (w1 - w0).div_ceil(4) * 16];
            let src = &packed[w0 * 4..(w1 * 4).min(packed.len())];
            bytes[..src.len()].copy_from_slice(src);
            let (mut b0, b1) = (r0 * k / blocksize, (r1 * k).div_ceil(blocksize));
            let scales = match absmax {
                Absmax::F32(a) => {
                    if ((b1 - b0) * 4) as u64 > gpu.weight_binding {
                        return Err(format!("the absmax of {} rows exceed the storage binding limit", r1 - r0));
                    }
                    weight_bytes += (b1 - b0) * 4;
                    gpu.storage_f32("absmax", &a[b0..b1])
                }
                Absmax::Nested(a) => {
                    b0 -= b0 % 4; // the codes start on a word
                    let (words, at) = nested_scales(a, b0, b1);
                    weight_bytes += (words.len() - at) * 4;
                    codes_at.push(at);
                    gpu.storage_u32("nested absmax", &words)
                }
            };
            weight_bytes += bytes.len();
            parts.push(Part {
                n0: r0,
                rows: r1 - r0,
                data: gpu.storage("packed", &bytes),
                scales: Some(scales),
                bias: bias_part(gpu, bias, r0, r1),
                flat_base: w0 * 8,
                block_base: b0,
            });
        }
        let codes_at = matches!(absmax, Absmax::Nested(_)).then_some(codes_at);
        Ok(Matmul4 { n, k, blocksize, quant_type, parts, codes_at, weight_bytes })
    }

    /// Whether a one-row forward takes gemv4 (index.ts `matmul`): rows of whole 32-weight
    /// words in blocks of at least 32.
    pub fn uses_gemv4(&self) -> bool {
        self.k.is_multiple_of(32) && self.blocksize >= 32
    }

    /// The dispatches of `y = x Wᵀ (+ b)` for m rows of x (GEMV when m == 1: gemv4, row groups
    /// of `gemv4_lanes` threads with 4 rows each, SUBGROUPS when `gpu.subgroups`, where
    /// `uses_gemv4`).
    pub fn steps(&self, gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, m: usize) -> Result<Vec<Step>, String> {
        let code = Codebook4::get(self.quant_type).values; // FP4 code 8 is -0.0, as weights.ts kernelCode
        let shift = self.blocksize.trailing_zeros() as usize;
        let gemv4 = m == 1 && self.uses_gemv4();
        let lanes = if gemv4 { gemv4_lanes(self.k) } else { 0 };
        let q_at = |p: &Part| self.codes_at.as_ref().map_or(0, |c| c[self.parts.iter().position(|q| q.n0 == p.n0).unwrap_or(0)]);
        let tail: &dyn for<'p> Fn(Params<'p>, &Part) -> Params<'p> = &|w, p| w.u("flat_base", p.flat_base).u("block_base", p.block_base).u("block_shift", shift).u("g4_lanes", lanes).u("q_at", q_at(p)).fs("code", &code);
        let mut defines = if gemv4 && gpu.subgroups { vec!["SUBGROUPS"] } else { vec![] };
        if self.codes_at.is_some() {
            defines.push("NESTED_ABSMAX");
        }
        let fmt = LinearFormat {
            file: "matmul4.wgsl",
            defines,
            tail,
            weight: ("packed", "absmax"),
            gemv: if gemv4 { ("gemv4", GEMV4_ROWS * 64 / lanes) } else { ("gemv", 8) },
        };
        linear_steps(gpu, &fmt, &self.parts, self.n, self.k, m, x, y)
    }

    pub fn forward(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, String> {
        forward_from_host(gpu, x, m, self.k, self.n, |xb, yb| self.steps(gpu, xb, yb, m))
    }
}

/// q / k / v of one row of x in one dispatch (matmul4.wgsl gemv4 with QKV; index.ts
/// `linearForwardMany`): three weights of one part each with the same k, blocksize, type and
/// absmax form, q's and k's rows multiples of the row group (4), taking gemv4.
pub fn qkv_steps(gpu: &Gpu, w: [&Matmul4; 3], x: &wgpu::Buffer, y: [&wgpu::Buffer; 3]) -> Result<Step, String> {
    let [q, k, v] = w;
    let alike = w.iter().all(|l| l.parts.len() == 1 && l.k == q.k && l.blocksize == q.blocksize && l.quant_type == q.quant_type && l.codes_at.is_some() == q.codes_at.is_some() && l.parts[0].bias.is_none());
    if !alike || !q.uses_gemv4() || !q.n.is_multiple_of(GEMV4_ROWS) || !k.n.is_multiple_of(GEMV4_ROWS) {
        return Err("qkv: the three weights must be alike, in one part, without bias, taking gemv4, q's and k's rows multiples of 4".into());
    }
    let at = |l: &Matmul4| l.codes_at.as_ref().map_or(0, |c| c[0]);
    let lanes = gemv4_lanes(q.k);
    let mut defines = vec!["QKV"];
    if gpu.subgroups {
        defines.push("SUBGROUPS");
    }
    if q.codes_at.is_some() {
        defines.push("NESTED_ABSMAX");
    }
    let pipe = gpu.kernel("matmul4.wgsl", "gemv4", &defines)?;
    let code = Codebook4::get(q.quant_type).values;
    let p = pipe.params().u("m", 1).u("k", q.k).u("n_total", q.n).u("n0", 0).u("n_part", q.n).flag("has_bias", false).u("flat_base", 0).u("block_base", 0);
    let p = p.u("block_shift", q.blocksize.trailing_zeros() as usize).u("g4_lanes", lanes).u("q_at", at(q)).fs("code", &code);
    let uni = gpu.params(p.u("n_k", k.n).u("n_v", v.n).u("q_at_k", at(k)).u("q_at_v", at(v)))?;
    fn s(l: &Matmul4) -> Result<&wgpu::Buffer, String> {
        l.parts[0].scales.as_ref().ok_or_else(|| "4-bit parts have absmax".to_string())
    }
    let bind = [
        ("p", &uni),
        ("x", x),
        ("packed", &q.parts[0].data),
        ("absmax", s(q)?),
        ("y", y[0]),
        ("packed_k", &k.parts[0].data),
        ("absmax_k", s(k)?),
        ("y_k", y[1]),
        ("packed_v", &v.parts[0].data),
        ("absmax_v", s(v)?),
        ("y_v", y[2]),
    ];
    gpu.step(&pipe, &bind, grid((q.n + k.n + v.n).div_ceil(GEMV4_ROWS * 64 / lanes))?)
}
