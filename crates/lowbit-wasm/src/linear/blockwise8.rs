//! Block-wise 8-bit layers: `W = code[q] · absmax[block]` over the flattened weight
//! (bitsandbytes `quantize_blockwise`, or GGUF Q8_0 as the int8 code with blocksize 32). The
//! int8 code is not stored per layer (the kernels' static table is used), and only it has the
//! integer-activation kernel.

use super::{LinearWeights, FAST_MAX_ROWS};
use lowbit_core::kernels::int_activations::IntActivations;
use lowbit_core::kernels::{matmul_blockwise8, matmul_blockwise8_int};
use lowbit_core::{Kernel, Result};

pub(super) struct Blockwise8 {
    q: Vec<u8>,
    absmax: Vec<f32>,
    /// None for the int8 code (`matmul_blockwise8::INT8_CODE`).
    code: Option<Box<[f32; 256]>>,
    blocksize: usize,
    n: usize,
    k: usize,
}

impl Blockwise8 {
    pub fn new(q: Vec<u8>, absmax: Vec<f32>, code: &[f32], blocksize: usize, n: usize, k: usize) -> Result<Blockwise8> {
        let w = matmul_blockwise8::Weight8::new(&q, &absmax, code, blocksize, n, k)?;
        let code = if w.is_int8_code() { None } else { Some(Box::new(*w.code())) };
        Ok(Blockwise8 { q, absmax, code, blocksize, n, k })
    }

    fn view(&self) -> Result<matmul_blockwise8::Weight8<'_>> {
        let code = self.code.as_deref().unwrap_or(&matmul_blockwise8::INT8_CODE);
        matmul_blockwise8::Weight8::new(&self.q, &self.absmax, code, self.blocksize, self.n, self.k)
    }
}

impl LinearWeights for Blockwise8 {
    fn n(&self) -> usize {
        self.n
    }

    fn k(&self) -> usize {
        self.k
    }

    fn bytes(&self) -> usize {
        self.q.len() + self.absmax.len() * 4 + self.code.as_ref().map_or(0, |c| c.len() * 4)
    }

    fn format(&self) -> String {
        if self.code.is_none() { "blockwise8-int8code" } else { "blockwise8" }.to_string()
    }

    fn integer_path(&self, rows: usize) -> bool {
        rows <= FAST_MAX_ROWS && self.view().is_ok_and(|w| matmul_blockwise8_int::supports(&w))
    }

    fn forward(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        matmul_blockwise8::matmul_blockwise8(x, m, &self.view()?, bias, out, Kernel::best())
    }

    fn forward_int(&self, xq: &IntActivations, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        matmul_blockwise8_int::matmul_blockwise8_int_quantized(xq, &self.view()?, bias, out, Kernel::best())
    }
}
