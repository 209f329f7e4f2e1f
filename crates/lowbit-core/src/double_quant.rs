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

/// One rebuilt absmax, `T(T(code_value * nested_absmax) + offset)` as f32: two separate
/// roundings (no FMA), each in `nested_dtype` T, as bitsandbytes' dequantize_blockwise then the
/// offset add do. [`decompress`] and the kernels' on-the-fly lookup
/// ([`crate::kernels::absmax4::NestedAbsmax4::get`]) both go through this, so they agree bit for bit.
#[inline(always)]
pub fn absmax_value<T: Float>(code_value: f32, nested_absmax: f32, offset: f32) -> f32 {
    T::from_f32(T::from_f32(code_value * nested_absmax).to_f32() + offset).to_f32()
}

/// Checks the nested fields against each other (codes, nested absmax per `blocksize` codes, a
/// 256-entry code, a float dtype).
pub fn check(quantized: usize, nested_absmax: usize, code: usize, blocksize: usize, dtype: DType) -> Result<()> {
    if code != 256 {
        bail!(InvalidArgument, "an 8-bit code must have 256 entries, got {code}");
    }
    if blocksize == 0 {
        bail!(UnsupportedBlocksize, "blocksize must be positive");
    }
    if nested_absmax != quantized.div_ceil(blocksize) {
        bail!(InconsistentState, "absmax has {nested_absmax} entries but {quantized} codes in blocks of {blocksize} need {}", quantized.div_ceil(blocksize));
    }
    if !dtype.is_float() {
        bail!(UnsupportedDtype, "nested_dtype {} is not a float dtype", dtype.torch_name());
    }
    Ok(())
}

/// Rebuild the f32 absmax: [`absmax_value`] of every code.
pub fn decompress(n: &NestedAbsmax) -> Result<Vec<f32>> {
    fn go<T: Float>(n: &NestedAbsmax) -> Vec<f32> {
        n.quantized.iter().enumerate().map(|(i, &q)| absmax_value::<T>(n.code[q as usize], n.absmax[i / n.blocksize], n.offset)).collect()
    }
    check(n.quantized.len(), n.absmax.len(), n.code.len(), n.blocksize, n.dtype)?;
    match n.dtype {
        DType::F32 => Ok(go::<f32>(n)),
        DType::F16 => Ok(go::<f16>(n)),
        DType::BF16 => Ok(go::<bf16>(n)),
        other => bail!(UnsupportedDtype, "nested_dtype {} is not a float dtype", other.torch_name()),
    }
}
