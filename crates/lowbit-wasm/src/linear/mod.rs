//! The one wasm surface of linear layers. [`Linear`] holds a layer's weights in any format plus
//! its bias; each format is one file here implementing [`LinearWeights`] (its storage, its
//! kernels, whether the integer-activation path applies). [`Input`] holds activations that
//! several layers read (q/k/v, gate/up): copied into wasm once and quantized once for the
//! integer kernels. Adding a format: its file here and its constructor on `Linear`.

mod blockwise8;
mod dense;
mod four_bit;
mod int8;

use crate::{js_err, JsResult};
use core::cell::OnceCell;
use lowbit_core::kernels::int_activations::IntActivations;
use lowbit_core::{DType, Error, ErrorKind, Result};
use wasm_bindgen::prelude::*;

pub(crate) use dense::{check_shape, Table};

/// Up to this many activation rows the integer-activation kernels run (with fast kernels on);
/// longer inputs (prefill) take the exact panel GEMMs, which are faster there until the integer
/// kernels get register tiling (measured: 1 row 1.9×, 4 rows 2.3×, 64 rows 0.87× the exact
/// 4-bit kernels' speed).
pub(crate) const FAST_MAX_ROWS: usize = 4;

/// What every weight format provides to [`Linear`].
pub(crate) trait LinearWeights {
    /// Output features (rows of the weight).
    fn n(&self) -> usize;
    /// Input features.
    fn k(&self) -> usize;
    /// Bytes held, bias excluded.
    fn bytes(&self) -> usize;
    /// A short name of the format and its variant ("nf4", "nf4+dq", "blockwise8", "int8", "float16", ...).
    fn format(&self) -> String;
    /// Whether `rows` activation rows go through [`LinearWeights::forward_int`] when fast
    /// kernels are on (formats without an integer kernel keep the default).
    fn integer_path(&self, rows: usize) -> bool {
        let _ = rows;
        false
    }
    /// `out[m, n] = x · Wᵀ (+ bias)` on f32 activations: the exact kernels.
    fn forward(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()>;
    /// The same on activations quantized by [`IntActivations`]; only called where `integer_path` holds.
    fn forward_int(&self, xq: &IntActivations, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        let _ = (xq, bias, out);
        Err(Error::new(ErrorKind::InvalidArgument, format!("{} layers have no integer-activation kernel", self.format())))
    }
    /// bitsandbytes' compute dtype; only 4-bit layers have one.
    fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        if dtype == DType::F32 {
            return Ok(());
        }
        Err(Error::new(ErrorKind::InvalidArgument, format!("{} layers compute in float32; a compute dtype applies to 4-bit layers only", self.format())))
    }
}

fn invalid(msg: impl Into<String>) -> JsValue {
    js_err(Error::new(ErrorKind::InvalidArgument, msg))
}

pub(crate) fn checked_mul(a: usize, b: usize, what: &str) -> JsResult<usize> {
    a.checked_mul(b).ok_or_else(|| invalid(format!("{what}: {a} x {b} elements do not fit in memory")))
}

fn parse_kernels(kind: &str) -> JsResult<bool> {
    match kind {
        "fast" => Ok(true),
        "exact" => Ok(false),
        other => Err(invalid(format!("kernels must be 'fast' or 'exact', got '{other}'"))),
    }
}

/// A linear layer `[n (out), k (in)]` in any weight format, with an optional f32 bias.
#[wasm_bindgen]
pub struct Linear {
    w: Box<dyn LinearWeights>,
    bias: Option<Vec<f32>>,
    /// Integer activations and dots where the format has them; off until `setKernels("fast")`.
    fast: bool,
}

impl Linear {
    fn build(w: impl LinearWeights + 'static, bias: Option<Vec<f32>>) -> JsResult<Linear> {
        if let Some(b) = &bias {
            if b.len() != w.n() {
                return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("bias has {} elements but the layer has {} outputs", b.len(), w.n()))));
            }
        }
        Ok(Linear { w: Box::new(w), bias, fast: false })
    }

    fn run(&self, x: &[f32], m: usize, shared: Option<&Input>) -> JsResult<Vec<f32>> {
        let mut out = vec![0f32; checked_mul(m, self.w.n(), "output")?];
        let bias = self.bias.as_deref();
        if self.fast && self.w.integer_path(m) {
            match shared {
                Some(input) => self.w.forward_int(input.quantized().map_err(js_err)?, bias, &mut out),
                None => IntActivations::new(x, m, self.w.k()).and_then(|xq| self.w.forward_int(&xq, bias, &mut out)),
            }
        } else {
            self.w.forward(x, m, bias, &mut out)
        }
        .map_err(js_err)?;
        Ok(out)
    }
}

#[wasm_bindgen]
impl Linear {
    /// A 4-bit (NF4 / FP4 / INT4) layer with f32 absmax per block of `blocksize` weights
    /// (bitsandbytes' flattened row-major blocks).
    #[wasm_bindgen(js_name = fourBit)]
    pub fn four_bit(packed: Vec<u8>, absmax: Vec<f32>, quant_type: &str, blocksize: u32, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<Linear> {
        Linear::build(four_bit::FourBit::new(packed, absmax, quant_type, blocksize as usize, n as usize, k as usize).map_err(js_err)?, bias)
    }

    /// A 4-bit layer whose absmax stays double-quantized: `codes` (one per block), the 256-entry
    /// `code`, the `nested` absmax of each run of `nested_blocksize` codes, `offset` and
    /// `nested_dtype`. For a slice of a weight starting at global block b0, pass the nested
    /// entries from `b0 / nested_blocksize` on and `phase = b0 % nested_blocksize`.
    #[wasm_bindgen(js_name = fourBitNested)]
    #[allow(clippy::too_many_arguments)]
    pub fn four_bit_nested(packed: Vec<u8>, codes: Vec<u8>, code: Vec<f32>, nested: Vec<f32>, nested_blocksize: u32, phase: u32, offset: f32, nested_dtype: &str, quant_type: &str, blocksize: u32, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<Linear> {
        let dtype = crate::dtype_of(nested_dtype)?;
        let nested = four_bit::NestedParts { codes, code, nested, nested_blocksize: nested_blocksize as usize, phase: phase as usize, offset, dtype };
        Linear::build(four_bit::FourBit::new_nested(packed, nested, quant_type, blocksize as usize, n as usize, k as usize).map_err(js_err)?, bias)
    }

    /// A block-wise 8-bit layer: `W = code[q] · absmax[block]` over the flattened weight
    /// (bitsandbytes `quantize_blockwise`, or GGUF Q8_0 with the int8 code and blocksize 32).
    pub fn blockwise8(q: Vec<u8>, absmax: Vec<f32>, code: &[f32], blocksize: u32, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<Linear> {
        Linear::build(blockwise8::Blockwise8::new(q, absmax, code, blocksize as usize, n as usize, k as usize).map_err(js_err)?, bias)
    }

    /// An unquantized f32 layer.
    pub fn dense(w: Vec<f32>, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<Linear> {
        Linear::build(dense::Dense::new(Table::F32(w), n as usize, k as usize)?, bias)
    }

    /// An unquantized layer of f16 ("float16") or bf16 ("bfloat16") bit patterns.
    #[wasm_bindgen(js_name = denseHalf)]
    pub fn dense_half(bits: &[u16], dtype: &str, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<Linear> {
        Linear::build(dense::Dense::new(Table::from_bits(bits, dtype)?, n as usize, k as usize)?, bias)
    }

    /// An LLM.int8() layer: CB `[n, k]` int8, SCB `[n]`, outlier threshold.
    pub fn int8(cb: Vec<i8>, scb: Vec<f32>, n: u32, k: u32, threshold: f32, bias: Option<Vec<f32>>) -> JsResult<Linear> {
        Linear::build(int8::Int8::new(cb, scb, n as usize, k as usize, threshold).map_err(js_err)?, bias)
    }

    /// `x[m, k] · Wᵀ (+ bias)` -> `[m, n]`.
    pub fn forward(&self, x: &[f32], m: u32) -> JsResult<Vec<f32>> {
        self.run(x, m as usize, None)
    }

    /// The same on an [`Input`] several layers share (quantized at most once for all of them).
    #[wasm_bindgen(js_name = forwardInput)]
    pub fn forward_input(&self, input: &Input) -> JsResult<Vec<f32>> {
        if input.k != self.w.k() {
            return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("the input has {} columns but the layer has {} inputs", input.k, self.w.k()))));
        }
        self.run(&input.x, input.m, Some(input))
    }

    /// "fast": integer activations and dots where the format has them (4-bit with an f32
    /// compute dtype and K a multiple of 32, block-wise 8-bit with the int8 code) for up to
    /// FAST_MAX_ROWS rows; "exact" (the default): the f32 kernels that match
    /// dequantize-then-matmul.
    #[wasm_bindgen(js_name = setKernels)]
    pub fn set_kernels(&mut self, kind: &str) -> JsResult<()> {
        self.fast = parse_kernels(kind)?;
        Ok(())
    }

    /// Which kernels `forward` runs for one row: "fast" or "exact".
    #[wasm_bindgen(getter)]
    pub fn kernels(&self) -> String {
        if self.fast && self.w.integer_path(1) { "fast" } else { "exact" }.to_string()
    }

    /// The compute dtype of a 4-bit layer ("float32", "float16" or "bfloat16"): with a half
    /// dtype the input, the dequantized weight, the bias and the output are rounded to it, as
    /// bitsandbytes does. Other formats accept "float32" only.
    #[wasm_bindgen(js_name = setComputeDtype)]
    pub fn set_compute_dtype(&mut self, dtype: &str) -> JsResult<()> {
        self.w.set_compute_dtype(crate::dtype_of(dtype)?).map_err(js_err)
    }

    /// The weight format ("nf4", "nf4+dq", "blockwise8", "int8", "float16", ...).
    #[wasm_bindgen(getter)]
    pub fn format(&self) -> String {
        self.w.format()
    }

    pub fn bytes(&self) -> f64 {
        (self.w.bytes() + self.bias.as_ref().map_or(0, |b| b.len() * 4)) as f64
    }

    #[wasm_bindgen(getter, js_name = outFeatures)]
    pub fn out_features(&self) -> u32 {
        self.w.n() as u32
    }

    #[wasm_bindgen(getter, js_name = inFeatures)]
    pub fn in_features(&self) -> u32 {
        self.w.k() as u32
    }
}

/// Activations `[m, k]` that several layers read: in wasm memory once, quantized for the
/// integer kernels on first use and then shared.
#[wasm_bindgen]
pub struct Input {
    x: Vec<f32>,
    m: usize,
    k: usize,
    quantized: OnceCell<IntActivations>,
}

impl Input {
    fn quantized(&self) -> Result<&IntActivations> {
        if let Some(q) = self.quantized.get() {
            return Ok(q);
        }
        let q = IntActivations::new(&self.x, self.m, self.k)?;
        Ok(self.quantized.get_or_init(|| q))
    }
}

#[wasm_bindgen]
impl Input {
    /// `x` holds `m` rows.
    #[wasm_bindgen(constructor)]
    pub fn new(x: Vec<f32>, m: u32) -> JsResult<Input> {
        let m = m as usize;
        if m == 0 || x.is_empty() {
            return Err(js_err(Error::new(ErrorKind::EmptyTensor, format!("an input of {} values in {m} rows", x.len()))));
        }
        if !x.len().is_multiple_of(m) {
            return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("{} values do not split into {m} rows", x.len()))));
        }
        Ok(Input { m, k: x.len() / m, x, quantized: OnceCell::new() })
    }

    #[wasm_bindgen(getter)]
    pub fn rows(&self) -> u32 {
        self.m as u32
    }
}
