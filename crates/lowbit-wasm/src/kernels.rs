//! wasm-bindgen surface of the CPU inference kernels (`lowbit_core::kernels`).
//!
//! Weights live in wasm memory inside the classes (`Linear` in linear/, `Embedding` and
//! `KvCache` here) and are never copied per call; activations are passed in as `&[f32]`
//! and come back as new `Float32Array`s (`Vec<f32>`). Every error is a LowbitError (`js_err`).

use crate::{js_err, JsResult};
use crate::linear::{checked_mul, check_shape, Table};
use lowbit_core::kernels::{activation, attention, norm, rope};
use lowbit_core::{Error, ErrorKind};
use wasm_bindgen::prelude::*;

fn invalid(msg: impl Into<String>) -> JsValue {
    js_err(Error::new(ErrorKind::InvalidArgument, msg))
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
        Ok(Embedding { t: Table::F32(table), vocab: vocab as usize, dim: dim as usize })
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
        self.t.matmul(x, m as usize, self.vocab, self.dim)
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
