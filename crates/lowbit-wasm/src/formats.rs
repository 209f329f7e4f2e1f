//! Checkpoint format bindings: safetensors headers (parse + write).

use crate::{get, js_err, set, JsResult};
use js_sys::{Array, Object, Reflect, Uint8Array};
use lowbit_core::formats::safetensors::{self, StDtype};
use lowbit_core::{Error, ErrorKind};
use wasm_bindgen::prelude::*;

fn file_len(v: f64) -> JsResult<u64> {
    if !(v >= 0.0) || v.fract() != 0.0 || v > 9_007_199_254_740_991.0 {
        return Err(js_err(Error::new(ErrorKind::InvalidArgument, format!("file length must be a non-negative integer, got {v}"))));
    }
    Ok(v as u64)
}

/// The JSON header length of a safetensors file from its first 8 bytes, validated against the file size.
#[wasm_bindgen(js_name = safetensorsHeaderLength)]
pub fn safetensors_header_length(first8: &[u8], file_size: f64) -> JsResult<f64> {
    Ok(safetensors::header_len(first8, file_len(file_size)?).map_err(js_err)? as f64)
}

/// Parse and validate the JSON header (exactly the header bytes after the length prefix).
#[wasm_bindgen(js_name = safetensorsParseHeader)]
pub fn safetensors_parse_header(header: &[u8], file_size: f64) -> JsResult<Object> {
    let h = safetensors::parse_header(header, file_len(file_size)?).map_err(js_err)?;
    let o = Object::new();
    set(&o, "dataStart", h.data_start as f64);
    let tensors = Array::new();
    for t in &h.tensors {
        let e = Object::new();
        set(&e, "name", t.name.as_str());
        set(&e, "dtype", t.dtype.name());
        let shape = Array::new();
        for &d in &t.shape {
            shape.push(&(d as f64).into());
        }
        set(&e, "shape", shape);
        set(&e, "start", t.start as f64);
        set(&e, "end", t.end as f64);
        tensors.push(&e);
    }
    set(&o, "tensors", tensors);
    // [key, value] pairs: a plain object would mishandle a key such as "__proto__".
    let meta = Array::new();
    for (k, v) in &h.metadata {
        meta.push(&Array::of2(&k.as_str().into(), &v.as_str().into()));
    }
    set(&o, "metadata", meta);
    Ok(o)
}

/// The first bytes of a safetensors file for `entries` ([{ name, dtype, shape, nbytes }]) and
/// `metadata` ({ key: string }). With `reference_order` the tensors are laid out as the Python
/// `safetensors` writer lays them out (dtype, then name); otherwise in the given order.
/// Returns { header: Uint8Array, order: string[] } — write the tensors' bytes in `order`.
#[wasm_bindgen(js_name = safetensorsWriteHeader)]
pub fn safetensors_write_header(entries: JsValue, metadata: JsValue, reference_order: bool) -> JsResult<Object> {
    let bad = |m: String| js_err(Error::new(ErrorKind::InvalidArgument, m));
    if !Array::is_array(&entries) {
        return Err(bad("entries must be an array of { name, dtype, shape, nbytes }".into()));
    }
    let mut tensors: Vec<(String, StDtype, Vec<usize>, u64)> = Vec::new();
    for e in Array::from(&entries).iter() {
        let name = get(&e, "name")?.as_string().ok_or_else(|| bad("entry name must be a string".into()))?;
        let dtype_s = get(&e, "dtype")?.as_string().ok_or_else(|| bad(format!("'{name}': dtype must be a string")))?;
        let dtype = StDtype::from_name(&dtype_s).ok_or_else(|| js_err(Error::new(ErrorKind::UnsupportedDtype, format!("'{name}': unknown safetensors dtype '{dtype_s}'"))))?;
        let shape_v = get(&e, "shape")?;
        if !Array::is_array(&shape_v) {
            return Err(bad(format!("'{name}': shape must be an array")));
        }
        let mut shape = Vec::new();
        for d in Array::from(&shape_v).iter() {
            match d.as_f64() {
                Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => shape.push(x as usize),
                _ => return Err(bad(format!("'{name}': shape must hold non-negative integers"))),
            }
        }
        let nbytes = get(&e, "nbytes")?.as_f64().ok_or_else(|| bad(format!("'{name}': nbytes must be a number")))?;
        tensors.push((name, dtype, shape, file_len(nbytes)?));
    }
    let mut meta: Vec<(String, String)> = Vec::new();
    if metadata.is_object() {
        for k in Object::keys(metadata.unchecked_ref::<Object>()).iter() {
            let key = k.as_string().unwrap_or_default();
            let v = Reflect::get(&metadata, &k).ok().and_then(|v| v.as_string()).ok_or_else(|| bad(format!("metadata '{key}' must be a string")))?;
            meta.push((key, v));
        }
    }
    if reference_order {
        safetensors::reference_order(&mut tensors);
    }
    let bytes = safetensors::write_header(&tensors, &meta).map_err(js_err)?;
    let o = Object::new();
    set(&o, "header", Uint8Array::from(&bytes[..]));
    let order = Array::new();
    for t in &tensors {
        order.push(&t.0.as_str().into());
    }
    set(&o, "order", order);
    Ok(o)
}

// ---- GGUF ---------------------------------------------------------------------------------------

use js_sys::{BigInt, Float32Array, Float64Array, Int16Array, Int32Array, Int8Array, Uint16Array, Uint32Array};
use lowbit_core::formats::gguf::{self, GgmlType, GgufArray, GgufValue};
use lowbit_core::{bf16, f16};

fn u64_js(v: u64) -> JsValue {
    if v <= 9_007_199_254_740_991 {
        (v as f64).into()
    } else {
        BigInt::from(v).into()
    }
}
fn i64_js(v: i64) -> JsValue {
    if v.unsigned_abs() <= 9_007_199_254_740_991 {
        (v as f64).into()
    } else {
        BigInt::from(v).into()
    }
}

fn array_js(a: &GgufArray) -> JsValue {
    match a {
        GgufArray::U8(v) => Uint8Array::from(&v[..]).into(),
        GgufArray::I8(v) => Int8Array::from(&v[..]).into(),
        GgufArray::U16(v) => Uint16Array::from(&v[..]).into(),
        GgufArray::I16(v) => Int16Array::from(&v[..]).into(),
        GgufArray::U32(v) => Uint32Array::from(&v[..]).into(),
        GgufArray::I32(v) => Int32Array::from(&v[..]).into(),
        GgufArray::F32(v) => Float32Array::from(&v[..]).into(),
        GgufArray::F64(v) => Float64Array::from(&v[..]).into(),
        GgufArray::Bool(v) => v.iter().map(|&b| JsValue::from_bool(b)).collect::<Array>().into(),
        GgufArray::String(v) => v.iter().map(|s| JsValue::from_str(s)).collect::<Array>().into(),
        GgufArray::U64(v) => v.iter().map(|&x| u64_js(x)).collect::<Array>().into(),
        GgufArray::I64(v) => v.iter().map(|&x| i64_js(x)).collect::<Array>().into(),
        GgufArray::Array(v) => v.iter().map(array_js).collect::<Array>().into(),
    }
}

fn value_js(v: &GgufValue) -> JsValue {
    match v {
        GgufValue::U8(x) => (*x as f64).into(),
        GgufValue::I8(x) => (*x as f64).into(),
        GgufValue::U16(x) => (*x as f64).into(),
        GgufValue::I16(x) => (*x as f64).into(),
        GgufValue::U32(x) => (*x as f64).into(),
        GgufValue::I32(x) => (*x as f64).into(),
        GgufValue::F32(x) => (*x as f64).into(),
        GgufValue::F64(x) => (*x).into(),
        GgufValue::Bool(b) => JsValue::from_bool(*b),
        GgufValue::String(s) => JsValue::from_str(s),
        GgufValue::U64(x) => u64_js(*x),
        GgufValue::I64(x) => i64_js(*x),
        GgufValue::Array(a) => array_js(a),
    }
}

/// Parse a GGUF header from the first bytes of the file. Throws NEED_MORE_DATA (with `index` =
/// the prefix length needed) when the header runs past `prefix`: read more and call again.
/// Returns { version, alignment, dataStart, metadata: [key, value][], tensors: [{ name, shape
/// (row-major), ggmlType, offset, nBytes }] }.
#[wasm_bindgen(js_name = ggufParse)]
pub fn gguf_parse(prefix: &[u8], file_size: f64) -> JsResult<Object> {
    let h = gguf::parse(prefix, file_len(file_size)?).map_err(js_err)?;
    let o = Object::new();
    set(&o, "version", h.version as f64);
    set(&o, "alignment", h.alignment as f64);
    set(&o, "dataStart", h.data_start as f64);
    let meta = Array::new();
    for (k, v) in &h.metadata {
        meta.push(&Array::of2(&k.as_str().into(), &value_js(v)));
    }
    set(&o, "metadata", meta);
    let tensors = Array::new();
    for t in &h.tensors {
        let e = Object::new();
        set(&e, "name", t.name.as_str());
        set(&e, "shape", t.torch_shape().iter().map(|&d| JsValue::from_f64(d as f64)).collect::<Array>());
        set(&e, "ggmlType", t.ggml_type.name());
        set(&e, "offset", t.offset as f64);
        set(&e, "nBytes", t.n_bytes as f64);
        tensors.push(&e);
    }
    set(&o, "tensors", tensors);
    Ok(o)
}

/// Dequantize one tensor's bytes (`ggml_type` by name, e.g. "Q4_K") to `n` elements of
/// float32 (Float32Array) or float16 / bfloat16 (Uint16Array bit patterns).
#[wasm_bindgen(js_name = ggufDequantize)]
pub fn gguf_dequantize(ggml_type: &str, data: &[u8], n: f64, out_dtype: &str) -> JsResult<JsValue> {
    let ty = GgmlType::ALL
        .iter()
        .copied()
        .find(|t| t.name() == ggml_type)
        .ok_or_else(|| js_err(Error::new(ErrorKind::UnsupportedDtype, format!("unknown ggml type '{ggml_type}'"))))?;
    let n = file_len(n)? as usize;
    // The byte count must match before an output of n elements is allocated.
    if ty.byte_size(n as u64) != Some(data.len() as u64) {
        return Err(js_err(Error::new(ErrorKind::LengthMismatch, format!("{n} elements of {ggml_type} take {:?} bytes, got {}", ty.byte_size(n as u64), data.len()))));
    }
    Ok(match out_dtype {
        "float32" => {
            let mut out = vec![0f32; n];
            gguf::dequantize(ty, data, &mut out).map_err(js_err)?;
            Float32Array::from(&out[..]).into()
        }
        "float16" => {
            let mut out = vec![f16::ZERO; n];
            gguf::dequantize(ty, data, &mut out).map_err(js_err)?;
            crate::half_array(&out).into()
        }
        "bfloat16" => {
            let mut out = vec![bf16::ZERO; n];
            gguf::dequantize(ty, data, &mut out).map_err(js_err)?;
            crate::half_array(&out).into()
        }
        other => return Err(js_err(Error::new(ErrorKind::UnsupportedDtype, format!("output dtype must be float32, float16 or bfloat16, not {other}")))),
    })
}
