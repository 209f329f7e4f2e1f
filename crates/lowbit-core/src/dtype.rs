//! Element dtypes and their conversions. f16/bf16 come from the `half` crate, whose
//! f32 -> f16/bf16 conversions round to nearest even, as torch and the bitsandbytes kernels do.

use crate::error::{bail, Result};
pub use half::{bf16, f16};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    U8,
    I8,
    I32,
}

impl DType {
    /// The name torch prints after stripping "torch." (what bitsandbytes writes in its JSON).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I32 => "int32",
        }
    }
    pub fn from_torch_name(name: &str) -> Result<DType> {
        Ok(match name {
            "float32" | "float" => DType::F32,
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "uint8" => DType::U8,
            "int8" => DType::I8,
            "int32" | "int" => DType::I32,
            other => bail!(UnsupportedDtype, "unknown dtype '{other}' (expected float32, float16, bfloat16, uint8, int8 or int32)"),
        })
    }
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 | DType::I8 => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

/// A floating-point element that quantizers read and dequantizers write.
pub trait Float: Copy + Default + Send + Sync + 'static {
    const DTYPE: DType;
    fn to_f32(self) -> f32;
    /// Round-to-nearest-even conversion from f32.
    fn from_f32(v: f32) -> Self;
}

impl Float for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Float for f16 {
    const DTYPE: DType = DType::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Float for bf16 {
    const DTYPE: DType = DType::BF16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Number of elements of a shape, refusing overflow.
pub fn numel(shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = match n.checked_mul(d) {
            Some(v) => v,
            None => bail!(InvalidArgument, "shape {shape:?} has more elements than fit in memory"),
        };
    }
    Ok(n)
}

/// SIMD loads for the three float dtypes: four elements widened to an f32x4 (bit-exact).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub trait SimdLoad: Float {
    /// # Safety
    /// `ptr` must point to 4 readable elements.
    unsafe fn load4(ptr: *const Self) -> core::arch::wasm32::v128;
}
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub trait SimdLoad: Float {}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd_load {
    use super::*;
    use core::arch::wasm32::*;

    impl SimdLoad for f32 {
        #[inline(always)]
        unsafe fn load4(ptr: *const Self) -> v128 {
            v128_load(ptr as *const v128)
        }
    }
    impl SimdLoad for bf16 {
        #[inline(always)]
        unsafe fn load4(ptr: *const Self) -> v128 {
            // bf16 is the top half of an f32.
            i32x4_shl(u32x4_extend_low_u16x8(v128_load64_zero(ptr as *const u64)), 16)
        }
    }
    impl SimdLoad for f16 {
        #[inline(always)]
        unsafe fn load4(ptr: *const Self) -> v128 {
            // Exact f16 -> f32: move exponent+mantissa into place and rescale by 2^112 (exact for
            // normals and subnormals); Inf/NaN (exponent 31) get the f32 all-ones exponent.
            let h = u32x4_extend_low_u16x8(v128_load64_zero(ptr as *const u64));
            let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
            let em = v128_and(h, u32x4_splat(0x7fff));
            let shifted = i32x4_shl(em, 13);
            let finite = f32x4_mul(shifted, f32x4_splat(f32::from_bits(0x77800000))); // 2^112
            let special = v128_or(shifted, u32x4_splat(0x7f800000));
            let is_special = i32x4_ge(em, i32x4_splat(0x7c00));
            v128_or(v128_bitselect(special, finite, is_special), sign)
        }
    }
}
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
impl SimdLoad for f32 {}
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
impl SimdLoad for f16 {}
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
impl SimdLoad for bf16 {}
