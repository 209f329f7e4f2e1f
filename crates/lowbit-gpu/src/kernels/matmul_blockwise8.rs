//! matmul_blockwise8.wgsl: block-wise 8-bit linear layers (GGUF Q8_0 kept 8-bit, bitsandbytes'
//! quantize_blockwise), split into parts as weights.ts `blockwise8Parts` does and dispatched as
//! index.ts `blockwise8Forward`: gemv8 for one row of k a multiple of 16 (row groups of `lanes`
//! threads, 4 rows each; SUBGROUPS when `gpu.subgroups`), the generic GEMV / GEMM otherwise.
//! The int8 code (Q8_0) is converted in the kernel (INT8_CODE) and not uploaded. With
//! `int_activations` a Q8_0 decode runs gemv8 on 14-bit integer activations (INT_ACT, the CPU's
//! matmul_blockwise8_int semantics; DOT4 when `gpu.packed_dot`).
use super::{bias_part, check_bias, linear_steps, rows_per_part, forward_from_host, runs, LinearFormat, Part};
use crate::{Gpu, Params, Step};
use lowbit_core::blockwise8::check_blocksize;
use lowbit_core::kernels::matmul_blockwise8::is_int8_code;

/// matmul_blockwise8.wgsl gemv8: output rows per row group.
pub const GEMV8_ROWS: usize = 4;

/// A block-wise 8-bit weight `[n, k]` uploaded for matmul_blockwise8.wgsl.
#[derive(Debug)]
pub struct MatmulBlockwise8 {
    pub n: usize,
    pub k: usize,
    pub blocksize: usize,
    /// The code is the int8 code (INT8_CODE: no table on the device).
    pub int8_code: bool,
    pub parts: Vec<Part>,
    /// Bytes of codes + absmax (+ the code table) a forward reads.
    pub weight_bytes: usize,
    /// Decode on integer activations (INT_ACT) where it applies: see [`Self::uses_int_act`].
    pub int_activations: bool,
}

impl MatmulBlockwise8 {
    /// `q`: n·k codes of the flattened weight; `absmax`: one f32 per block of `blocksize`; `code`: 256 f32.
    #[allow(clippy::too_many_arguments)]
    pub fn new(gpu: &Gpu, q: &[u8], absmax: &[f32], code: &[f32], blocksize: usize, n: usize, k: usize, bias: Option<&[f32]>) -> Result<MatmulBlockwise8, String> {
        if n == 0 || k == 0 {
            return Err(format!("a linear weight needs positive sizes, got [{n}, {k}]"));
        }
        check_blocksize(blocksize).map_err(|e| e.to_string())?;
        if code.len() != 256 {
            return Err(format!("an 8-bit code must have 256 entries, got {}", code.len()));
        }
        if q.len() != n * k || absmax.len() != (n * k).div_ceil(blocksize) {
            return Err(format!("{} codes and {} absmax for [{n}, {k}] in blocks of {blocksize}", q.len(), absmax.len()));
        }
        if n * k > 0xffff_ffff - 16 {
            return Err(format!("[{n}, {k}] has more elements than 32-bit indices reach"));
        }
        check_bias(bias, n)?;
        let int8_code = is_int8_code(code);
        let mut parts = Vec::new();
        let mut weight_bytes = 0;
        // a part's codes start on a 16-byte boundary and are padded to 16 bytes (vec4<u32> loads)
        for (r0, r1) in runs(n, rows_per_part(gpu, 2 * k, 32, "block-wise 8-bit weight")?) {
            let f0 = r0 * k / 16 * 16;
            let mut bytes = vec![0u8; (r1 * k - f0).div_ceil(16) * 16];
            bytes[..r1 * k - f0].copy_from_slice(&q[f0..r1 * k]);
            let (b0, b1) = (r0 * k / blocksize, (r1 * k).div_ceil(blocksize));
            let mut words: Vec<f32> = if int8_code { Vec::new() } else { code.to_vec() };
            words.extend_from_slice(&absmax[b0..b1]);
            if ((b1 - b0) * 4) as u64 > gpu.weight_binding {
                return Err(format!("the absmax of {} rows exceed the storage binding limit", r1 - r0));
            }
            weight_bytes += bytes.len() + words.len() * 4 + bias.map_or(0, |_| (r1 - r0) * 4);
            parts.push(Part {
                n0: r0,
                rows: r1 - r0,
                data: gpu.storage("codes", &bytes),
                scales: Some(gpu.storage_f32("absmax", &words)),
                bias: bias_part(gpu, bias, r0, r1),
                flat_base: f0,
                block_base: b0,
            });
        }
        Ok(MatmulBlockwise8 { n, k, blocksize, int8_code, parts, weight_bytes, int_activations: false })
    }

    /// Whether a forward of m rows takes gemv8 (else the generic GEMV or GEMM).
    pub fn uses_gemv8(&self, m: usize) -> bool {
        m == 1 && self.k.is_multiple_of(16)
    }

    /// Whether a forward of m rows takes gemv8 on integer activations: asked for, the int8 code
    /// and k a multiple of 32 (the activation blocks; blocksizes are multiples of 32).
    pub fn uses_int_act(&self, m: usize) -> bool {
        self.int_activations && self.int8_code && self.uses_gemv8(m) && self.k.is_multiple_of(32)
    }

    pub fn steps(&self, gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, m: usize) -> Result<Vec<Step>, String> {
        let gemv8 = self.uses_gemv8(m);
        let int_act = self.uses_int_act(m);
        // threads per row group: the smallest power of two covering the row's steps (16
        // weights, 32 on integer activations), 8 to 64
        let step = if int_act { 32 } else { 16 };
        let mut lanes = 8;
        while gemv8 && lanes < 64 && lanes * step < self.k {
            lanes *= 2;
        }
        let mut defines = Vec::new();
        if self.int8_code {
            defines.push("INT8_CODE");
        }
        if int_act {
            defines.push("INT_ACT");
            if gpu.packed_dot {
                defines.push("DOT4");
            }
        }
        if gemv8 && gpu.subgroups {
            defines.push("SUBGROUPS");
        }
        let (shift, absmax_at) = (self.blocksize.trailing_zeros() as usize, if self.int8_code { 0 } else { 256 });
        let tail: &dyn for<'p> Fn(Params<'p>, &Part) -> Params<'p> = &|p, part| p.u("flat_base", part.flat_base).u("block_base", part.block_base).u("block_shift", shift).u("absmax_at", absmax_at).u("lanes", lanes);
        let gemv = if gemv8 { ("gemv8", GEMV8_ROWS * 64 / lanes) } else { ("gemv", 8) };
        linear_steps(gpu, &LinearFormat { file: "matmul_blockwise8.wgsl", defines, tail, weight: ("q", "absmax"), gemv }, &self.parts, self.n, self.k, m, x, y)
    }

    pub fn forward(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, String> {
        forward_from_host(gpu, x, m, self.k, self.n, |xb, yb| self.steps(gpu, xb, yb, m))
    }
}
