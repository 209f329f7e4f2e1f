//! 4-bit layers (NF4 / FP4 / INT4): packed codes, absmax per block as f32 or kept
//! double-quantized (each block's absmax rebuilt by the kernels as they reach it:
//! `matmul4::NestedAbsmax4`), and bitsandbytes' compute dtype.

use super::{LinearWeights, FAST_MAX_ROWS};
use lowbit_core::codebook::dynamic_map_signed;
use lowbit_core::kernels::int_activations::IntActivations;
use lowbit_core::kernels::{matmul4, matmul4_half, matmul4_int};
use lowbit_core::{bf16, f16, DType, Error, ErrorKind, Kernel, QuantType4, Result};

/// The parts of a double-quantized absmax (see `Linear.fourBitNested`).
pub(super) struct NestedParts {
    pub codes: Vec<u8>,
    pub code: Vec<f32>,
    pub nested: Vec<f32>,
    pub nested_blocksize: usize,
    pub phase: usize,
    pub offset: f32,
    pub dtype: DType,
}

/// The absmax as held. The nested code is stored only when it is not bitsandbytes' signed
/// dynamic map (the one every double-quantized checkpoint uses), so a layer holds about 1 byte
/// per block.
enum Absmax {
    F32(Vec<f32>),
    Nested { codes: Vec<u8>, code: Option<Box<[f32; 256]>>, nested: Vec<f32>, nested_blocksize: usize, phase: usize, offset: f32, dtype: DType },
}

pub(super) struct FourBit {
    packed: Vec<u8>,
    absmax: Absmax,
    quant_type: QuantType4,
    blocksize: usize,
    n: usize,
    k: usize,
    /// bnb_4bit_compute_dtype: F32 (the fused f32 or integer kernels) or F16 / BF16 (matmul4_half).
    compute: DType,
}

impl FourBit {
    pub fn new(packed: Vec<u8>, absmax: Vec<f32>, quant_type: &str, blocksize: usize, n: usize, k: usize) -> Result<FourBit> {
        let quant_type = QuantType4::parse(quant_type)?;
        matmul4::Weight4::new(&packed, &absmax, quant_type, blocksize, n, k)?;
        Ok(FourBit { packed, absmax: Absmax::F32(absmax), quant_type, blocksize, n, k, compute: DType::F32 })
    }

    pub fn new_nested(packed: Vec<u8>, p: NestedParts, quant_type: &str, blocksize: usize, n: usize, k: usize) -> Result<FourBit> {
        let quant_type = QuantType4::parse(quant_type)?;
        let a = matmul4::NestedAbsmax4::new(&p.codes, &p.code, &p.nested, p.nested_blocksize, p.phase, p.offset, p.dtype)?;
        matmul4::Weight4::with_absmax(&packed, matmul4::Absmax4::Nested(a), quant_type, blocksize, n, k)?;
        // the same bits as the static map: use it (the results cannot differ)
        let builtin = p.code.iter().zip(dynamic_map_signed()).all(|(a, b)| a.to_bits() == b.to_bits());
        let code: Option<Box<[f32; 256]>> = if builtin {
            None
        } else {
            Some(p.code.into_boxed_slice().try_into().map_err(|_| Error::new(ErrorKind::InvalidArgument, "the nested code must have 256 entries"))?)
        };
        let absmax = Absmax::Nested { codes: p.codes, code, nested: p.nested, nested_blocksize: p.nested_blocksize, phase: p.phase, offset: p.offset, dtype: p.dtype };
        Ok(FourBit { packed, absmax, quant_type, blocksize, n, k, compute: DType::F32 })
    }

    fn view(&self) -> matmul4::Weight4<'_> {
        let absmax = match &self.absmax {
            Absmax::F32(a) => matmul4::Absmax4::F32(a),
            Absmax::Nested { codes, code, nested, nested_blocksize, phase, offset, dtype } => matmul4::Absmax4::Nested(matmul4::NestedAbsmax4 {
                codes,
                code: code.as_deref().unwrap_or(dynamic_map_signed()),
                nested,
                nested_blocksize: *nested_blocksize,
                phase: *phase,
                offset: *offset,
                dtype: *dtype,
            }),
        };
        matmul4::Weight4 { packed: &self.packed, absmax, quant_type: self.quant_type, blocksize: self.blocksize, n: self.n, k: self.k }
    }
}

impl LinearWeights for FourBit {
    fn n(&self) -> usize {
        self.n
    }

    fn k(&self) -> usize {
        self.k
    }

    fn bytes(&self) -> usize {
        self.packed.len()
            + match &self.absmax {
                Absmax::F32(a) => a.len() * 4,
                Absmax::Nested { codes, code, nested, .. } => codes.len() + code.as_ref().map_or(0, |c| c.len() * 4) + nested.len() * 4,
            }
    }

    fn format(&self) -> String {
        let dq = if matches!(self.absmax, Absmax::Nested { .. }) { "+dq" } else { "" };
        format!("{}{dq}", self.quant_type.name())
    }

    fn integer_path(&self, rows: usize) -> bool {
        self.compute == DType::F32 && rows <= FAST_MAX_ROWS && matmul4_int::supports(&self.view())
    }

    fn forward(&self, x: &[f32], m: usize, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        let w = self.view();
        match self.compute {
            DType::F16 => matmul4_half::matmul4_half::<f16>(x, m, &w, bias, out, Kernel::best()),
            DType::BF16 => matmul4_half::matmul4_half::<bf16>(x, m, &w, bias, out, Kernel::best()),
            _ => matmul4::matmul4(x, m, &w, bias, out, Kernel::best()),
        }
    }

    fn forward_int(&self, xq: &IntActivations, bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        matmul4_int::matmul4_int_quantized(xq, &self.view(), bias, out, Kernel::best())
    }

    fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::new(ErrorKind::UnsupportedDtype, format!("the compute dtype must be float32, float16 or bfloat16, not {}", dtype.torch_name())));
        }
        self.compute = dtype;
        Ok(())
    }
}
