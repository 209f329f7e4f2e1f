//! lowbit-core: bitsandbytes-compatible quantization formats in pure Rust.
//!
//! - [`codebook`]: NF4 / FP4 / INT4 tables and the 8-bit dynamic map.
//! - [`blockwise4`]: 4-bit block-wise quantize / dequantize (`quantize_4bit`).
//! - [`blockwise8`]: 8-bit block-wise quantize / dequantize with the dynamic map.
//! - [`double_quant`]: compress_statistics (8-bit quantized absmax with an offset).
//! - [`int8`]: LLM.int8 vector-wise quantization and the outlier split.
//! - [`quant_state`]: `QuantState` and the exact dict bitsandbytes / transformers write.
//! - [`simd`]: wasm SIMD128 versions of the hot loops (the scalar code is the reference).
//! - [`formats`]: checkpoint parsing (safetensors, GGUF), validated before anything is allocated.
//!
//! Nothing in this crate panics on user input: every check returns an [`Error`].

pub mod blockwise4;
pub mod blockwise8;
pub mod codebook;
pub mod double_quant;
pub mod dtype;
pub mod error;
pub mod formats;
pub mod int8;
pub mod kernels;
pub mod pyfloat;
pub mod quant_state;
pub mod simd;

pub use codebook::QuantType4;
pub use dtype::{bf16, f16, DType, Float};
pub use error::{Error, ErrorKind, Result};
pub use quant_state::{Absmax, NestedAbsmax, QuantState};

/// Which implementation of a hot loop to run. Both give identical bits; the scalar one is
/// the reference the SIMD one is tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Scalar,
    /// wasm32 SIMD128. On builds without it this falls back to `Scalar`.
    Simd128,
}

impl Kernel {
    pub const SIMD128_AVAILABLE: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

    pub fn best() -> Kernel {
        if Self::SIMD128_AVAILABLE {
            Kernel::Simd128
        } else {
            Kernel::Scalar
        }
    }

    #[inline(always)]
    pub(crate) fn use_simd(self) -> bool {
        Self::SIMD128_AVAILABLE && self == Kernel::Simd128
    }
}

/// Blocksizes bitsandbytes 0.50 accepts for 4-bit quantization.
pub const BLOCKSIZES_4BIT: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];
/// Blocksizes we accept for 8-bit block-wise quantization (bitsandbytes' CUDA set plus 32).
pub const BLOCKSIZES_8BIT: [usize; 8] = BLOCKSIZES_4BIT;
/// Double quantization always quantizes the absmax in blocks of 256 (bitsandbytes' fixed value).
pub const NESTED_BLOCKSIZE: usize = 256;
