//! matmul4.wgsl: 4-bit (NF4 / FP4 / INT4) linear layers on bitsandbytes' packed nibbles and f32
//! absmax, split into parts as weights.ts `fourBitParts` does, dispatched as index.ts `matmul`.
use super::{bias_part, check_bias, linear_steps, rows_per_part, run_read_f32, runs, LinearFormat, Part};
use crate::{Gpu, Params, Step};
use lowbit_core::codebook::Codebook4;
use lowbit_core::QuantType4;

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
    /// Bytes of packed weights + absmax a forward reads (what a GEMV must read).
    pub weight_bytes: usize,
}

impl Matmul4 {
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, packed: &[u8], absmax: &[f32], quant_type: QuantType4, blocksize: usize, n: usize, k: usize, bias: Option<&[f32]>) -> Result<Matmul4, String> {
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
        if absmax.len() != numel.div_ceil(blocksize) {
            return Err(format!("{} absmax for {} blocks", absmax.len(), numel.div_ceil(blocksize)));
        }
        check_bias(bias, n)?;
        let mut parts = Vec::new();
        let mut weight_bytes = 0;
        // a part's words start at floor(r0 k / 8) and end at ceil(r1 k / 8): up to 8 bytes of slack
        for (r0, r1) in runs(n, rows_per_part(gpu, k, 16, "4-bit weight")?) {
            let (w0, w1) = (r0 * k / 8, (r1 * k).div_ceil(8));
            // padded to 16 bytes: matmul4.wgsl binds the words as vec4<u32>
            let mut bytes = vec![0u8; (w1 - w0).div_ceil(4) * 16];
            let src = &packed[w0 * 4..(w1 * 4).min(packed.len())];
            bytes[..src.len()].copy_from_slice(src);
            let (b0, b1) = (r0 * k / blocksize, (r1 * k).div_ceil(blocksize));
            if ((b1 - b0) * 4) as u64 > gpu.weight_binding {
                return Err(format!("the absmax of {} rows exceed the storage binding limit", r1 - r0));
            }
            weight_bytes += bytes.len() + (b1 - b0) * 4;
            parts.push(Part {
                n0: r0,
                rows: r1 - r0,
                data: gpu.storage("packed", &bytes),
                scales: Some(gpu.storage_f32("absmax", &absmax[b0..b1])),
                bias: bias_part(gpu, bias, r0, r1),
                flat_base: w0 * 8,
                block_base: b0,
            });
        }
        Ok(Matmul4 { n, k, blocksize, quant_type, parts, weight_bytes })
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
        let tail: &dyn for<'p> Fn(Params<'p>, &Part) -> Params<'p> = &|w, p| w.u("flat_base", p.flat_base).u("block_base", p.block_base).u("block_shift", shift).u("g4_lanes", lanes).u("q_at", 0).fs("code", &code);
        let fmt = LinearFormat {
            file: "matmul4.wgsl",
            defines: if gemv4 && gpu.subgroups { vec!["SUBGROUPS"] } else { vec![] },
            tail,
            weight: ("packed", "absmax"),
            gemv: if gemv4 { ("gemv4", GEMV4_ROWS * 64 / lanes) } else { ("gemv", 8) },
        };
        linear_steps(gpu, &fmt, &self.parts, self.n, self.k, m, x, y)
    }

    pub fn forward(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, String> {
        if x.len() != m * self.k {
            return Err(format!("x has {} values but [{m}, {}] needs {}", x.len(), self.k, m * self.k));
        }
        let xb = gpu.storage_f32("x", x);
        let yb = gpu.zeroed("y", (m * self.n * 4) as u64);
        Ok(run_read_f32(gpu, &self.steps(gpu, &xb, &yb, m)?, &yb, m * self.n))
    }
}
