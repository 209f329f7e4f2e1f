//! LLM.int8() layers: CB `[n, k]` int8 with a scale per row (SCB); input columns with an
//! outlier above the threshold go through f32 (bitsandbytes' mixed decomposition).

use super::LinearWeights;
use lowbit_core::kernels::matmul_int8;
use lowbit_core::{Error, ErrorKind, Kernel, Result};

pub(super) struct Int8 {
    cb: Vec<i8>,
    scb: Vec<f32>,
    n: usize,
    k: usize,
    threshold: f32,
}

impl Int8 {
    pub fn new(cb: Vec<i8>, scb: Vec<f32>, n: usize, k: usize, threshold: f32) -> Result<Int8> {
        matmul_int8::WeightInt8::new(&cb, &scb, n, k)?;
        if !threshold.is_finite() || threshold < 0.0 {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("int8 threshold must be a finite number >= 0, got {threshold}")));
        }
        Ok(Int8 { cb, scb, n, k, threshold })
    }
}

impl LinearWeights for Int8 {
    fn n(&self) -> usize {
        self.n
    }

    fn k(&self) -> usize {
        self.k
    }

    fn bytes(&self) -> usize {
        self.cb.len() + self.scb.len() * 4
    }

    fn format(&self) -> String {
        "int8".to_string()
    }

    fn forward(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        let w = matmul_int8::WeightInt8 { cb: &self.cb, scb: &self.scb, n: self.n, k: self.k };
        matmul_int8::matmul_int8(x, m, &w, self.threshold, bias, out, Kernel::best())
    }
}
