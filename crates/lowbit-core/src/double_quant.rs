//! Double quantization ("compress_statistics", spec §4): the f32 absmax of a 4-bit tensor is
//! stored as 8-bit codes of (absmax - mean) with the signed dynamic map in blocks of 256.

use crate::blockwise8;
use crate::codebook::dynamic_map_signed;
use crate::dtype::{bf16, f16, DType, Float};
use crate::error::{bail, Result};
use crate::quant_state::NestedAbsmax;
use crate::NESTED_BLOCKSIZE;

/// Quantize a 4-bit tensor's absmax.
///
/// The offset is the mean, summed in f64 and rounded once to f32 (torch sums in f32 with its
/// own order, so its mean can differ in the last bit; the golden tests count such cases).
pub fn compress(absmax: &[f32]) -> Result<NestedAbsmax> {
    let sum: f64 = absmax.iter().map(|&a| a as f64).sum();
    let offset = (sum / absmax.len() as f64) as f32;
    let centered: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
    let code = dynamic_map_signed();
    let (quantized, nested_absmax) = blockwise8::quantize_blockwise(&centered, code, NESTED_BLOCKSIZE, false)?;
    Ok(NestedAbsmax { quantized, offset, absmax: nested_absmax, code: code.to_vec(), blocksize: NESTED_BLOCKSIZE, dtype: DType::F32 })
}

/// Rebuild the f32 absmax: `f32(f32(code[q] * nested_absmax[i / 256]) + offset)`, two separate
/// roundings (no FMA), each in `nested_dtype` as bitsandbytes' dequantize_blockwise does.
pub fn decompress(n: &NestedAbsmax) -> Result<Vec<f32>> {
    fn go<T: Float>(n: &NestedAbsmax) -> Result<Vec<f32>> {
        let mut tmp = vec![T::default(); n.quantized.len()];
        blockwise8::dequantize_blockwise(&n.quantized, &n.absmax, &n.code, n.blocksize, &mut tmp)?;
        Ok(tmp.into_iter().map(|v| T::from_f32(v.to_f32() + n.offset).to_f32()).collect())
    }
    match n.dtype {
        DType::F32 => go::<f32>(n),
        DType::F16 => go::<f16>(n),
        DType::BF16 => go::<bf16>(n),
        other => bail!(UnsupportedDtype, "nested_dtype {} is not a float dtype", other.torch_name()),
    }
}
