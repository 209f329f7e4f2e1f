//! QuantState and the exact dict that bitsandbytes' `QuantState.as_dict(packed=True)` writes and
//! transformers saves next to each 4-bit weight (spec §5.2): tensors `absmax`, `quant_map`,
//! `nested_absmax`, `nested_quant_map` and the JSON of the other fields packed into a uint8
//! tensor `quant_state.bitsandbytes__<quant_type>`.

use crate::codebook::{Codebook4, QuantType4};
use crate::double_quant;
use crate::dtype::{numel, DType};
use crate::error::{bail, Result};
use crate::pyfloat;
use crate::{blockwise4, NESTED_BLOCKSIZE};

#[derive(Debug, Clone, PartialEq)]
pub struct NestedAbsmax {
    /// 8-bit codes of (absmax - offset), one per 4-bit block.
    pub quantized: Vec<u8>,
    pub offset: f32,
    /// f32 absmax of each nested block of `blocksize` codes.
    pub absmax: Vec<f32>,
    /// The 256-entry code (read from the file when loading; never regenerated).
    pub code: Vec<f32>,
    pub blocksize: usize,
    pub dtype: DType,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Absmax {
    Plain(Vec<f32>),
    Nested(NestedAbsmax),
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantState {
    pub quant_type: QuantType4,
    pub blocksize: usize,
    /// dtype of the original tensor, the default output dtype of dequantization.
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The 16-entry code as stored (`quant_map`). Like bitsandbytes' kernels, dequantization
    /// uses the built-in table for `quant_type`; see [`QuantState::quant_map_matches_builtin`].
    pub code: [f32; 16],
    pub absmax: Absmax,
}

/// A tensor of a state dict: dtype, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DictTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl DictTensor {
    fn f32s(v: &[f32]) -> DictTensor {
        DictTensor { dtype: DType::F32, shape: vec![v.len()], data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
    fn u8s(v: &[u8]) -> DictTensor {
        DictTensor { dtype: DType::U8, shape: vec![v.len()], data: v.to_vec() }
    }
    fn check(&self, key: &str) -> Result<usize> {
        let n = numel(&self.shape)?;
        if n.checked_mul(self.dtype.size()) != Some(self.data.len()) {
            bail!(LengthMismatch, "'{key}': {} bytes do not match dtype {} and shape {:?}", self.data.len(), self.dtype.torch_name(), self.shape);
        }
        Ok(n)
    }
    fn to_f32s(&self, key: &str) -> Result<Vec<f32>> {
        self.check(key)?;
        if self.dtype != DType::F32 {
            bail!(InconsistentState, "'{key}' must be float32, found {}", self.dtype.torch_name());
        }
        Ok(self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

impl QuantState {
    pub fn nested(&self) -> bool {
        matches!(self.absmax, Absmax::Nested(_))
    }

    /// Check that every field agrees with the others; returns the element count.
    pub fn validate(&self) -> Result<usize> {
        blockwise4::check_blocksize(self.blocksize)?;
        let n = numel(&self.shape)?;
        if n == 0 {
            bail!(EmptyTensor, "quant state shape {:?} has no elements", self.shape);
        }
        if !self.dtype.is_float() {
            bail!(InconsistentState, "quant state dtype must be float32, float16 or bfloat16, found {}", self.dtype.torch_name());
        }
        let nb = n.div_ceil(self.blocksize);
        match &self.absmax {
            Absmax::Plain(a) => {
                if a.len() != nb {
                    bail!(InconsistentState, "absmax has {} entries but shape {:?} with blocksize {} needs {nb}", a.len(), self.shape, self.blocksize);
                }
            }
            Absmax::Nested(nst) => {
                if nst.quantized.len() != nb {
                    bail!(InconsistentState, "quantized absmax has {} entries but shape {:?} with blocksize {} needs {nb}", nst.quantized.len(), self.shape, self.blocksize);
                }
                if nst.blocksize == 0 {
                    bail!(InconsistentState, "nested_blocksize must be positive");
                }
                if nst.absmax.len() != nb.div_ceil(nst.blocksize) {
                    bail!(InconsistentState, "nested_absmax has {} entries but {nb} blocks in nested blocks of {} need {}", nst.absmax.len(), nst.blocksize, nb.div_ceil(nst.blocksize));
                }
                if nst.code.len() != 256 {
                    bail!(InconsistentState, "nested_quant_map must have 256 entries, found {}", nst.code.len());
                }
                if !nst.offset.is_finite() {
                    bail!(InconsistentState, "nested_offset must be finite, found {}", nst.offset);
                }
                if !nst.dtype.is_float() {
                    bail!(InconsistentState, "nested_dtype must be a float dtype, found {}", nst.dtype.torch_name());
                }
            }
        }
        Ok(n)
    }

    /// The per-block f32 absmax (rebuilt from the nested codes when double-quantized).
    pub fn absmax_f32(&self) -> Result<Vec<f32>> {
        match &self.absmax {
            Absmax::Plain(a) => Ok(a.clone()),
            Absmax::Nested(n) => double_quant::decompress(n),
        }
    }

    /// Whether the stored quant_map equals the built-in table (ignoring the sign of zero).
    pub fn quant_map_matches_builtin(&self) -> bool {
        let b = &Codebook4::get(self.quant_type).values;
        self.code.iter().zip(b).all(|(a, b)| a == b)
    }

    /// The JSON bitsandbytes packs into `quant_state.bitsandbytes__<type>`, byte for byte
    /// (Python json.dumps separators, insertion order, repr of the offset).
    pub fn json(&self) -> String {
        let shape: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let mut s = format!(
            "{{\"quant_type\": \"{}\", \"blocksize\": {}, \"dtype\": \"{}\", \"shape\": [{}]",
            self.quant_type.name(),
            self.blocksize,
            self.dtype.torch_name(),
            shape.join(", ")
        );
        if let Absmax::Nested(n) = &self.absmax {
            s += &format!(
                ", \"nested_blocksize\": {}, \"nested_dtype\": \"{}\", \"nested_offset\": {}",
                n.blocksize,
                n.dtype.torch_name(),
                pyfloat::repr(n.offset as f64)
            );
        }
        s.push('}');
        s
    }

    /// `QuantState.as_dict(packed=True)`, in bitsandbytes' key order.
    pub fn to_dict(&self) -> Vec<(String, DictTensor)> {
        let mut d = Vec::new();
        match &self.absmax {
            Absmax::Plain(a) => d.push(("absmax".into(), DictTensor::f32s(a))),
            Absmax::Nested(n) => d.push(("absmax".into(), DictTensor::u8s(&n.quantized))),
        }
        d.push(("quant_map".into(), DictTensor::f32s(&self.code)));
        if let Absmax::Nested(n) = &self.absmax {
            d.push(("nested_absmax".into(), DictTensor::f32s(&n.absmax)));
            d.push(("nested_quant_map".into(), DictTensor::f32s(&n.code)));
        }
        d.push((format!("quant_state.bitsandbytes__{}", self.quant_type.name()), DictTensor::u8s(self.json().as_bytes())));
        d
    }

    /// `QuantState.from_dict`: accepts keys with or without a module prefix
    /// (`model.layers.0.mlp.up_proj.weight.absmax`); only the part after the last '.' counts,
    /// except for the `quant_state.bitsandbytes__*` entry.
    pub fn from_dict(entries: &[(String, DictTensor)]) -> Result<QuantState> {
        let mut absmax = None;
        let mut quant_map = None;
        let mut nested_absmax = None;
        let mut nested_quant_map = None;
        let mut packed_json: Option<(&str, &DictTensor)> = None;
        for (key, t) in entries {
            if let Some(pos) = key.find("quant_state.bitsandbytes__") {
                if packed_json.is_some() {
                    bail!(Parse, "more than one quant_state.bitsandbytes__* entry ('{key}')");
                }
                packed_json = Some((&key[pos + "quant_state.bitsandbytes__".len()..], t));
                continue;
            }
            let short = key.rsplit('.').next().unwrap_or(key);
            let slot = match short {
                "absmax" => &mut absmax,
                "quant_map" => &mut quant_map,
                "nested_absmax" => &mut nested_absmax,
                "nested_quant_map" => &mut nested_quant_map,
                _ => bail!(Parse, "unexpected key '{key}' in a 4-bit quant state (expected absmax, quant_map, nested_absmax, nested_quant_map, quant_state.bitsandbytes__nf4|fp4)"),
            };
            if slot.is_some() {
                bail!(Parse, "duplicate key '{short}' in quant state");
            }
            *slot = Some(t);
        }
        let Some((type_suffix, json_t)) = packed_json else {
            bail!(Parse, "no 'quant_state.bitsandbytes__nf4' or '__fp4' entry: this is not a packed bitsandbytes 4-bit quant state");
        };
        let key_type = QuantType4::parse(type_suffix)?;
        json_t.check("quant_state")?;
        if json_t.dtype != DType::U8 {
            bail!(Parse, "quant_state entry must be uint8 bytes of JSON, found {}", json_t.dtype.torch_name());
        }
        let text = match std::str::from_utf8(&json_t.data) {
            Ok(t) => t,
            Err(e) => bail!(Parse, "quant_state JSON is not valid UTF-8: {e}"),
        };
        let v: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => bail!(Parse, "quant_state JSON is malformed: {e}"),
        };
        let Some(obj) = v.as_object() else { bail!(Parse, "quant_state JSON must be an object") };
        for k in obj.keys() {
            if !["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"].contains(&k.as_str()) {
                bail!(Parse, "unexpected field '{k}' in quant_state JSON");
            }
        }
        let get_usize = |k: &str| -> Result<usize> {
            match obj.get(k).and_then(|v| v.as_u64()) {
                Some(x) if x <= usize::MAX as u64 => Ok(x as usize),
                _ => bail!(Parse, "quant_state JSON field '{k}' must be a non-negative integer"),
            }
        };
        let get_str = |k: &str| -> Result<&str> {
            match obj.get(k).and_then(|v| v.as_str()) {
                Some(s) => Ok(s),
                None => bail!(Parse, "quant_state JSON field '{k}' must be a string"),
            }
        };
        let quant_type = QuantType4::parse(get_str("quant_type")?)?;
        if quant_type != key_type {
            bail!(InconsistentState, "key says quant type '{}' but the JSON says '{}'", key_type.name(), quant_type.name());
        }
        let blocksize = get_usize("blocksize")?;
        let dtype = DType::from_torch_name(get_str("dtype")?)?;
        let shape: Vec<usize> = match obj.get("shape").and_then(|v| v.as_array()) {
            Some(a) => {
                let mut s = Vec::with_capacity(a.len().min(16));
                for d in a {
                    match d.as_u64() {
                        Some(x) if x <= usize::MAX as u64 => s.push(x as usize),
                        _ => bail!(Parse, "quant_state JSON 'shape' must be a list of non-negative integers"),
                    }
                }
                s
            }
            None => bail!(Parse, "quant_state JSON field 'shape' must be a list"),
        };
        let Some(code_t) = quant_map else { bail!(Parse, "missing 'quant_map' tensor") };
        let code_v = code_t.to_f32s("quant_map")?;
        let code: [f32; 16] = match code_v.as_slice().try_into() {
            Ok(c) => c,
            Err(_) => bail!(InconsistentState, "quant_map must have 16 entries, found {}", code_v.len()),
        };
        let Some(absmax_t) = absmax else { bail!(Parse, "missing 'absmax' tensor") };
        absmax_t.check("absmax")?;
        // Double quantization if the JSON or the tensors say so: either without the other is an
        // inconsistent state, not a plain one.
        let nested = obj.keys().any(|k| k.starts_with("nested_")) || nested_absmax.is_some() || nested_quant_map.is_some();
        let absmax = if nested {
            let Some(na) = nested_absmax else { bail!(Parse, "JSON describes double quantization but 'nested_absmax' is missing") };
            let Some(nq) = nested_quant_map else { bail!(Parse, "JSON describes double quantization but 'nested_quant_map' is missing") };
            if absmax_t.dtype != DType::U8 {
                bail!(InconsistentState, "double-quantized absmax must be uint8, found {}", absmax_t.dtype.torch_name());
            }
            let offset = match obj.get("nested_offset").and_then(|v| v.as_f64()) {
                Some(o) => o as f32,
                None => bail!(Parse, "quant_state JSON field 'nested_offset' must be a number"),
            };
            let nb = get_usize("nested_blocksize")?;
            if nb != NESTED_BLOCKSIZE {
                bail!(InconsistentState, "nested_blocksize {nb} is not supported (bitsandbytes always uses {NESTED_BLOCKSIZE})");
            }
            Absmax::Nested(NestedAbsmax {
                quantized: absmax_t.data.clone(),
                offset,
                absmax: na.to_f32s("nested_absmax")?,
                code: nq.to_f32s("nested_quant_map")?,
                blocksize: nb,
                dtype: DType::from_torch_name(get_str("nested_dtype")?)?,
            })
        } else {
            Absmax::Plain(absmax_t.to_f32s("absmax")?)
        };
        let st = QuantState { quant_type, blocksize, dtype, shape, code, absmax };
        st.validate()?;
        Ok(st)
    }
}
