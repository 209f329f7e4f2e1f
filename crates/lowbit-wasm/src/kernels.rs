//! wasm-bindgen surface of the CPU inference kernels (`lowbit_core::kernels`).
//!
//! Weights live in wasm memory inside the classes below (`Linear4`, `LinearDense`, `LinearInt8`,
//! `Embedding`, `KvCache`) and are never copied per call; activations are passed in as `&[f32]`
//! and come back as new `Float32Array`s (`Vec<f32>`). Every error is a LowbitError (`js_err`).

use crate::{js_err, JsResult};
use lowbit_core::kernels::{activation, attention, embedding, matmul4, matmul4_half, matmul4_int, matmul_blockwise8, matmul_blockwise8_int, matmul_dense, matmul_int8, norm, rope};
use lowbit_core::codebook::dynamic_map_signed;
use lowbit_core::{bf16, f16, DType, Error, ErrorKind, Kernel, QuantType4};
use wasm_bindgen::prelude::*;

fn invalid(msg: impl Into<String>) -> JsValue {
    js_err(Error::new(ErrorKind::InvalidArgument, msg))
}

fn checked_mul(a: usize, b: usize, what: &str) -> JsResult<usize> {
    a.checked_mul(b).ok_or_else(|| invalid(format!("{what}: {a} x {b} elements do not fit in memory")))
}

/// An f32 / f16 / bf16 matrix `[rows, cols]` kept in its stored dtype.
enum Table {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl Table {
    fn from_f32(v: Vec<f32>) -> Table {
        Table::F32(v)
    }

    fn from_bits(bits: &[u16], dtype: &str) -> JsResult<Table> {
        match DType::from_torch_name(dtype).map_err(js_err)? {
            DType::F16 => Ok(Table::F16(bits.iter().map(|&b| f16::from_bits(b)).collect())),
            DType::BF16 => Ok(Table::BF16(bits.iter().map(|&b| bf16::from_bits(b)).collect())),
            other => Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("16-bit weights must be float16 or bfloat16, not {}", other.torch_name())))),
        }
    }

    fn len(&self) -> usize {
        match self {
            Table::F32(v) => v.len(),
            Table::F16(v) => v.len(),
            Table::BF16(v) => v.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Table::F32(v) => v.len() * 4,
            Table::F16(v) => v.len() * 2,
            Table::BF16(v) => v.len() * 2,
        }
    }

    fn dtype(&self) -> &'static str {
        match self {
            Table::F32(_) => "float32",
            Table::F16(_) => "float16",
            Table::BF16(_) => "bfloat16",
        }
    }

    /// `x[m, k] · selfᵀ` with self `[n, k]`.
    fn matmul(&self, x: &[f32], m: usize, n: usize, k: usize, bias: Option<&[f32]>) -> JsResult<Vec<f32>> {
        let mut out = vec![0f32; checked_mul(m, n, "output")?];
        let kern = Kernel::best();
        match self {
            Table::F32(w) => matmul_dense::matmul_dense(x, m, w, n, k, bias, &mut out, kern),
            Table::F16(w) => matmul_dense::matmul_dense(x, m, w, n, k, bias, &mut out, kern),
            Table::BF16(w) => matmul_dense::matmul_dense(x, m, w, n, k, bias, &mut out, kern),
        }
        .map_err(js_err)?;
        Ok(out)
    }

    fn lookup(&self, dim: usize, ids: &[u32]) -> JsResult<Vec<f32>> {
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

fn check_shape(what: &str, len: usize, rows: usize, cols: usize) -> JsResult<()> {
    if rows == 0 || cols == 0 {
        return Err(js_err(Error::new(ErrorKind::EmptyTensor, format!("{what} has shape [{rows}, {cols}]"))));
    }
    let want = checked_mul(rows, cols, what)?;
    if len != want {
        return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("{what} has {len} elements but [{rows}, {cols}] needs {want}"))));
    }
    Ok(())
}

fn check_bias(bias: &Option<Vec<f32>>, n: usize) -> JsResult<()> {
    if let Some(b) = bias {
        if b.len() != n {
            return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("bias has {} elements but the layer has {n} outputs", b.len()))));
        }
    }
    Ok(())
}

/// A 4-bit layer's absmax as held: f32 per block, or double-quantized (kept compressed, each
/// block's absmax rebuilt by the kernels as they reach it: `matmul4::NestedAbsmax4`). The nested
/// code is stored only when it is not bitsandbytes' signed dynamic map (the one every
/// double-quantized checkpoint uses), so a layer holds about 1 byte per block.
enum Absmax4Owned {
    F32(Vec<f32>),
    Nested { codes: Vec<u8>, code: Option<Box<[f32; 256]>>, nested: Vec<f32>, nested_blocksize: usize, phase: usize, offset: f32, dtype: DType },
}

impl Absmax4Owned {
    fn view(&self) -> matmul4::Absmax4<'_> {
        match self {
            Absmax4Owned::F32(a) => matmul4::Absmax4::F32(a),
            Absmax4Owned::Nested { codes, code, nested, nested_blocksize, phase, offset, dtype } => matmul4::Absmax4::Nested(matmul4::NestedAbsmax4 {
                codes,
                code: code.as_deref().unwrap_or(dynamic_map_signed()),
                nested,
                nested_blocksize: *nested_blocksize,
                phase: *phase,
                offset: *offset,
                dtype: *dtype,
            }),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Absmax4Owned::F32(a) => a.len() * 4,
            Absmax4Owned::Nested { codes, code, nested, .. } => codes.len() + code.as_ref().map_or(0, |c| c.len() * 4) + nested.len() * 4,
        }
    }
}

fn parse_kernels(kind: &str) -> JsResult<bool> {
    match kind {
        "fast" => Ok(true),
        "exact" => Ok(false),
        other => Err(invalid(format!("kernels must be 'fast' or 'exact', got '{other}'"))),
    }
}

/// Up to this many activation rows the fast 4-bit kernels run; longer inputs (prefill) take the
/// exact panel GEMM, which is faster there until the integer kernel gets register tiling
/// (measured: 1 row 1.9×, 4 rows 2.3×, 64 rows 0.87× the exact kernels' speed).
const FAST_MAX_ROWS: usize = 4;

/// A 4-bit (NF4 / FP4 / INT4) linear layer `[n (out), k (in)]` with its absmax per block (f32,
/// or double-quantized: [`Linear4::new_nested`]).
#[wasm_bindgen]
pub struct Linear4 {
    packed: Vec<u8>,
    absmax: Absmax4Owned,
    quant_type: QuantType4,
    blocksize: usize,
    n: usize,
    k: usize,
    bias: Option<Vec<f32>>,
    /// bnb_4bit_compute_dtype: F32 (the fast fused kernel) or F16 / BF16 (matmul4_half).
    compute: DType,
    /// With an f32 compute dtype: integer activations and dots (matmul4_int) where the
    /// shape allows, instead of the exact f32 kernels. Off until `setKernels("fast")`.
    fast: bool,
}

#[wasm_bindgen]
impl Linear4 {
    #[wasm_bindgen(constructor)]
    pub fn new(packed: Vec<u8>, absmax: Vec<f32>, quant_type: &str, blocksize: u32, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<Linear4> {
        let quant_type = QuantType4::parse(quant_type).map_err(js_err)?;
        let (blocksize, n, k) = (blocksize as usize, n as usize, k as usize);
        matmul4::Weight4::new(&packed, &absmax, quant_type, blocksize, n, k).map_err(js_err)?;
        check_bias(&bias, n)?;
        Ok(Linear4 { packed, absmax: Absmax4Owned::F32(absmax), quant_type, blocksize, n, k, bias, compute: DType::F32, fast: false })
    }

    /// A layer whose absmax stays double-quantized: `codes` (one per block), the 256-entry
    /// `code`, the `nested` absmax of each run of `nested_blocksize` codes, `offset` and
    /// `nested_dtype`. For a slice of a weight starting at global block b0, pass the nested
    /// entries from `b0 / nested_blocksize` on and `phase = b0 % nested_blocksize`.
    #[wasm_bindgen(js_name = newNested)]
    #[allow(clippy::too_many_arguments)]
    pub fn new_nested(packed: Vec<u8>, codes: Vec<u8>, code: Vec<f32>, nested: Vec<f32>, nested_blocksize: u32, phase: u32, offset: f32, nested_dtype: &str, quant_type: &str, blocksize: u32, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<Linear4> {
        let quant_type = QuantType4::parse(quant_type).map_err(js_err)?;
        let dtype = crate::dtype_of(nested_dtype)?;
        let (blocksize, n, k, nested_blocksize, phase) = (blocksize as usize, n as usize, k as usize, nested_blocksize as usize, phase as usize);
        let a = matmul4::NestedAbsmax4::new(&codes, &code, &nested, nested_blocksize, phase, offset, dtype).map_err(js_err)?;
        matmul4::Weight4::with_absmax(&packed, matmul4::Absmax4::Nested(a), quant_type, blocksize, n, k).map_err(js_err)?;
        check_bias(&bias, n)?;
        // the same bits as the static map: use it (the results cannot differ)
        let builtin = code.iter().zip(dynamic_map_signed()).all(|(a, b)| a.to_bits() == b.to_bits());
        let code: Option<Box<[f32; 256]>> = if builtin { None } else { Some(code.into_boxed_slice().try_into().map_err(|_| invalid("the nested code must have 256 entries"))?) };
        let absmax = Absmax4Owned::Nested { codes, code, nested, nested_blocksize, phase, offset, dtype };
        Ok(Linear4 { packed, absmax, quant_type, blocksize, n, k, bias, compute: DType::F32, fast: false })
    }

    /// Whether the absmax is kept double-quantized.
    ///
    /// (Its nested code is held per layer only when it differs from the signed dynamic map.)
    #[wasm_bindgen(getter)]
    pub fn nested(&self) -> bool {
        matches!(self.absmax, Absmax4Owned::Nested { .. })
    }

    /// The compute dtype ("float32", "float16" or "bfloat16"): with a half dtype the input, the
    /// dequantized weight, the bias and the output are rounded to it, as bitsandbytes does.
    #[wasm_bindgen(js_name = setComputeDtype)]
    pub fn set_compute_dtype(&mut self, dtype: &str) -> JsResult<()> {
        self.compute = crate::dtype_of(dtype)?;
        Ok(())
    }

    /// "fast": integer activations and integer dot products (lowbit_core::kernels::matmul4_int),
    /// used with the f32 compute dtype when K is a multiple of 32 and for up to FAST_MAX_ROWS
    /// rows; "exact": the f32 kernels that match dequantize-then-matmul (the default).
    #[wasm_bindgen(js_name = setKernels)]
    pub fn set_kernels(&mut self, kind: &str) -> JsResult<()> {
        self.fast = parse_kernels(kind)?;
        Ok(())
    }

    /// Which kernels `forward` runs for one row: "fast" or "exact".
    #[wasm_bindgen(getter)]
    pub fn kernels(&self) -> String {
        let w = matmul4::Weight4 { packed: &self.packed, absmax: self.absmax.view(), quant_type: self.quant_type, blocksize: self.blocksize, n: self.n, k: self.k };
        if self.fast && self.compute == DType::F32 && matmul4_int::supports(&w) { "fast" } else { "exact" }.to_string()
    }

    /// `x[m, k] · Wᵀ (+ bias)` -> `[m, n]`.
    pub fn forward(&self, x: &[f32], m: u32) -> JsResult<Vec<f32>> {
        let w = matmul4::Weight4 { packed: &self.packed, absmax: self.absmax.view(), quant_type: self.quant_type, blocksize: self.blocksize, n: self.n, k: self.k };
        let mut out = vec![0f32; checked_mul(m as usize, self.n, "output")?];
        let (m, bias) = (m as usize, self.bias.as_deref());
        match self.compute {
            DType::F16 => matmul4_half::matmul4_half::<f16>(x, m, &w, bias, &mut out, Kernel::best()),
            DType::BF16 => matmul4_half::matmul4_half::<bf16>(x, m, &w, bias, &mut out, Kernel::best()),
            _ if self.fast && m <= FAST_MAX_ROWS && matmul4_int::supports(&w) => matmul4_int::matmul4_int(x, m, &w, bias, &mut out, Kernel::best()),
            _ => matmul4::matmul4(x, m, &w, bias, &mut out, Kernel::best()),
        }
        .map_err(js_err)?;
        Ok(out)
    }

    pub fn bytes(&self) -> f64 {
        (self.packed.len() + self.absmax.bytes() + self.bias.as_ref().map_or(0, |b| b.len() * 4)) as f64
    }

    #[wasm_bindgen(getter, js_name = outFeatures)]
    pub fn out_features(&self) -> u32 {
        self.n as u32
    }

    #[wasm_bindgen(getter, js_name = inFeatures)]
    pub fn in_features(&self) -> u32 {
        self.k as u32
    }
}


/// A block-wise 8-bit linear layer `[n (out), k (in)]`: `W = code[q] * absmax[block]` over the
/// flattened weight (bitsandbytes `quantize_blockwise`, or GGUF Q8_0 with the int8 code and
/// blocksize 32). The int8 code is not stored per layer (the kernel's static table is used).
#[wasm_bindgen]
pub struct LinearBlockwise8 {
    q: Vec<u8>,
    absmax: Vec<f32>,
    /// None for the int8 code (`matmul_blockwise8::INT8_CODE`).
    code: Option<Box<[f32; 256]>>,
    blocksize: usize,
    n: usize,
    k: usize,
    bias: Option<Vec<f32>>,
    /// Integer activations and dots (matmul_blockwise8_int) for the int8 code; see Linear4::fast.
    fast: bool,
}

#[wasm_bindgen]
impl LinearBlockwise8 {
    #[wasm_bindgen(constructor)]
    pub fn new(q: Vec<u8>, absmax: Vec<f32>, code: &[f32], blocksize: u32, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<LinearBlockwise8> {
        let (blocksize, n, k) = (blocksize as usize, n as usize, k as usize);
        let w = matmul_blockwise8::Weight8::new(&q, &absmax, code, blocksize, n, k).map_err(js_err)?;
        let code = if w.is_int8_code() { None } else { Some(Box::new(*w.code())) };
        check_bias(&bias, n)?;
        Ok(LinearBlockwise8 { q, absmax, code, blocksize, n, k, bias, fast: false })
    }

    /// `x[m, k] · Wᵀ (+ bias)` -> `[m, n]`.
    pub fn forward(&self, x: &[f32], m: u32) -> JsResult<Vec<f32>> {
        let code = self.code.as_deref().unwrap_or(&matmul_blockwise8::INT8_CODE);
        let w = matmul_blockwise8::Weight8::new(&self.q, &self.absmax, code, self.blocksize, self.n, self.k).map_err(js_err)?;
        let mut out = vec![0f32; checked_mul(m as usize, self.n, "output")?];
        if self.fast && m as usize <= FAST_MAX_ROWS && matmul_blockwise8_int::supports(&w) {
            matmul_blockwise8_int::matmul_blockwise8_int(x, m as usize, &w, self.bias.as_deref(), &mut out, Kernel::best()).map_err(js_err)?;
        } else {
            matmul_blockwise8::matmul_blockwise8(x, m as usize, &w, self.bias.as_deref(), &mut out, Kernel::best()).map_err(js_err)?;
        }
        Ok(out)
    }

    /// "fast" (integer activations and dots, for the int8 code: GGUF Q8_0) or "exact" (the default).
    #[wasm_bindgen(js_name = setKernels)]
    pub fn set_kernels(&mut self, kind: &str) -> JsResult<()> {
        self.fast = parse_kernels(kind)?;
        Ok(())
    }

    pub fn bytes(&self) -> f64 {
        (self.q.len() + self.absmax.len() * 4 + self.code.as_ref().map_or(0, |c| c.len() * 4) + self.bias.as_ref().map_or(0, |b| b.len() * 4)) as f64
    }

    /// True when the code is the int8 code (GGUF Q8_0's values).
    #[wasm_bindgen(getter, js_name = int8Code)]
    pub fn int8_code(&self) -> bool {
        self.code.is_none()
    }

    #[wasm_bindgen(getter, js_name = outFeatures)]
    pub fn out_features(&self) -> u32 {
        self.n as u32
    }

    #[wasm_bindgen(getter, js_name = inFeatures)]
    pub fn in_features(&self) -> u32 {
        self.k as u32
    }
}

/// An unquantized linear layer `[n, k]` in f32, f16 or bf16.
#[wasm_bindgen]
pub struct LinearDense {
    w: Table,
    n: usize,
    k: usize,
    bias: Option<Vec<f32>>,
}

impl LinearDense {
    fn build(w: Table, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<LinearDense> {
        let (n, k) = (n as usize, k as usize);
        check_shape("dense weight", w.len(), n, k)?;
        check_bias(&bias, n)?;
        Ok(LinearDense { w, n, k, bias })
    }
}

#[wasm_bindgen]
impl LinearDense {
    /// f32 weight `[n, k]`.
    #[wasm_bindgen(constructor)]
    pub fn new(w: Vec<f32>, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<LinearDense> {
        LinearDense::build(Table::from_f32(w), n, k, bias)
    }

    /// f16 ("float16") or bf16 ("bfloat16") bit patterns `[n, k]`.
    #[wasm_bindgen(js_name = fromHalf)]
    pub fn from_half(bits: &[u16], dtype: &str, n: u32, k: u32, bias: Option<Vec<f32>>) -> JsResult<LinearDense> {
        LinearDense::build(Table::from_bits(bits, dtype)?, n, k, bias)
    }

    pub fn forward(&self, x: &[f32], m: u32) -> JsResult<Vec<f32>> {
        self.w.matmul(x, m as usize, self.n, self.k, self.bias.as_deref())
    }

    pub fn bytes(&self) -> f64 {
        (self.w.bytes() + self.bias.as_ref().map_or(0, |b| b.len() * 4)) as f64
    }

    /// "float32", "float16" or "bfloat16".
    #[wasm_bindgen(getter)]
    pub fn dtype(&self) -> String {
        self.w.dtype().to_string()
    }
}

/// An LLM.int8() linear layer: CB `[n, k]` int8, SCB `[n]`.
#[wasm_bindgen]
pub struct LinearInt8 {
    cb: Vec<i8>,
    scb: Vec<f32>,
    n: usize,
    k: usize,
    threshold: f32,
    bias: Option<Vec<f32>>,
}

#[wasm_bindgen]
impl LinearInt8 {
    #[wasm_bindgen(constructor)]
    pub fn new(cb: Vec<i8>, scb: Vec<f32>, n: u32, k: u32, threshold: f32, bias: Option<Vec<f32>>) -> JsResult<LinearInt8> {
        let (n, k) = (n as usize, k as usize);
        matmul_int8::WeightInt8::new(&cb, &scb, n, k).map_err(js_err)?;
        if !threshold.is_finite() || threshold < 0.0 {
            return Err(invalid(format!("int8 threshold must be a finite number >= 0, got {threshold}")));
        }
        check_bias(&bias, n)?;
        Ok(LinearInt8 { cb, scb, n, k, threshold, bias })
    }

    pub fn forward(&self, x: &[f32], m: u32) -> JsResult<Vec<f32>> {
        let w = matmul_int8::WeightInt8 { cb: &self.cb, scb: &self.scb, n: self.n, k: self.k };
        let mut out = vec![0f32; checked_mul(m as usize, self.n, "output")?];
        matmul_int8::matmul_int8(x, m as usize, &w, self.threshold, self.bias.as_deref(), &mut out, Kernel::best()).map_err(js_err)?;
        Ok(out)
    }

    pub fn bytes(&self) -> f64 {
        (self.cb.len() + self.scb.len() * 4 + self.bias.as_ref().map_or(0, |b| b.len() * 4)) as f64
    }
}

/// An embedding table `[vocab, dim]` (f32, f16 or bf16), also a tied output projection.
#[wasm_bindgen]
pub struct Embedding {
    t: Table,
    vocab: usize,
    dim: usize,
}

#[wasm_bindgen]
impl Embedding {
    #[wasm_bindgen(constructor)]
    pub fn new(table: Vec<f32>, vocab: u32, dim: u32) -> JsResult<Embedding> {
        check_shape("embedding table", table.len(), vocab as usize, dim as usize)?;
        Ok(Embedding { t: Table::from_f32(table), vocab: vocab as usize, dim: dim as usize })
    }

    #[wasm_bindgen(js_name = fromHalf)]
    pub fn from_half(bits: &[u16], dtype: &str, vocab: u32, dim: u32) -> JsResult<Embedding> {
        check_shape("embedding table", bits.len(), vocab as usize, dim as usize)?;
        Ok(Embedding { t: Table::from_bits(bits, dtype)?, vocab: vocab as usize, dim: dim as usize })
    }

    /// Rows `ids` of the table -> `[ids.length, dim]`.
    pub fn lookup(&self, ids: &[u32]) -> JsResult<Vec<f32>> {
        self.t.lookup(self.dim, ids)
    }

    /// `x[m, dim] · tableᵀ` -> `[m, vocab]`.
    pub fn project(&self, x: &[f32], m: u32) -> JsResult<Vec<f32>> {
        self.t.matmul(x, m as usize, self.vocab, self.dim, None)
    }

    pub fn bytes(&self) -> f64 {
        self.t.bytes() as f64
    }
}

/// K and V of one attention layer, `[max_pos, n_kv_heads, head_dim]` each, in f32.
#[wasm_bindgen]
pub struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
    max_pos: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

#[wasm_bindgen]
impl KvCache {
    #[wasm_bindgen(constructor)]
    pub fn new(max_pos: u32, n_kv_heads: u32, head_dim: u32) -> JsResult<KvCache> {
        let (max_pos, n_kv_heads, head_dim) = (max_pos as usize, n_kv_heads as usize, head_dim as usize);
        if max_pos == 0 || n_kv_heads == 0 || head_dim == 0 {
            return Err(js_err(Error::new(ErrorKind::EmptyTensor, format!("kv cache of {max_pos} positions, {n_kv_heads} kv heads, head_dim {head_dim}"))));
        }
        let len = checked_mul(max_pos, checked_mul(n_kv_heads, head_dim, "kv cache")?, "kv cache")?;
        Ok(KvCache { k: vec![0f32; len], v: vec![0f32; len], max_pos, n_kv_heads, head_dim })
    }

    /// Writes k, v (`[n_new, n_kv_heads * head_dim]`) at positions `[start, start + n_new)`, then
    /// causal attention of q (`[n_new, n_heads * head_dim]`) over `[0, start + n_new)`;
    /// `softcap` / `window`: attention logit soft-capping and a sliding window (Gemma 2 / 3).
    #[allow(clippy::too_many_arguments)]
    pub fn attend(&mut self, q: &[f32], k: &[f32], v: &[f32], n_new: u32, start: u32, n_heads: u32, scale: Option<f32>, softcap: Option<f32>, window: Option<u32>) -> JsResult<Vec<f32>> {
        let (n_new, start, n_heads) = (n_new as usize, start as usize, n_heads as usize);
        if n_new == 0 || n_heads == 0 {
            return Err(js_err(Error::new(ErrorKind::EmptyTensor, format!("attention with {n_new} tokens and {n_heads} heads"))));
        }
        if !n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(invalid(format!("{n_heads} query heads are not a multiple of {} kv heads", self.n_kv_heads)));
        }
        match start.checked_add(n_new) {
            Some(e) if e <= self.max_pos => {}
            _ => return Err(invalid(format!("positions {start}..{} exceed the kv cache capacity of {} positions", start as u64 + n_new as u64, self.max_pos))),
        }
        let kv_row = self.n_kv_heads * self.head_dim;
        let q_row = checked_mul(n_heads, self.head_dim, "q")?;
        check_shape("q", q.len(), n_new, q_row)?;
        check_shape("k", k.len(), n_new, kv_row)?;
        check_shape("v", v.len(), n_new, kv_row)?;
        let at = start * kv_row;
        self.k[at..at + k.len()].copy_from_slice(k);
        self.v[at..at + v.len()].copy_from_slice(v);
        let shape = attention::AttentionShape { n_heads, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim, max_pos: self.max_pos };
        let mut out = vec![0f32; q.len()];
        let extras = attention::AttentionExtras { softcap, window: window.map(|w| w as usize) };
        attention::attention_with(q, n_new, start, &self.k, &self.v, &shape, scale, extras, &mut out).map_err(js_err)?;
        Ok(out)
    }

    pub fn bytes(&self) -> f64 {
        ((self.k.len() + self.v.len()) * 4) as f64
    }
}

fn check_rows(x: &[f32], hidden: u32) -> JsResult<usize> {
    let hidden = hidden as usize;
    if hidden == 0 || x.is_empty() || !x.len().is_multiple_of(hidden) {
        return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("input has {} elements, not a non-empty multiple of the hidden size {hidden}", x.len()))));
    }
    Ok(hidden)
}

/// RMSNorm of each row of `x` `[rows, hidden]`.
#[wasm_bindgen(js_name = rmsNorm)]
pub fn rms_norm(x: &[f32], hidden: u32, w: &[f32], eps: f32) -> JsResult<Vec<f32>> {
    let hidden = check_rows(x, hidden)?;
    let mut out = vec![0f32; x.len()];
    norm::rms_norm(x, hidden, w, eps, &mut out).map_err(js_err)?;
    Ok(out)
}

/// LayerNorm of each row of `x` `[rows, hidden]`, optional bias.
#[wasm_bindgen(js_name = layerNorm)]
pub fn layer_norm(x: &[f32], hidden: u32, w: &[f32], b: Option<Vec<f32>>, eps: f32) -> JsResult<Vec<f32>> {
    let hidden = check_rows(x, hidden)?;
    let mut out = vec![0f32; x.len()];
    norm::layer_norm(x, hidden, w, b.as_deref(), eps, &mut out).map_err(js_err)?;
    Ok(out)
}

#[wasm_bindgen]
pub fn silu(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    activation::silu_inplace(&mut out);
    out
}

/// Exact (erf) GELU.
#[wasm_bindgen]
pub fn gelu(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    activation::gelu_inplace(&mut out);
    out
}

/// GELU, tanh approximation (`gelu_pytorch_tanh`).
#[wasm_bindgen(js_name = geluTanh)]
pub fn gelu_tanh(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    activation::gelu_tanh_inplace(&mut out);
    out
}

/// `silu(gate) * up`.
#[wasm_bindgen]
pub fn swiglu(gate: &[f32], up: &[f32]) -> JsResult<Vec<f32>> {
    let mut out = vec![0f32; gate.len()];
    activation::swiglu(gate, up, &mut out).map_err(js_err)?;
    Ok(out)
}

/// RoPE inverse frequencies for rotary dimension `dim` and base `theta`; `llama3` =
/// `[factor, low_freq_factor, high_freq_factor, original_max_position_embeddings]`.
#[wasm_bindgen(js_name = ropeInvFreq)]
pub fn rope_inv_freq(dim: u32, theta: f32, llama3: Option<Vec<f32>>) -> JsResult<Vec<f32>> {
    let scaling = match llama3 {
        None => None,
        Some(v) => match v[..] {
            [factor, low_freq_factor, high_freq_factor, original_max_position_embeddings] => Some(rope::Llama3Scaling { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }),
            _ => return Err(invalid(format!("llama3 rope scaling needs 4 numbers [factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings], got {}", v.len()))),
        },
    };
    rope::inv_freq(dim as usize, theta, scaling.as_ref()).map_err(js_err)
}

/// RoPE ("rotate half") of `x` `[positions.length, n_heads * head_dim]`; returns the rotated copy.
#[wasm_bindgen(js_name = applyRope)]
pub fn apply_rope(x: &[f32], n_heads: u32, head_dim: u32, positions: &[u32], inv_freq: &[f32]) -> JsResult<Vec<f32>> {
    let mut out = x.to_vec();
    let pos: Vec<usize> = positions.iter().map(|&p| p as usize).collect();
    rope::apply_rope(&mut out, n_heads as usize, head_dim as usize, &pos, inv_freq).map_err(js_err)?;
    Ok(out)
}
