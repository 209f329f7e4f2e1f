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
