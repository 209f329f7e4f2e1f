//! Unquantized layers in their stored dtype (f32, f16 or bf16: widened exactly in the kernels,
//! never copied to f32), and the [`Table`] storage they share with embeddings.

use super::{checked_mul, LinearWeights};
use crate::{js_err, JsResult};
use lowbit_core::kernels::{embedding, matmul_dense};
use lowbit_core::{bf16, f16, DType, Error, ErrorKind, Kernel, Result};

/// An f32 / f16 / bf16 matrix `[rows, cols]` kept in its stored dtype.
pub(crate) enum Table {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl Table {
    pub fn from_bits(bits: &[u16], dtype: &str) -> JsResult<Table> {
        match DType::from_torch_name(dtype).map_err(js_err)? {
            DType::F16 => Ok(Table::F16(bits.iter().map(|&b| f16::from_bits(b)).collect())),
            DType::BF16 => Ok(Table::BF16(bits.iter().map(|&b| bf16::from_bits(b)).collect())),
            other => Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("16-bit weights must be float16 or bfloat16, not {}", other.torch_name())))),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Table::F32(v) => v.len(),
            Table::F16(v) => v.len(),
            Table::BF16(v) => v.len(),
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Table::F32(v) => v.len() * 4,
            Table::F16(v) => v.len() * 2,
            Table::BF16(v) => v.len() * 2,
        }
    }

    pub fn dtype(&self) -> &'static str {
        match self {
            Table::F32(_) => "float32",
            Table::F16(_) => "float16",
            Table::BF16(_) => "bfloat16",
        }
    }

    /// `out[m, n] = x[m, k] · selfᵀ (+ bias)` with self `[n, k]`.
    pub fn matmul_into(&self, x: &[f32], m: usize, n: usize, k: usize, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        let kern = Kernel::best();
        match self {
            Table::F32(w) => matmul_dense::matmul_dense(x, m, w, n, k, bias, out, kern),
            Table::F16(w) => matmul_dense::matmul_dense(x, m, w, n, k, bias, out, kern),
            Table::BF16(w) => matmul_dense::matmul_dense(x, m, w, n, k, bias, out, kern),
        }
    }

    /// `x[m, k] · selfᵀ` as a new vector.
    pub fn matmul(&self, x: &[f32], m: usize, n: usize, k: usize) -> JsResult<Vec<f32>> {
        let mut out = vec![0f32; checked_mul(m, n, "output")?];
        self.matmul_into(x, m, n, k, None, &mut out).map_err(js_err)?;
        Ok(out)
    }

    /// Rows `ids` -> `[ids.length, dim]`.
    pub fn lookup(&self, dim: usize, ids: &[u32]) -> JsResult<Vec<f32>> {
        let mut out = vec![0f32; checked_mul(ids.len(), dim, "embedding output")?];
        match self {
            Table::F32(t) => embedding::embedding(t, dim, ids, &mut out),
            Table::F16(t) => embedding::embedding(t, dim, ids, &mut out),
            Table::BF16(t) => embedding::embedding(t, dim, ids, &mut out),
        }
        .map_err(js_err)?;
        Ok(out)
    }
}

/// Checks that a table holds `rows` x `cols` elements.
pub(crate) fn check_shape(what: &str, len: usize, rows: usize, cols: usize) -> JsResult<()> {
    if rows == 0 || cols == 0 {
        return Err(js_err(Error::new(ErrorKind::EmptyTensor, format!("{what} has shape [{rows}, {cols}]"))));
    }
    let want = checked_mul(rows, cols, what)?;
    if len != want {
        return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("{what} has {len} elements but [{rows}, {cols}] needs {want}"))));
    }
    Ok(())
}

pub(super) struct Dense {
    w: Table,
    n: usize,
    k: usize,
}

impl Dense {
    pub fn new(w: Table, n: usize, k: usize) -> JsResult<Dense> {
        check_shape("dense weight", w.len(), n, k)?;
        Ok(Dense { w, n, k })
    }
}

impl LinearWeights for Dense {
    fn n(&self) -> usize {
        self.n
    }

    fn k(&self) -> usize {
        self.k
    }

    fn bytes(&self) -> usize {
        self.w.bytes()
    }

    fn format(&self) -> String {
        self.w.dtype().to_string()
    }

    fn forward(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        self.w.matmul_into(x, m, self.n, self.k, bias, out)
    }
}
