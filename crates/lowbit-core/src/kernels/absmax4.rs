//! Where a 4-bit weight's per-block absmax comes from: a plain f32 array, or the double-quantized
//! form kept compressed (spec §4: one 8-bit code per block, an f32 absmax per nested block of 256
//! codes, an offset), about 1 byte per block instead of 4. The kernels read one absmax per
//! block of weights ([`Absmax4::get`]); a nested one is rebuilt on the spot with
//! [`double_quant::absmax_value`], the function [`double_quant::decompress`] uses, so both
//! sources give the same f32 bits and every kernel output is the same.

use crate::double_quant;
use crate::dtype::{bf16, f16, DType};
use crate::error::{bail, Result};
use crate::quant_state::NestedAbsmax;

/// Double-quantized absmax of a run of consecutive blocks (a whole weight, or a thread's slice).
#[derive(Debug, Clone, Copy)]
pub struct NestedAbsmax4<'a> {
    /// One 8-bit code per block of this run.
    pub codes: &'a [u8],
    /// The 256-entry code the absmax were quantized with (`nested_quant_map`).
    pub code: &'a [f32; 256],
    /// The nested absmax entries covering the run: `codes[b]` belongs to nested block
    /// `(phase + b) / nested_blocksize` of this slice.
    pub nested: &'a [f32],
    pub nested_blocksize: usize,
    /// Position of `codes[0]` inside its nested block (0 for a whole weight; for a slice starting
    /// at global block b0, `b0 % nested_blocksize`, with `nested` starting at entry
    /// `b0 / nested_blocksize`).
    pub phase: usize,
    pub offset: f32,
    /// `nested_dtype`: f32, f16 or bf16 (the rounding of both steps).
    pub dtype: DType,
}

impl<'a> NestedAbsmax4<'a> {
    /// Validates the lengths against each other.
    #[allow(clippy::too_many_arguments)]
    pub fn new(codes: &'a [u8], code: &'a [f32], nested: &'a [f32], nested_blocksize: usize, phase: usize, offset: f32, dtype: DType) -> Result<Self> {
        let code: &[f32; 256] = match code.try_into() {
            Ok(c) => c,
            Err(_) => bail!(InvalidArgument, "the nested code must have 256 entries, got {}", code.len()),
        };
        let a = NestedAbsmax4 { codes, code, nested, nested_blocksize, phase, offset, dtype };
        a.validate()?;
        Ok(a)
    }

    /// A whole weight's nested absmax, as a QuantState holds it.
    pub fn from_state(n: &'a NestedAbsmax) -> Result<Self> {
        NestedAbsmax4::new(&n.quantized, &n.code, &n.absmax, n.blocksize, 0, n.offset, n.dtype)
    }

    pub fn validate(&self) -> Result<()> {
        if self.nested_blocksize == 0 || self.phase >= self.nested_blocksize {
            bail!(InconsistentState, "nested blocksize {} with phase {} (the phase must be below the blocksize)", self.nested_blocksize, self.phase);
        }
        // The run seen from the start of its first nested block: phase + codes.len() codes.
        let span = match self.phase.checked_add(self.codes.len()) {
            Some(s) => s,
            None => bail!(InvalidArgument, "{} codes past phase {} overflow", self.codes.len(), self.phase),
        };
        double_quant::check(span, self.nested.len(), self.code.len(), self.nested_blocksize, self.dtype)?;
        if !self.offset.is_finite() {
            bail!(InconsistentState, "nested_offset must be finite, found {}", self.offset);
        }
        Ok(())
    }

    /// The f32 absmax of block `b` of the run, the bits `decompress` gives it.
    #[inline(always)]
    pub fn get(&self, b: usize) -> f32 {
        let c = self.code[self.codes[b] as usize];
        let i = self.phase + b;
        // bitsandbytes' nested blocksize is 256: a shift instead of a division in the kernels' loops
        let nb = if self.nested_blocksize.is_power_of_two() { i >> self.nested_blocksize.trailing_zeros() } else { i / self.nested_blocksize };
        let a = self.nested[nb];
        match self.dtype {
            DType::F16 => double_quant::absmax_value::<f16>(c, a, self.offset),
            DType::BF16 => double_quant::absmax_value::<bf16>(c, a, self.offset),
            // F32 (validate admits only float dtypes)
            _ => double_quant::absmax_value::<f32>(c, a, self.offset),
        }
    }
}

/// The absmax of a 4-bit weight, one per block of its flattened elements.
#[derive(Debug, Clone, Copy)]
pub enum Absmax4<'a> {
    F32(&'a [f32]),
    Nested(NestedAbsmax4<'a>),
}

impl<'a> Absmax4<'a> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        match self {
            Absmax4::F32(a) => a.len(),
            Absmax4::Nested(n) => n.codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            Absmax4::F32(_) => Ok(()),
            Absmax4::Nested(n) => n.validate(),
        }
    }

    /// Absmax of block `b` (b < len()).
    #[inline(always)]
    pub fn get(&self, b: usize) -> f32 {
        match self {
            Absmax4::F32(a) => a[b],
            Absmax4::Nested(n) => n.get(b),
        }
    }

    /// The f32 absmax of blocks [b0, b1): borrowed when plain, rebuilt into `buf` when nested.
    pub fn range<'s>(&'s self, b0: usize, b1: usize, buf: &'s mut Vec<f32>) -> &'s [f32] {
        match self {
            Absmax4::F32(a) => &a[b0..b1],
            Absmax4::Nested(n) => {
                buf.clear();
                buf.extend((b0..b1).map(|b| n.get(b)));
                buf
            }
        }
    }

    /// Every block's f32 absmax.
    pub fn to_vec(&self) -> Vec<f32> {
        let mut buf = Vec::new();
        self.range(0, self.len(), &mut buf).to_vec()
    }
}
