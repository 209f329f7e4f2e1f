//! The wasm-bindgen surface of lowbit-core: argument conversion and error mapping only.
//!
//! Every export returns `Result<_, JsValue>`; errors are JS `Error`s with `name = "LowbitError"`,
//! a stable `code` (see `lowbit_core::ErrorKind::code`) and, for non-finite input, `index`.
//! Nothing here panics on user input, so a bad call never poisons the instance.

use js_sys::{Array, Float32Array, Int8Array, Object, Reflect, Uint16Array, Uint32Array, Uint8Array};
use lowbit_core::blockwise4::{self, Quantize4Options};
use lowbit_core::quant_state::DictTensor;
use lowbit_core::{blockwise8, codebook, int8, Absmax, DType, Error, ErrorKind, Kernel, NestedAbsmax, QuantState, QuantType4};
use lowbit_core::{bf16, f16};
use wasm_bindgen::prelude::*;

mod bench;
mod formats;
mod kernels;
mod linear;
pub use bench::QuantBench;
pub use kernels::{Embedding, KvCache};
pub use linear::{Input, Linear};

pub(crate) type JsResult<T> = Result<T, JsValue>;

pub(crate) fn js_err(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("LowbitError");
    let _ = Reflect::set(&err, &"code".into(), &e.kind.code().into());
    if let Some(i) = e.index {
        let _ = Reflect::set(&err, &"index".into(), &(i as f64).into());
    }
    err.into()
}

fn invalid(msg: impl Into<String>) -> JsValue {
    js_err(Error::new(ErrorKind::InvalidArgument, msg))
}

pub(crate) fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &k.into(), &v.into());
}

pub(crate) fn get(o: &JsValue, k: &str) -> JsResult<JsValue> {
    Reflect::get(o, &k.into()).map_err(|_| invalid(format!("cannot read field '{k}'")))
}

fn shape_of(shape: &[u32]) -> Vec<usize> {
    shape.iter().map(|&d| d as usize).collect()
}

pub(crate) fn dtype_of(name: &str) -> JsResult<DType> {
    DType::from_torch_name(name).map_err(js_err)
}

/// Copy a typed array field into a Vec, checking its type.
fn f32_field(o: &JsValue, k: &str) -> JsResult<Vec<f32>> {
    let v = get(o, k)?;
    v.dyn_into::<Float32Array>().map(|a| a.to_vec()).map_err(|_| js_err(Error::new(ErrorKind::InconsistentState, format!("'{k}' must be a Float32Array"))))
}

fn u8_field(o: &JsValue, k: &str) -> JsResult<Vec<u8>> {
    let v = get(o, k)?;
    v.dyn_into::<Uint8Array>().map(|a| a.to_vec()).map_err(|_| js_err(Error::new(ErrorKind::InconsistentState, format!("'{k}' must be a Uint8Array"))))
}

fn num_field(o: &JsValue, k: &str) -> JsResult<f64> {
    get(o, k)?.as_f64().ok_or_else(|| js_err(Error::new(ErrorKind::InconsistentState, format!("'{k}' must be a number"))))
}

fn usize_field(o: &JsValue, k: &str) -> JsResult<usize> {
    let v = num_field(o, k)?;
    if v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
        return Err(js_err(Error::new(ErrorKind::InconsistentState, format!("'{k}' must be a non-negative integer, got {v}"))));
    }
    Ok(v as usize)
}

fn str_field(o: &JsValue, k: &str) -> JsResult<String> {
    get(o, k)?.as_string().ok_or_else(|| js_err(Error::new(ErrorKind::InconsistentState, format!("'{k}' must be a string"))))
}

/// QuantState -> plain object with bitsandbytes' field names in camelCase.
fn state_to_js(st: &QuantState) -> Object {
    let o = Object::new();
    set(&o, "quantType", st.quant_type.name());
    set(&o, "blocksize", st.blocksize as f64);
    set(&o, "dtype", st.dtype.torch_name());
    let shape = Array::new();
    for &d in &st.shape {
        shape.push(&(d as f64).into());
    }
    set(&o, "shape", shape);
    set(&o, "code", Float32Array::from(&st.code[..]));
    match &st.absmax {
        Absmax::Plain(a) => {
            set(&o, "absmax", Float32Array::from(&a[..]));
        }
        Absmax::Nested(n) => {
            set(&o, "absmax", Uint8Array::from(&n.quantized[..]));
            set(&o, "offset", n.offset as f64);
            let s2 = Object::new();
            set(&s2, "absmax", Float32Array::from(&n.absmax[..]));
            set(&s2, "code", Float32Array::from(&n.code[..]));
            set(&s2, "blocksize", n.blocksize as f64);
            set(&s2, "dtype", n.dtype.torch_name());
            set(&o, "state2", s2);
        }
    }
    o
}

fn state_from_js(o: &JsValue) -> JsResult<QuantState> {
    if !o.is_object() {
        return Err(invalid("quant state must be an object"));
    }
    let quant_type = QuantType4::parse(&str_field(o, "quantType")?).map_err(js_err)?;
    let blocksize = usize_field(o, "blocksize")?;
    let dtype = dtype_of(&str_field(o, "dtype")?)?;
    let shape_v = get(o, "shape")?;
    if !Array::is_array(&shape_v) {
        return Err(js_err(Error::new(ErrorKind::InconsistentState, "'shape' must be an array of integers")));
    }
    let mut shape = Vec::new();
    for d in Array::from(&shape_v).iter() {
        match d.as_f64() {
            Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => shape.push(x as usize),
            _ => return Err(js_err(Error::new(ErrorKind::InconsistentState, "'shape' must be an array of non-negative integers"))),
        }
    }
    let code_v = f32_field(o, "code")?;
    let code: [f32; 16] = code_v
        .as_slice()
        .try_into()
        .map_err(|_| js_err(Error::new(ErrorKind::InconsistentState, format!("'code' must have 16 entries, found {}", code_v.len()))))?;
    let s2 = get(o, "state2")?;
    let absmax = if s2.is_undefined() || s2.is_null() {
        Absmax::Plain(f32_field(o, "absmax")?)
    } else {
        Absmax::Nested(NestedAbsmax {
            quantized: u8_field(o, "absmax")?,
            offset: num_field(o, "offset")? as f32,
            absmax: f32_field(&s2, "absmax")?,
            code: f32_field(&s2, "code")?,
            blocksize: usize_field(&s2, "blocksize")?,
            dtype: dtype_of(&str_field(&s2, "dtype")?)?,
        })
    };
    let st = QuantState { quant_type, blocksize, dtype, shape, code, absmax };
    st.validate().map_err(js_err)?;
    Ok(st)
}

fn packed_result(packed: Vec<u8>, st: &QuantState) -> Object {
    let o = Object::new();
    set(&o, "packed", Uint8Array::from(&packed[..]));
    set(&o, "state", state_to_js(st));
    o
}

fn opts(quant_type: &str, blocksize: u32, compress_statistics: bool, allow_non_finite: bool) -> JsResult<Quantize4Options> {
    Ok(Quantize4Options { quant_type: QuantType4::parse(quant_type).map_err(js_err)?, blocksize: blocksize as usize, compress_statistics, allow_non_finite })
}

/// f16 / bf16 values whose bit patterns can be viewed as u16 without a copy.
pub(crate) trait HalfBits: Sized {
    fn bits(v: &[Self]) -> &[u16];
}
impl HalfBits for f16 {
    fn bits(v: &[Self]) -> &[u16] {
        // SAFETY: f16 is #[repr(transparent)] over u16; same size and alignment.
        unsafe { core::slice::from_raw_parts(v.as_ptr() as *const u16, v.len()) }
    }
}
impl HalfBits for bf16 {
    fn bits(v: &[Self]) -> &[u16] {
        // SAFETY: bf16 is #[repr(transparent)] over u16; same size and alignment.
        unsafe { core::slice::from_raw_parts(v.as_ptr() as *const u16, v.len()) }
    }
}

/// A Uint16Array of f16 / bf16 bit patterns, copied once out of wasm memory.
pub(crate) fn half_array<T: HalfBits>(v: &[T]) -> Uint16Array {
    Uint16Array::from(T::bits(v))
}

/// Reinterpret u16 bit patterns as f16 / bf16 (both are #[repr(transparent)] u16).
fn as_f16(v: &[u16]) -> &[f16] {
    // SAFETY: f16 is #[repr(transparent)] over u16; same size and alignment.
    unsafe { core::slice::from_raw_parts(v.as_ptr() as *const f16, v.len()) }
}
fn as_bf16(v: &[u16]) -> &[bf16] {
    // SAFETY: bf16 is #[repr(transparent)] over u16; same size and alignment.
    unsafe { core::slice::from_raw_parts(v.as_ptr() as *const bf16, v.len()) }
}

#[wasm_bindgen(js_name = quantize4bitF32)]
pub fn quantize_4bit_f32(data: &[f32], shape: &[u32], quant_type: &str, blocksize: u32, compress_statistics: bool, allow_non_finite: bool) -> JsResult<Object> {
    let o = opts(quant_type, blocksize, compress_statistics, allow_non_finite)?;
    let (packed, st) = blockwise4::quantize_4bit(data, &shape_of(shape), &o, Kernel::best()).map_err(js_err)?;
    Ok(packed_result(packed, &st))
}

/// `data` holds f16 (dtype "float16") or bf16 (dtype "bfloat16") bit patterns.
#[wasm_bindgen(js_name = quantize4bitU16)]
pub fn quantize_4bit_u16(data: &[u16], dtype: &str, shape: &[u32], quant_type: &str, blocksize: u32, compress_statistics: bool, allow_non_finite: bool) -> JsResult<Object> {
    let o = opts(quant_type, blocksize, compress_statistics, allow_non_finite)?;
    let shape = shape_of(shape);
    let (packed, st) = match dtype_of(dtype)? {
        DType::F16 => blockwise4::quantize_4bit(as_f16(data), &shape, &o, Kernel::best()),
        DType::BF16 => blockwise4::quantize_4bit(as_bf16(data), &shape, &o, Kernel::best()),
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("16-bit input must be float16 or bfloat16, not {}", other.torch_name())))),
    }
    .map_err(js_err)?;
    Ok(packed_result(packed, &st))
}

/// Returns a Float32Array (out dtype "float32") or a Uint16Array of f16 / bf16 bits.
#[wasm_bindgen(js_name = dequantize4bit)]
pub fn dequantize_4bit(packed: &[u8], state: JsValue, out_dtype: &str) -> JsResult<JsValue> {
    let st = state_from_js(&state)?;
    let k = Kernel::best();
    Ok(match dtype_of(out_dtype)? {
        DType::F32 => Float32Array::from(&blockwise4::dequantize_4bit_vec::<f32>(packed, &st, k).map_err(js_err)?[..]).into(),
        DType::F16 => half_array(&blockwise4::dequantize_4bit_vec::<f16>(packed, &st, k).map_err(js_err)?).into(),
        DType::BF16 => half_array(&blockwise4::dequantize_4bit_vec::<bf16>(packed, &st, k).map_err(js_err)?).into(),
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("output dtype must be float32, float16 or bfloat16, not {}", other.torch_name())))),
    })
}

/// Validate a state object (throws a LowbitError if its fields disagree) and return it normalized.
#[wasm_bindgen(js_name = validateQuantState)]
pub fn validate_quant_state(state: JsValue) -> JsResult<Object> {
    Ok(state_to_js(&state_from_js(&state)?))
}

/// The f32 absmax per block (rebuilt from the nested codes when double-quantized).
#[wasm_bindgen(js_name = absmaxF32)]
pub fn absmax_f32(state: JsValue) -> JsResult<Float32Array> {
    let st = state_from_js(&state)?;
    Ok(Float32Array::from(&st.absmax_f32().map_err(js_err)?[..]))
}

#[wasm_bindgen(js_name = quantStateJson)]
pub fn quant_state_json(state: JsValue) -> JsResult<String> {
    Ok(state_from_js(&state)?.json())
}

/// `QuantState.as_dict(packed=True)`: { key: { dtype, shape, data: Uint8Array } } in bnb's order.
#[wasm_bindgen(js_name = quantStateToDict)]
pub fn quant_state_to_dict(state: JsValue) -> JsResult<Object> {
    let st = state_from_js(&state)?;
    let o = Object::new();
    for (k, t) in st.to_dict() {
        let e = Object::new();
        set(&e, "dtype", t.dtype.torch_name());
        let shape = Array::new();
        for d in &t.shape {
            shape.push(&(*d as f64).into());
        }
        set(&e, "shape", shape);
        set(&e, "data", Uint8Array::from(&t.data[..]));
        set(&o, &k, e);
    }
    Ok(o)
}

#[wasm_bindgen(js_name = quantStateFromDict)]
pub fn quant_state_from_dict(dict: JsValue) -> JsResult<Object> {
    if !dict.is_object() {
        return Err(invalid("dict must be an object of { dtype, shape, data } entries"));
    }
    let mut entries = Vec::new();
    for k in Object::keys(dict.unchecked_ref::<Object>()).iter() {
        let key = k.as_string().unwrap_or_default();
        let e = get(&dict, &key)?;
        let dtype = dtype_of(&str_field(&e, "dtype").map_err(|_| js_err(Error::new(ErrorKind::Parse, format!("'{key}' needs a dtype string"))))?)?;
        let shape_v = get(&e, "shape")?;
        if !Array::is_array(&shape_v) {
            return Err(js_err(Error::new(ErrorKind::Parse, format!("'{key}'.shape must be an array"))));
        }
        let mut shape = Vec::new();
        for d in Array::from(&shape_v).iter() {
            match d.as_f64() {
                Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => shape.push(x as usize),
                _ => return Err(js_err(Error::new(ErrorKind::Parse, format!("'{key}'.shape must hold non-negative integers")))),
            }
        }
        let data = u8_field(&e, "data")?;
        entries.push((key, DictTensor { dtype, shape, data }));
    }
    Ok(state_to_js(&QuantState::from_dict(&entries).map_err(js_err)?))
}

fn code_or_dynamic(code: Option<Vec<f32>>) -> Vec<f32> {
    code.unwrap_or_else(|| codebook::dynamic_map_signed().to_vec())
}

fn blockwise_result(q: Vec<u8>, absmax: Vec<f32>, code: &[f32], blocksize: u32) -> Object {
    let o = Object::new();
    set(&o, "q", Uint8Array::from(&q[..]));
    set(&o, "absmax", Float32Array::from(&absmax[..]));
    set(&o, "code", Float32Array::from(code));
    set(&o, "blocksize", blocksize as f64);
    o
}

#[wasm_bindgen(js_name = quantizeBlockwiseF32)]
pub fn quantize_blockwise_f32(data: &[f32], blocksize: u32, code: Option<Vec<f32>>, allow_non_finite: bool) -> JsResult<Object> {
    blockwise8::check_blocksize(blocksize as usize).map_err(js_err)?;
    let code = code_or_dynamic(code);
    let (q, a) = blockwise8::quantize_blockwise(data, &code, blocksize as usize, allow_non_finite).map_err(js_err)?;
    Ok(blockwise_result(q, a, &code, blocksize))
}

#[wasm_bindgen(js_name = quantizeBlockwiseU16)]
pub fn quantize_blockwise_u16(data: &[u16], dtype: &str, blocksize: u32, code: Option<Vec<f32>>, allow_non_finite: bool) -> JsResult<Object> {
    blockwise8::check_blocksize(blocksize as usize).map_err(js_err)?;
    let code = code_or_dynamic(code);
    let (q, a) = match dtype_of(dtype)? {
        DType::F16 => blockwise8::quantize_blockwise(as_f16(data), &code, blocksize as usize, allow_non_finite),
        DType::BF16 => blockwise8::quantize_blockwise(as_bf16(data), &code, blocksize as usize, allow_non_finite),
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("16-bit input must be float16 or bfloat16, not {}", other.torch_name())))),
    }
    .map_err(js_err)?;
    Ok(blockwise_result(q, a, &code, blocksize))
}

#[wasm_bindgen(js_name = dequantizeBlockwise)]
pub fn dequantize_blockwise(q: &[u8], absmax: &[f32], code: &[f32], blocksize: u32, out_dtype: &str) -> JsResult<JsValue> {
    let bs = blocksize as usize;
    Ok(match dtype_of(out_dtype)? {
        DType::F32 => {
            let mut out = vec![0f32; q.len()];
            blockwise8::dequantize_blockwise(q, absmax, code, bs, &mut out).map_err(js_err)?;
            Float32Array::from(&out[..]).into()
        }
        DType::F16 => {
            let mut out = vec![f16::ZERO; q.len()];
            blockwise8::dequantize_blockwise(q, absmax, code, bs, &mut out).map_err(js_err)?;
            half_array(&out).into()
        }
        DType::BF16 => {
            let mut out = vec![bf16::ZERO; q.len()];
            blockwise8::dequantize_blockwise(q, absmax, code, bs, &mut out).map_err(js_err)?;
            half_array(&out).into()
        }
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("output dtype must be float32, float16 or bfloat16, not {}", other.torch_name())))),
    })
}

fn int8_result(r: int8::Int8Vectorwise) -> Object {
    let o = Object::new();
    set(&o, "CB", Int8Array::from(&r.cb[..]));
    set(&o, "SCB", Float32Array::from(&r.scb[..]));
    match r.outlier_cols {
        Some(c) => set(&o, "outlierCols", Uint32Array::from(&c[..])),
        None => set(&o, "outlierCols", JsValue::NULL),
    }
    o
}

#[wasm_bindgen(js_name = int8VectorwiseQuantF32)]
pub fn int8_vectorwise_quant_f32(data: &[f32], shape: &[u32], threshold: f32) -> JsResult<Object> {
    Ok(int8_result(int8::vectorwise_quant(data, &shape_of(shape), threshold).map_err(js_err)?))
}

#[wasm_bindgen(js_name = int8VectorwiseQuantU16)]
pub fn int8_vectorwise_quant_u16(data: &[u16], dtype: &str, shape: &[u32], threshold: f32) -> JsResult<Object> {
    let shape = shape_of(shape);
    let r = match dtype_of(dtype)? {
        DType::F16 => int8::vectorwise_quant(as_f16(data), &shape, threshold),
        DType::BF16 => int8::vectorwise_quant(as_bf16(data), &shape, threshold),
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("16-bit input must be float16 or bfloat16, not {}", other.torch_name())))),
    }
    .map_err(js_err)?;
    Ok(int8_result(r))
}

#[wasm_bindgen(js_name = int8VectorwiseDequant)]
pub fn int8_vectorwise_dequant(cb: &[i8], scb: &[f32], cols: u32) -> JsResult<Float32Array> {
    let mut out = vec![0f32; cb.len()];
    int8::vectorwise_dequant(cb, scb, cols as usize, &mut out).map_err(js_err)?;
    Ok(Float32Array::from(&out[..]))
}

/// bitsandbytes' `get_4bit_type(quant_type)` (and lowbit's int4 table).
#[wasm_bindgen(js_name = quantMap)]
pub fn quant_map(quant_type: &str) -> JsResult<Float32Array> {
    let qt = QuantType4::parse(quant_type).map_err(js_err)?;
    Ok(Float32Array::from(&codebook::Codebook4::get(qt).quant_map[..]))
}

/// bitsandbytes' `create_dynamic_map(signed)`.
#[wasm_bindgen(js_name = dynamicMap)]
pub fn dynamic_map(signed: bool) -> Float32Array {
    let m = if signed { codebook::dynamic_map_signed() } else { codebook::dynamic_map_unsigned() };
    Float32Array::from(&m[..])
}

#[wasm_bindgen(js_name = simd128Available)]
pub fn simd128_available() -> bool {
    Kernel::SIMD128_AVAILABLE
}

/// Whether this is the SIMD128 + relaxed-SIMD build (scripts/build.sh makes both; `init()` picks
/// one by feature detection). The relaxed build answers by running one relaxed instruction, so
/// its module also never validates on an engine without relaxed SIMD, whatever its kernels use.
#[wasm_bindgen(js_name = relaxedSimdAvailable)]
pub fn relaxed_simd_available() -> bool {
    relaxed_dot_works()
}

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn relaxed_dot_works() -> bool {
    use core::arch::wasm32::{i32x4, i32x4_extract_lane, i32x4_relaxed_dot_i8x16_i7x16_add, i8x16};
    use core::hint::black_box;
    // lane i: 100 + Σ a[4i+j]·b[4i+j] with b in 0..=127, where every engine agrees
    let a = black_box(i8x16(-128, 127, -1, 2, 3, -4, 5, -6, 7, 8, -9, 10, 11, -12, 13, 14));
    let b = black_box(i8x16(127, 127, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 127));
    let r = i32x4_relaxed_dot_i8x16_i7x16_add(a, b, black_box(i32x4(100, 100, 100, 100)));
    [i32x4_extract_lane::<0>(r), i32x4_extract_lane::<1>(r), i32x4_extract_lane::<2>(r), i32x4_extract_lane::<3>(r)] == [-28, 86, 200, 2000]
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
fn relaxed_dot_works() -> bool {
    false
}

/// f32 -> f16 / bf16 bit patterns, round to nearest even (what torch's `.to()` does).
#[wasm_bindgen(js_name = toHalfBits)]
pub fn to_half_bits(data: &[f32], dtype: &str) -> JsResult<Uint16Array> {
    let bits: Vec<u16> = match dtype_of(dtype)? {
        DType::F16 => data.iter().map(|&v| f16::from_f32(v).to_bits()).collect(),
        DType::BF16 => data.iter().map(|&v| bf16::from_f32(v).to_bits()).collect(),
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("half dtype must be float16 or bfloat16, not {}", other.torch_name())))),
    };
    Ok(Uint16Array::from(&bits[..]))
}

/// f16 / bf16 bit patterns -> f32 (exact).
#[wasm_bindgen(js_name = fromHalfBits)]
pub fn from_half_bits(bits: &[u16], dtype: &str) -> JsResult<Float32Array> {
    let v: Vec<f32> = match dtype_of(dtype)? {
        DType::F16 => bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect(),
        DType::BF16 => bits.iter().map(|&b| bf16::from_bits(b).to_f32()).collect(),
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("half dtype must be float16 or bfloat16, not {}", other.torch_name())))),
    };
    Ok(Float32Array::from(&v[..]))
}
