//! Buffers that live in this wasm instance's memory, so the benchmark times the kernels and
//! not the copies across the JS boundary. Used by `npm run bench -- quant` only.

use lowbit_core::blockwise4::{self, decode};
use lowbit_core::double_quant;
use lowbit_core::{f16, Kernel, NestedAbsmax, QuantType4};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct QuantBench {
    input: Vec<f16>,
    packed: Vec<u8>,
    absmax: Vec<f32>,
    output: Vec<f16>,
    nested: Option<NestedAbsmax>,
    blocksize: usize,
    quant_type: QuantType4,
}

fn kernel(simd: bool) -> Kernel {
    if simd {
        Kernel::Simd128
    } else {
        Kernel::Scalar
    }
}

#[wasm_bindgen]
impl QuantBench {
    /// `n` f16 elements of a deterministic, roughly normal signal (sum of 4 uniforms).
    #[wasm_bindgen(constructor)]
    pub fn new(n: u32, blocksize: u32, quant_type: &str) -> Result<QuantBench, JsValue> {
        let n = n as usize;
        let quant_type = QuantType4::parse(quant_type).map_err(|e| JsValue::from_str(&e.to_string()))?;
        blockwise4::check_blocksize(blocksize as usize).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let mut s: u32 = 0x9e3779b9;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32
        };
        let input = (0..n).map(|_| f16::from_f32((next() + next() + next() + next() - 2.0) * 0.05)).collect();
        let bs = blocksize as usize;
        Ok(QuantBench { input, packed: vec![0; n.div_ceil(2)], absmax: vec![0.0; n.div_ceil(bs)], output: vec![f16::ZERO; n], nested: None, blocksize: bs, quant_type })
    }

    pub fn input_bytes(&self) -> f64 {
        (self.input.len() * 2) as f64
    }

    /// Bytes of the quantized form with double-quantized absmax (codes + 1 byte per block + nested).
    pub fn quantized_bytes(&self) -> f64 {
        let nb = self.absmax.len();
        (self.packed.len() + nb + 4 * nb.div_ceil(256) + 4 * 256 + 4) as f64
    }

    /// One pass reading every byte of the input buffer (the bandwidth the kernels are compared with).
    pub fn read_pass(&self) -> u32 {
        // SAFETY: f16 is 2 bytes; viewing the buffer as u32 words (n/2 of them) stays inside it.
        let words = unsafe { core::slice::from_raw_parts(self.input.as_ptr() as *const u32, self.input.len() / 2) };
        read_words(words)
    }

    /// quantize_4bit + double quantization, as `quantize_4bit(..., compress_statistics=True)`.
    pub fn quantize(&mut self, simd: bool) -> Result<u32, JsValue> {
        blockwise4::quantize_packed_into(&self.input, self.quant_type, self.blocksize, false, kernel(simd), &mut self.packed, &mut self.absmax)
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
        let nested = double_quant::compress(&self.absmax).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let r = self.packed[0] as u32 + nested.quantized[0] as u32;
        self.nested = Some(nested);
        Ok(r)
    }

    /// dequantize_4bit to f16 including the rebuild of the double-quantized absmax
    /// (call `quantize` first).
    pub fn dequantize(&mut self, simd: bool) -> Result<u32, JsValue> {
        let Some(nested) = &self.nested else { return Err(JsValue::from_str("call quantize() before dequantize()")) };
        let absmax = double_quant::decompress(nested).map_err(|e| JsValue::from_str(&e.to_string()))?;
        decode(&self.packed, &absmax, self.blocksize, self.quant_type, &mut self.output, kernel(simd)).map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok(self.output[self.output.len() / 2].to_bits() as u32)
    }

    /// Part of `quantize`: the 4-bit codes and f32 absmax only (no double quant).
    pub fn quantize_codes(&mut self, simd: bool) -> Result<u32, JsValue> {
        blockwise4::quantize_packed_into(&self.input, self.quant_type, self.blocksize, false, kernel(simd), &mut self.packed, &mut self.absmax)
            .map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok(self.packed[0] as u32)
    }

    /// Part of `quantize`: double quantization of the f32 absmax (call `quantize_codes` first).
    pub fn compress_absmax(&mut self) -> Result<u32, JsValue> {
        let nested = double_quant::compress(&self.absmax).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let r = nested.quantized[0] as u32;
        self.nested = Some(nested);
        Ok(r)
    }

    /// Part of `dequantize`: rebuild the f32 absmax from the nested codes into `absmax`.
    pub fn decompress_absmax(&mut self) -> Result<u32, JsValue> {
        let Some(nested) = &self.nested else { return Err(JsValue::from_str("call quantize() before decompress_absmax()")) };
        self.absmax = double_quant::decompress(nested).map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok(self.absmax[0].to_bits())
    }

    /// Part of `dequantize`: decode the codes with the f32 absmax already rebuilt.
    pub fn decode_codes(&mut self, simd: bool) -> Result<u32, JsValue> {
        decode(&self.packed, &self.absmax, self.blocksize, self.quant_type, &mut self.output, kernel(simd)).map_err(|e| JsValue::from_str(&e.to_string()))?;
        Ok(self.output[self.output.len() / 2].to_bits() as u32)
    }

    /// Bytes of the 4-bit codes alone.
    pub fn packed_bytes(&self) -> f64 {
        self.packed.len() as f64
    }

    /// Bytes of the f16 output of `dequantize`.
    pub fn output_bytes(&self) -> f64 {
        (self.output.len() * 2) as f64
    }

    /// One pass writing every byte of the output buffer (same size as the input): the write
    /// bandwidth that bounds `dequantize` from below.
    pub fn write_pass(&mut self, v: u32) -> u32 {
        // SAFETY: f16 is 2 bytes; viewing the buffer as u32 words (n/2 of them) stays inside it.
        let words = unsafe { core::slice::from_raw_parts_mut(self.output.as_mut_ptr() as *mut u32, self.output.len() / 2) };
        write_words(words, v);
        self.output[self.output.len() / 2].to_bits() as u32
    }

    /// Order-dependent hash of the codes, the nested absmax state and the f16 output
    /// (checks that the SIMD and scalar kernels produced the same bytes; not timed).
    pub fn checksum(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        let mut eat = |w: u64| h = (h ^ w).wrapping_mul(0x100000001b3).rotate_left(5);
        for c in self.packed.chunks(8) {
            eat(c.iter().fold(0u64, |a, &b| (a << 8) | b as u64));
        }
        if let Some(n) = &self.nested {
            for c in n.quantized.chunks(8) {
                eat(c.iter().fold(0u64, |a, &b| (a << 8) | b as u64));
            }
            n.absmax.iter().for_each(|a| eat(a.to_bits() as u64));
            eat(n.offset.to_bits() as u64);
        }
        self.output.iter().for_each(|v| eat(v.to_bits() as u64));
        format!("{h:016x}")
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn read_words(words: &[u32]) -> u32 {
    use core::arch::wasm32::*;
    let chunks = words.len() / 16;
    let mut acc = [u32x4_splat(0); 4];
    // SAFETY: each iteration reads 16 words inside `words`.
    unsafe {
        for c in 0..chunks {
            let p = words.as_ptr().add(c * 16) as *const v128;
            for (i, a) in acc.iter_mut().enumerate() {
                *a = v128_xor(*a, v128_load(p.add(i)));
            }
        }
    }
    let v = v128_xor(v128_xor(acc[0], acc[1]), v128_xor(acc[2], acc[3]));
    let mut r = u32x4_extract_lane::<0>(v) ^ u32x4_extract_lane::<1>(v) ^ u32x4_extract_lane::<2>(v) ^ u32x4_extract_lane::<3>(v);
    for w in &words[chunks * 16..] {
        r ^= w;
    }
    r
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn write_words(words: &mut [u32], v: u32) {
    use core::arch::wasm32::*;
    let chunks = words.len() / 16;
    let x = u32x4_splat(v);
    // SAFETY: each iteration writes 16 words inside `words`.
    unsafe {
        for c in 0..chunks {
            let p = words.as_mut_ptr().add(c * 16) as *mut v128;
            for i in 0..4 {
                v128_store(p.add(i), x);
            }
        }
    }
    for w in &mut words[chunks * 16..] {
        *w = v;
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn write_words(words: &mut [u32], v: u32) {
    words.iter_mut().for_each(|w| *w = v);
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn read_words(words: &[u32]) -> u32 {
    words.iter().fold(0, |a, w| a ^ w)
}
