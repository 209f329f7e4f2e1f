//! GGUF v2 / v3: a streaming, validating header parser and dequantization of F32, F16, BF16,
//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K to f32 / f16 / bf16.
//!
//! # Layout (little-endian throughout)
//!
//! ```text
//! magic "GGUF" | version u32 | n_tensors u64 | n_kv u64            (24 bytes; v1 used u32 counts)
//! n_kv x       { key: string, value_type u32, value }
//! n_tensors x  { name: string, n_dims u32, ne u64 x n_dims, ggml_type u32, offset u64 }
//! padding to general.alignment (u32, a power of two, default 32)  -> data_start
//! tensor data; each tensor at data_start + offset, offset a multiple of the alignment
//!
//! string = len u64, UTF-8 bytes (no NUL)
//! array  = elem_type u32, count u64, count x value-of-elem_type (no per-element type tag;
//!          an element of type array is itself elem_type u32, count u64, ...)
//! ```
//!
//! v3 differs from v2 only in allowing big-endian files, which this parser refuses (with a
//! message saying so). Facts used here, none of its code: ggml's `docs/gguf.md`, ggml's
//! `gguf.cpp` (`gguf_init_from_file_impl`: the checks it makes, which this parser makes too),
//! `ggml.h` (`enum ggml_type`, `GGML_MAX_DIMS`), `ggml-common.h` (the `block_*` structs) and
//! `ggml-quants.c` (`dequantize_row_*`, `get_scale_min_k4`), and the `gguf` Python package 0.19.0
//! (`constants.py`: `GGML_QUANT_SIZES`, `GGMLQuantizationType`, `GGUFValueType`; `quants.py`:
//! the numpy dequantizers the tests compare against bit for bit).
//!
//! # Hostile input
//!
//! Every count, length and offset is checked against the bytes left in the file (and, before
//! anything is allocated for it, against the bytes actually present in the prefix) with
//! checked arithmetic. Nothing here panics on any input; every failure is an [`Error`] whose
//! kind is `MalformedFile` (the file breaks the format), `UnsupportedDtype` (a ggml type we
//! do not know, or cannot dequantize), `NeedMoreData` (the caller must read more of the file)
//! or, for [`dequantize`], `LengthMismatch`.

// `is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.81.
#![allow(clippy::manual_is_multiple_of)]

use crate::dtype::{f16, Float};
use crate::error::{bail, Error, ErrorKind, Result};
use std::ops::Range;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: u32 = 32;
/// ggml tensors have at most four dimensions (`GGML_MAX_DIMS` in ggml.h).
pub const GGML_MAX_DIMS: usize = 4;
/// Longest string (metadata key, string value, tensor name) accepted, in bytes.
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Deepest nesting of metadata arrays accepted (an array of arrays is 2). ggml itself reads
/// no nested arrays; the GGUF spec allows them and gguf-py writes them.
pub const MAX_ARRAY_DEPTH: u32 = 4;
/// Bytes of the fixed part of the header: magic, version, tensor count, metadata count.
pub const FIXED_HEADER_LEN: u64 = 24;

/// Fewest bytes one metadata entry takes: key length, a 1-byte key (empty keys are refused),
/// the value type, a 1-byte value.
const MIN_KV_LEN: u64 = 8 + 1 + 4 + 1;
/// Fewest bytes one tensor info takes: name length (empty name), n_dims = 0, type, offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 4 + 8;

// ---------------------------------------------------------------------------------------------
// ggml tensor types

macro_rules! ggml_types {
    ($($var:ident = $id:literal, $block:literal, $size:literal;)*) => {
        /// A ggml tensor type (`enum ggml_type`), with its id as the discriminant.
        ///
        /// Every type ggml still defines parses (so a file's header can be read whatever its
        /// tensors are); [`GgmlType::can_dequantize`] tells which ones [`dequantize`] takes.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum GgmlType {
            $($var = $id,)*
        }

        impl GgmlType {
            /// Every type ggml defines, in id order.
            pub const ALL: &'static [GgmlType] = &[$(GgmlType::$var,)*];

            fn lookup(id: u32) -> Option<GgmlType> {
                match id {
                    $($id => Some(GgmlType::$var),)*
                    _ => None,
                }
            }

            /// The name ggml and gguf-py print ("Q4_K").
            pub fn name(self) -> &'static str {
                match self {
                    $(GgmlType::$var => stringify!($var),)*
                }
            }

            /// Elements per block (1 for the plain types).
            pub fn block_size(self) -> u64 {
                match self {
                    $(GgmlType::$var => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> u64 {
                match self {
                    $(GgmlType::$var => $size,)*
                }
            }
        }
    };
}

// Ids from ggml.h / gguf-py GGMLQuantizationType; (block size, bytes per block) from gguf-py
// GGML_QUANT_SIZES, which mirrors ggml's type_traits.
ggml_types! {
    F32 = 0, 1, 4;
    F16 = 1, 1, 2;
    Q4_0 = 2, 32, 18;
    Q4_1 = 3, 32, 20;
    Q5_0 = 6, 32, 22;
    Q5_1 = 7, 32, 24;
    Q8_0 = 8, 32, 34;
    Q8_1 = 9, 32, 40;
    Q2_K = 10, 256, 84;
    Q3_K = 11, 256, 110;
    Q4_K = 12, 256, 144;
    Q5_K = 13, 256, 176;
    Q6_K = 14, 256, 210;
    Q8_K = 15, 256, 292;
    IQ2_XXS = 16, 256, 66;
    IQ2_XS = 17, 256, 74;
    IQ3_XXS = 18, 256, 98;
    IQ1_S = 19, 256, 50;
    IQ4_NL = 20, 32, 18;
    IQ3_S = 21, 256, 110;
    IQ2_S = 22, 256, 82;
    IQ4_XS = 23, 256, 136;
    I8 = 24, 1, 1;
    I16 = 25, 1, 2;
    I32 = 26, 1, 4;
    I64 = 27, 1, 8;
    F64 = 28, 1, 8;
    IQ1_M = 29, 256, 56;
    BF16 = 30, 1, 2;
    TQ1_0 = 34, 256, 54;
    TQ2_0 = 35, 256, 66;
    MXFP4 = 39, 32, 17;
    NVFP4 = 40, 64, 36;
    Q1_0 = 41, 128, 18;
}

impl GgmlType {
    /// The type with ggml id `id`. Unknown and removed ids give `UnsupportedDtype` naming the id.
    pub fn from_id(id: u32) -> Result<GgmlType> {
        if let Some(t) = Self::lookup(id) {
            return Ok(t);
        }
        let removed = match id {
            4 => Some("Q4_2"),
            5 => Some("Q4_3"),
            31 => Some("Q4_0_4_4"),
            32 => Some("Q4_0_4_8"),
            33 => Some("Q4_0_8_8"),
            36 => Some("IQ4_NL_4_4"),
            37 => Some("IQ4_NL_4_8"),
            38 => Some("IQ4_NL_8_8"),
            _ => None,
        };
        match removed {
            Some(name) => bail!(UnsupportedDtype, "ggml type {id} ({name}) was removed from ggml and is not supported; convert the model again"),
            None => bail!(UnsupportedDtype, "unknown ggml type {id}"),
        }
    }

    /// The ggml id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Whether [`dequantize`] takes this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K)
    }

    /// Bytes that `n_elements` elements of this type take, or `None` when `n_elements` is not
    /// a multiple of the block size or the size overflows.
    pub fn byte_size(self, n_elements: u64) -> Option<u64> {
        if n_elements % self.block_size() != 0 {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// metadata values

/// The type tag of a metadata value (`gguf_type` / gguf-py `GGUFValueType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgufValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl GgufValueType {
    pub fn from_id(id: u32) -> Option<GgufValueType> {
        use GgufValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        use GgufValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Size of one value of a fixed-size type.
    fn fixed_size(self) -> Option<u64> {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// Fewest bytes one value of this type takes (a string's length; an array's type + count).
    fn min_size(self) -> u64 {
        match self {
            GgufValueType::String => 8,
            GgufValueType::Array => 4 + 8,
            other => other.fixed_size().unwrap_or(1),
        }
    }
}

/// A metadata value. Strings that are not valid UTF-8 are kept with U+FFFD replacing the bad
/// bytes (keys and tensor names must be valid UTF-8).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: one vector of its element type (a file's u8 array takes one byte per
/// element in memory too; the parser never holds more than a few times the header's size).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Nested arrays, each with its own element type and length.
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufArray {
    pub fn elem_type(&self) -> GgufValueType {
        use GgufArray as A;
        use GgufValueType as T;
        match self {
            A::U8(_) => T::U8,
            A::I8(_) => T::I8,
            A::U16(_) => T::U16,
            A::I16(_) => T::I16,
            A::U32(_) => T::U32,
            A::I32(_) => T::I32,
            A::F32(_) => T::F32,
            A::Bool(_) => T::Bool,
            A::String(_) => T::String,
            A::Array(_) => T::Array,
            A::U64(_) => T::U64,
            A::I64(_) => T::I64,
            A::F64(_) => T::F64,
        }
    }

    pub fn len(&self) -> usize {
        use GgufArray as A;
        match self {
            A::U8(v) => v.len(),
            A::I8(v) => v.len(),
            A::U16(v) => v.len(),
            A::I16(v) => v.len(),
            A::U32(v) => v.len(),
            A::I32(v) => v.len(),
            A::F32(v) => v.len(),
            A::Bool(v) => v.len(),
            A::String(v) => v.len(),
            A::Array(v) => v.len(),
            A::U64(v) => v.len(),
            A::I64(v) => v.len(),
            A::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a [`GgufValue`] (strings and nested arrays are cloned).
    pub fn get(&self, i: usize) -> Option<GgufValue> {
        use GgufArray as A;
        use GgufValue as V;
        Some(match self {
            A::U8(v) => V::U8(*v.get(i)?),
            A::I8(v) => V::I8(*v.get(i)?),
            A::U16(v) => V::U16(*v.get(i)?),
            A::I16(v) => V::I16(*v.get(i)?),
            A::U32(v) => V::U32(*v.get(i)?),
            A::I32(v) => V::I32(*v.get(i)?),
            A::F32(v) => V::F32(*v.get(i)?),
            A::Bool(v) => V::Bool(*v.get(i)?),
            A::String(v) => V::String(v.get(i)?.clone()),
            A::Array(v) => V::Array(v.get(i)?.clone()),
            A::U64(v) => V::U64(*v.get(i)?),
            A::I64(v) => V::I64(*v.get(i)?),
            A::F64(v) => V::F64(*v.get(i)?),
        })
    }

    /// The elements of an array of strings.
    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }
}

impl GgufValue {
    pub fn value_type(&self) -> GgufValueType {
        use GgufValue as V;
        use GgufValueType as T;
        match self {
            V::U8(_) => T::U8,
            V::I8(_) => T::I8,
            V::U16(_) => T::U16,
            V::I16(_) => T::I16,
            V::U32(_) => T::U32,
            V::I32(_) => T::I32,
            V::F32(_) => T::F32,
            V::Bool(_) => T::Bool,
            V::String(_) => T::String,
            V::Array(..) => T::Array,
            V::U64(_) => T::U64,
            V::I64(_) => T::I64,
            V::F64(_) => T::F64,
        }
    }

    /// Any integer value that is non-negative, as u64.
    pub fn as_u64(&self) -> Option<u64> {
        use GgufValue as V;
        match *self {
            V::U8(v) => Some(v.into()),
            V::U16(v) => Some(v.into()),
            V::U32(v) => Some(v.into()),
            V::U64(v) => Some(v),
            V::I8(v) => u64::try_from(v).ok(),
            V::I16(v) => u64::try_from(v).ok(),
            V::I32(v) => u64::try_from(v).ok(),
            V::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        use GgufValue as V;
        match *self {
            V::I8(v) => Some(v.into()),
            V::I16(v) => Some(v.into()),
            V::I32(v) => Some(v.into()),
            V::I64(v) => Some(v),
            V::U8(v) => Some(v.into()),
            V::U16(v) => Some(v.into()),
            V::U32(v) => Some(v.into()),
            V::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// An f32 or f64 value, as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// header

/// One tensor's description.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml's `ne`: dimension sizes innermost first, so `shape[0]` is the row length (the
    /// contiguous dimension) and a torch tensor of shape `[rows, cols]` is stored as
    /// `[cols, rows]`. See [`GgufTensorInfo::torch_shape`]. Empty for a scalar (n_dims = 0).
    pub shape: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor's data in the file (data_start + the stored offset).
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    /// The shape in row-major (torch / numpy) order: `shape` reversed.
    pub fn torch_shape(&self) -> Vec<u64> {
        self.shape.iter().rev().copied().collect()
    }

    /// Number of elements (checked against overflow when the header was parsed; saturates
    /// for a hand-made info).
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().fold(1u64, |n, &d| n.saturating_mul(d))
    }

    /// The tensor's bytes as a range of file offsets.
    pub fn byte_range(&self) -> Range<u64> {
        self.offset..self.offset.saturating_add(self.n_bytes)
    }

    /// The tensor's bytes out of `buf`, which holds the file's bytes from offset `buf_start` on.
    /// `NeedMoreData` (with the file offset needed) when `buf` ends before the tensor does.
    pub fn data_in<'a>(&self, buf: &'a [u8], buf_start: u64) -> Result<&'a [u8]> {
        let Some(start) = self.offset.checked_sub(buf_start) else {
            bail!(InvalidArgument, "tensor '{}' starts at byte {}, before the buffer's start {buf_start}", show(&self.name), self.offset);
        };
        let end = start.saturating_add(self.n_bytes);
        let need = || {
            let end = self.offset.saturating_add(self.n_bytes);
            Error::new(ErrorKind::NeedMoreData, format!("tensor '{}' needs the file's bytes up to {end}", show(&self.name)))
                .with_index(usize::try_from(end).unwrap_or(usize::MAX))
        };
        let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end)) else {
            return Err(need());
        };
        buf.get(s..e).ok_or_else(need)
    }

    /// Dequantizes this tensor's `data` (exactly `n_bytes` long) into a new vector.
    pub fn dequantize<O: Float>(&self, data: &[u8]) -> Result<Vec<O>> {
        if data.len() as u64 != self.n_bytes {
            bail!(LengthMismatch, "tensor '{}' has {} bytes of data, got {}", show(&self.name), self.n_bytes, data.len());
        }
        if !self.ggml_type.can_dequantize() {
            return Err(unsupported_dequant(self.ggml_type));
        }
        // At most 2 elements per byte for the types dequantize takes, and data is in memory.
        let Ok(n) = usize::try_from(self.n_elements()) else {
            bail!(LengthMismatch, "tensor '{}' has more elements than fit in memory", show(&self.name));
        };
        let mut out = vec![O::default(); n];
        dequantize(self.ggml_type, data, &mut out)?;
        Ok(out)
    }
}

/// A parsed, validated GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    /// 2 or 3.
    pub version: u32,
    /// Key-value metadata in file order (keys are unique).
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensor infos in file order (names are unique, data ranges do not overlap).
    pub tensors: Vec<GgufTensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u32,
    /// End of the tensor infos (start of the padding).
    pub header_len: u64,
    /// Start of the data section: `header_len` rounded up to `alignment`.
    pub data_start: u64,
}

impl GgufHeader {
    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Parses and validates a GGUF header.
///
/// `prefix` is the first bytes of the file and `file_len` the file's full length. When the
/// header (metadata, tensor infos and the padding up to `data_start`) runs past `prefix`, this
/// returns `NeedMoreData` with `index = Some(n)`: at least `n` bytes of prefix (more than
/// `prefix.len()`, at most `file_len`) are needed; read them and call again. Bytes past `prefix`
/// are never read. A file whose fields run past `file_len` is `MalformedFile`.
///
/// Validated: magic, version (2 or 3), counts against the bytes left in the file, string and
/// array lengths, value types, array nesting depth, bools (0 or 1), UTF-8 keys and names,
/// unique keys, `general.alignment` (a u32 power of two), tensor n_dims (<= 4), dimensions
/// (< 2^63, product < 2^63), ggml types, row length a multiple of the block size, offsets a
/// multiple of the alignment, data inside the file, unique names, no overlapping data.
/// Unlike ggml, tensors need not be stored contiguously in header order.
pub fn parse(prefix: &[u8], file_len: u64) -> Result<GgufHeader> {
    if prefix.len() as u64 > file_len {
        bail!(InvalidArgument, "prefix of {} bytes is longer than the file ({file_len} bytes)", prefix.len());
    }
    // Every decision depends only on bytes inside the prefix and on file_len, so a prefix parse
    // gives either NeedMoreData or exactly the whole-file result.
    let mut r = Reader { buf: prefix, pos: 0, file_len, tail: FIXED_HEADER_LEN - 4 };
    let magic = r.take(4, "magic")?;
    if magic != GGUF_MAGIC {
        bail!(MalformedFile, "bad magic {:?}: not a GGUF file (expected \"GGUF\")", String::from_utf8_lossy(magic));
    }

    r.tail = FIXED_HEADER_LEN - 8;
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => bail!(MalformedFile, "GGUF version 1 is not supported (only versions 2 and 3)"),
        // ggml's and gguf-py's test: a byte-swapped version has its low 16 bits zero.
        v if v & 0xffff == 0 && matches!(v.swap_bytes(), 2 | 3) => {
            bail!(MalformedFile, "big-endian GGUF (version {}) is not supported", v.swap_bytes())
        }
        v => bail!(MalformedFile, "unsupported GGUF version {v} (only versions 2 and 3)"),
    }

    r.tail = 8;
    let n_tensors = r.u64("tensor count")?;
    r.tail = 0;
    let n_kv = r.u64("metadata count")?;
    let left = r.left_in_file();
    if n_kv > left / MIN_KV_LEN {
        bail!(MalformedFile, "metadata count {n_kv} is impossible: each entry takes at least {MIN_KV_LEN} bytes and {left} bytes are left in the file");
    }
    let left_for_tensors = left - n_kv * MIN_KV_LEN;
    if n_tensors > left_for_tensors / MIN_TENSOR_INFO_LEN {
        bail!(MalformedFile, "tensor count {n_tensors} is impossible: each tensor info takes at least {MIN_TENSOR_INFO_LEN} bytes and at most {left_for_tensors} bytes are left in the file for them");
    }
    let tensors_min = n_tensors * MIN_TENSOR_INFO_LEN;

    // metadata
    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(r.capacity(n_kv, MIN_KV_LEN));
    for i in 0..n_kv {
        r.tail = (n_kv - 1 - i) * MIN_KV_LEN + tensors_min;
        let at = r.pos;
        let key = r.string_bytes("metadata key")?;
        let Ok(key) = std::str::from_utf8(key) else {
            bail!(MalformedFile, "metadata key {i} at byte {at} is not valid UTF-8");
        };
        if key.is_empty() {
            bail!(MalformedFile, "metadata key {i} at byte {at} is empty");
        }
        let value = r.u32("metadata value type").and_then(|ty| r.value(ty, 0)).map_err(|e| context(e, "metadata key", key))?;
        metadata.push((key.to_owned(), value));
    }
    if let Some(dup) = first_duplicate(metadata.iter().map(|(k, _)| k.as_str())) {
        bail!(MalformedFile, "duplicate metadata key '{}'", show(dup));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => GGUF_DEFAULT_ALIGNMENT,
        Some((_, GgufValue::U32(a))) if a.is_power_of_two() => *a,
        Some((_, GgufValue::U32(a))) => bail!(MalformedFile, "bad general.alignment {a}: the alignment must be a power of two"),
        Some((_, v)) => bail!(MalformedFile, "bad general.alignment: the alignment must be a u32, found a {}", v.value_type().name()),
    };

    // tensor infos
    let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(r.capacity(n_tensors, MIN_TENSOR_INFO_LEN));
    for i in 0..n_tensors {
        r.tail = (n_tensors - 1 - i) * MIN_TENSOR_INFO_LEN;
        let at = r.pos;
        let name = r.string_bytes("tensor name")?;
        let Ok(name) = std::str::from_utf8(name) else {
            bail!(MalformedFile, "name of tensor {i} at byte {at} is not valid UTF-8");
        };
        let info = r.tensor_info(name).map_err(|e| context(e, "tensor", name))?;
        tensors.push(info);
    }
    let header_len = r.pos;

    let a = u64::from(alignment);
    let Some(data_start) = header_len.checked_next_multiple_of(a) else {
        bail!(MalformedFile, "the data section start overflows (alignment {alignment})");
    };
    for t in &mut tensors {
        // `offset` still holds the offset relative to data_start.
        if t.offset % a != 0 {
            bail!(MalformedFile, "tensor '{}' data offset {} is misaligned: not a multiple of the alignment {alignment}", show(&t.name), t.offset);
        }
        let rel = t.offset;
        match data_start.checked_add(rel).and_then(|s| Some((s, s.checked_add(t.n_bytes)?))) {
            Some((start, end)) if end <= file_len => t.offset = start,
            _ => bail!(
                MalformedFile,
                "tensor '{}' data ({} bytes at data offset {rel}, data section at byte {data_start}) extends past the end of the file ({file_len} bytes)",
                show(&t.name),
                t.n_bytes
            ),
        }
    }
    if let Some(dup) = first_duplicate(tensors.iter().map(|t| t.name.as_str())) {
        bail!(MalformedFile, "duplicate tensor name '{}'", show(dup));
    }
    let mut order: Vec<&GgufTensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| (t.offset, t.n_bytes));
    for w in order.windows(2) {
        if let [p, q] = w {
            if p.offset + p.n_bytes > q.offset {
                bail!(
                    MalformedFile,
                    "tensors '{}' (bytes {}..{}) and '{}' (bytes {}..{}) overlap",
                    show(&p.name),
                    p.offset,
                    p.offset + p.n_bytes,
                    show(&q.name),
                    q.offset,
                    q.offset + q.n_bytes
                );
            }
        }
    }

    // The padding up to data_start belongs to the header (a file with no tensor data may end
    // before data_start).
    let need = data_start.min(file_len);
    if (prefix.len() as u64) < need {
        return Err(need_more(need));
    }
    Ok(GgufHeader { version, metadata, tensors, alignment, header_len, data_start })
}

/// Cursor over the prefix. `pos <= buf.len() <= file_len` always holds.
struct Reader<'a> {
    buf: &'a [u8],
    pos: u64,
    file_len: u64,
    /// Fewest header bytes known to follow the field being read (a lower bound, for the
    /// `NeedMoreData` hint).
    tail: u64,
}

impl<'a> Reader<'a> {
    fn left_in_file(&self) -> u64 {
        self.file_len - self.pos
    }

    /// Capacity to reserve for `count` items of at least `min` bytes: no more than the bytes
    /// present in the prefix can hold.
    fn capacity(&self, count: u64, min: u64) -> usize {
        let present = (self.buf.len() as u64).saturating_sub(self.pos) / min.max(1);
        usize::try_from(count.min(present)).unwrap_or(0)
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.file_len => end,
            _ => bail!(MalformedFile, "GGUF file truncated: {what} at byte {} needs {n} bytes but the file ends at byte {}", self.pos, self.file_len),
        };
        if end > self.buf.len() as u64 {
            return Err(need_more(end.saturating_add(self.tail).min(self.file_len)));
        }
        // Both bounds are <= buf.len(), so they fit in usize.
        let Some(s) = self.buf.get(self.pos as usize..end as usize) else {
            return Err(need_more(end));
        };
        self.pos = end;
        Ok(s)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        s.try_into().map_err(|_| Error::new(ErrorKind::MalformedFile, format!("GGUF file truncated: {what}")))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    /// A string's bytes, its length checked against the file and `MAX_STRING_LEN`.
    fn string_bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let at = self.pos;
        let len = self.u64(what)?;
        let left = self.left_in_file();
        if len > left {
            bail!(MalformedFile, "{what} string length {len} at byte {at} exceeds the {left} bytes left in the file");
        }
        if len > MAX_STRING_LEN {
            bail!(MalformedFile, "{what} string length {len} at byte {at} exceeds the limit of {MAX_STRING_LEN} bytes");
        }
        self.take(len, what)
    }

    /// A value of type id `ty`; `depth` is the number of arrays it is inside.
    fn value(&mut self, ty: u32, depth: u32) -> Result<GgufValue> {
        let Some(t) = GgufValueType::from_id(ty) else {
            bail!(MalformedFile, "unknown metadata value type {ty}");
        };
        match t {
            GgufValueType::String => Ok(GgufValue::String(String::from_utf8_lossy(self.string_bytes("value")?).into_owned())),
            GgufValueType::Array => Ok(GgufValue::Array(self.array_value(depth + 1)?)),
            _ => {
                let size = t.fixed_size().unwrap_or(1);
                let b = self.take(size, "metadata value")?;
                decode_fixed(t, b)
            }
        }
    }

    /// An array (element type, count, elements) at nesting depth `depth` (1 for a top-level one).
    fn array_value(&mut self, depth: u32) -> Result<GgufArray> {
        if depth > MAX_ARRAY_DEPTH {
            bail!(MalformedFile, "metadata arrays nested {depth} deep; the limit is a nesting depth of {MAX_ARRAY_DEPTH}");
        }
        let et_id = self.u32("array element type")?;
        let Some(et) = GgufValueType::from_id(et_id) else {
            bail!(MalformedFile, "unknown array element type {et_id}");
        };
        let at = self.pos;
        let count = self.u64("array length")?;
        let left = self.left_in_file();
        let min = et.min_size();
        if count > left / min {
            bail!(MalformedFile, "array length {count} at byte {at} is impossible: {count} {} elements need at least {min} bytes each and {left} bytes are left in the file", et.name());
        }
        if let Some(size) = et.fixed_size() {
            let slab = self.take(count * size, "array data")?;
            return decode_fixed_array(et, slab);
        }
        let outer_tail = self.tail;
        let cap = self.capacity(count, min);
        let mut strings = Vec::new();
        let mut arrays = Vec::new();
        if et == GgufValueType::String {
            strings.reserve_exact(cap);
        } else {
            arrays.reserve_exact(cap);
        }
        for i in 0..count {
            self.tail = outer_tail.saturating_add((count - 1 - i) * min);
            if et == GgufValueType::String {
                strings.push(String::from_utf8_lossy(self.string_bytes("array element")?).into_owned());
            } else {
                arrays.push(self.array_value(depth + 1)?);
            }
        }
        self.tail = outer_tail;
        Ok(if et == GgufValueType::String { GgufArray::String(strings) } else { GgufArray::Array(arrays) })
    }

    /// The rest of a tensor info after its name. `offset` holds the stored (relative) offset.
    fn tensor_info(&mut self, name: &str) -> Result<GgufTensorInfo> {
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims as usize > GGML_MAX_DIMS {
            bail!(MalformedFile, "{n_dims} dimensions, more than GGML_MAX_DIMS = {GGML_MAX_DIMS}");
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for d in 0..n_dims {
            let ne = self.u64("tensor dimension")?;
            if ne > i64::MAX as u64 {
                bail!(MalformedFile, "dimension {d} is {ne}, more than 2^63 - 1 (negative as ggml's int64)");
            }
            shape.push(ne);
            n_elements = match n_elements.checked_mul(ne) {
                Some(n) if n <= i64::MAX as u64 => n,
                _ => bail!(MalformedFile, "shape (ne) {shape:?} overflows: more than 2^63 - 1 elements"),
            };
        }
        let type_id = self.u32("tensor type")?;
        let ggml_type = GgmlType::from_id(type_id)?;
        let row = shape.first().copied().unwrap_or(1);
        let bs = ggml_type.block_size();
        if row % bs != 0 {
            bail!(MalformedFile, "type {ggml_type} has {row} elements per row (ne[0]), not a multiple of the block size {bs}");
        }
        let Some(n_bytes) = ggml_type.byte_size(n_elements) else {
            bail!(MalformedFile, "{n_elements} elements of type {ggml_type} overflow the byte size");
        };
        let offset = self.u64("tensor data offset")?;
        Ok(GgufTensorInfo { name: name.to_owned(), shape, ggml_type, offset, n_bytes })
    }
}

fn decode_fixed(t: GgufValueType, b: &[u8]) -> Result<GgufValue> {
    fn a<const N: usize>(b: &[u8]) -> Result<[u8; N]> {
        b.try_into().map_err(|_| Error::new(ErrorKind::MalformedFile, "GGUF file truncated: metadata value"))
    }
    use GgufValue as V;
    Ok(match t {
        GgufValueType::U8 => V::U8(u8::from_le_bytes(a(b)?)),
        GgufValueType::I8 => V::I8(i8::from_le_bytes(a(b)?)),
        GgufValueType::U16 => V::U16(u16::from_le_bytes(a(b)?)),
        GgufValueType::I16 => V::I16(i16::from_le_bytes(a(b)?)),
        GgufValueType::U32 => V::U32(u32::from_le_bytes(a(b)?)),
        GgufValueType::I32 => V::I32(i32::from_le_bytes(a(b)?)),
        GgufValueType::F32 => V::F32(f32::from_le_bytes(a(b)?)),
        GgufValueType::U64 => V::U64(u64::from_le_bytes(a(b)?)),
        GgufValueType::I64 => V::I64(i64::from_le_bytes(a(b)?)),
        GgufValueType::F64 => V::F64(f64::from_le_bytes(a(b)?)),
        GgufValueType::Bool => match u8::from_le_bytes(a(b)?) {
            0 => V::Bool(false),
            1 => V::Bool(true),
            other => bail!(MalformedFile, "bool value {other} is neither 0 nor 1"),
        },
        GgufValueType::String | GgufValueType::Array => bail!(MalformedFile, "{} is not a fixed-size value type", t.name()),
    })
}

/// The elements of a fixed-size-type array from their bytes (`slab.len()` a multiple of the size).
fn decode_fixed_array(t: GgufValueType, slab: &[u8]) -> Result<GgufArray> {
    fn le<T, const N: usize>(slab: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
        slab.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    use GgufArray as A;
    Ok(match t {
        GgufValueType::U8 => A::U8(slab.to_vec()),
        GgufValueType::I8 => A::I8(le(slab, i8::from_le_bytes)),
        GgufValueType::U16 => A::U16(le(slab, u16::from_le_bytes)),
        GgufValueType::I16 => A::I16(le(slab, i16::from_le_bytes)),
        GgufValueType::U32 => A::U32(le(slab, u32::from_le_bytes)),
        GgufValueType::I32 => A::I32(le(slab, i32::from_le_bytes)),
        GgufValueType::F32 => A::F32(le(slab, f32::from_le_bytes)),
        GgufValueType::U64 => A::U64(le(slab, u64::from_le_bytes)),
        GgufValueType::I64 => A::I64(le(slab, i64::from_le_bytes)),
        GgufValueType::F64 => A::F64(le(slab, f64::from_le_bytes)),
        GgufValueType::Bool => {
            if let Some(b) = slab.iter().find(|&&b| b > 1) {
                bail!(MalformedFile, "bool value {b} is neither 0 nor 1");
            }
            A::Bool(slab.iter().map(|&b| b == 1).collect())
        }
        GgufValueType::String | GgufValueType::Array => bail!(MalformedFile, "{} is not a fixed-size value type", t.name()),
    })
}

fn need_more(n: u64) -> Error {
    Error::new(ErrorKind::NeedMoreData, format!("the GGUF header needs at least the first {n} bytes of the file")).with_index(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Names the key or tensor a `MalformedFile` / `UnsupportedDtype` error happened in.
fn context(mut e: Error, what: &str, name: &str) -> Error {
    if e.kind != ErrorKind::NeedMoreData {
        e.message = format!("{what} '{}': {}", show(name), e.message);
    }
    e
}

/// A name for an error message, cut to 80 characters.
fn show(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn first_duplicate<'s>(names: impl Iterator<Item = &'s str>) -> Option<&'s str> {
    let mut v: Vec<&str> = names.collect();
    v.sort_unstable();
    v.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// dequantization

fn unsupported_dequant(t: GgmlType) -> Error {
    Error::new(
        ErrorKind::UnsupportedDtype,
        format!("dequantization of ggml type {t} ({}) is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)", t.id()),
    )
}

/// Dequantizes `data` (whole blocks of `ty`) into `out`, one element per output slot;
/// `out.len()` must be a multiple of the block size and `data.len()` exactly the bytes of
/// `out.len()` elements. Values are computed in f32 exactly as ggml's `dequantize_row_*` and
/// gguf-py's `quants.py` do (same operations in the same order, no fused multiply-add), then
/// rounded to `O` to nearest even.
pub fn dequantize<O: Float>(ty: GgmlType, data: &[u8], out: &mut [O]) -> Result<()> {
    if !ty.can_dequantize() {
        return Err(unsupported_dequant(ty));
    }
    let bs = ty.block_size() as usize;
    let ts = ty.type_size() as usize;
    if out.len() % bs != 0 {
        bail!(LengthMismatch, "{} output elements are not a whole number of {ty} blocks of {bs}", out.len());
    }
    let want = match (out.len() / bs).checked_mul(ts) {
        Some(w) => w,
        None => bail!(LengthMismatch, "{} elements of {ty} overflow the byte size", out.len()),
    };
    if data.len() != want {
        bail!(LengthMismatch, "{} elements of {ty} take {want} bytes, got {}", out.len(), data.len());
    }
    let blocks = data.chunks_exact(ts).zip(out.chunks_exact_mut(bs));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, o)| o[0] = O::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = O::from_f32(f16_at(b, 0))),
        GgmlType::BF16 => blocks.for_each(|(b, o)| o[0] = O::from_f32(f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))),
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| q5_0(b, o)),
        GgmlType::Q5_1 => blocks.for_each(|(b, o)| q5_1(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| q8_0(b, o)),
        GgmlType::Q4_K => blocks.for_each(|(b, o)| q4_k(b, o)),
        GgmlType::Q5_K => blocks.for_each(|(b, o)| q5_k(b, o)),
        GgmlType::Q6_K => blocks.for_each(|(b, o)| q6_k(b, o)),
        other => return Err(unsupported_dequant(other)),
    }
    Ok(())
}

/// [`dequantize`] to f32.
pub fn dequantize_f32(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    dequantize(ty, data, out)
}

/// [`dequantize`] to f16: the f32 values rounded to nearest even.
pub fn dequantize_f16(ty: GgmlType, data: &[u8], out: &mut [f16]) -> Result<()> {
    dequantize(ty, data, out)
}

/// Exact f16 -> f32 that keeps NaN payloads as they are (signaling NaNs stay signaling), as
/// numpy's `astype(np.float32)` does, so results are the same bits on every target.
#[inline]
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    match exp {
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        0 => {
            // zero or subnormal: man * 2^-24, exact in f32
            let v = man as f32 * f32::from_bits(0x3380_0000);
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

// Block layouts (ggml-common.h). 32-element blocks: element j < 16 comes from the low nibble of
// qs[j], element j + 16 from its high nibble; Q5's fifth bit of element j is bit j of qh (u32 LE).

/// block_q4_0 { d: f16, qs: [u8; 16] }: x = (q - 8) * d
fn q4_0<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        o[j] = O::from_f32((i32::from(q & 0x0f) - 8) as f32 * d);
        o[j + 16] = O::from_f32((i32::from(q >> 4) - 8) as f32 * d);
    }
}

/// block_q4_1 { d: f16, m: f16, qs: [u8; 16] }: x = q * d + m
fn q4_1<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for j in 0..16 {
        let q = b[4 + j];
        o[j] = O::from_f32(f32::from(q & 0x0f) * d + m);
        o[j + 16] = O::from_f32(f32::from(q >> 4) * d + m);
    }
}

/// block_q5_0 { d: f16, qh: [u8; 4], qs: [u8; 16] }: x = (q - 16) * d
fn q5_0<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let q = b[6 + j];
        let lo = u32::from(q & 0x0f) | (((qh >> j) & 1) << 4);
        let hi = u32::from(q >> 4) | (((qh >> (j + 16)) & 1) << 4);
        o[j] = O::from_f32((lo as i32 - 16) as f32 * d);
        o[j + 16] = O::from_f32((hi as i32 - 16) as f32 * d);
    }
}

/// block_q5_1 { d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] }: x = q * d + m
fn q5_1<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let q = b[8 + j];
        let lo = u32::from(q & 0x0f) | (((qh >> j) & 1) << 4);
        let hi = u32::from(q >> 4) | (((qh >> (j + 16)) & 1) << 4);
        o[j] = O::from_f32(lo as f32 * d + m);
        o[j + 16] = O::from_f32(hi as f32 * d + m);
    }
}

/// block_q8_0 { d: f16, qs: [i8; 32] }: x = q * d
fn q8_0<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        o[j] = O::from_f32(f32::from(b[2 + j] as i8) * d);
    }
}

/// 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K / Q5_K block
/// (ggml's get_scale_min_k4): j < 4: low 6 bits of s[j] and s[j + 4]; j >= 4: a low nibble of
/// s[j + 4] plus the top 2 bits of s[j - 4] (scale), a high nibble of s[j + 4] plus the top 2
/// bits of s[j] (min).
#[inline]
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// block_q4_K { d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] }, 8 sub-blocks of 32:
/// x = (d * sc) * q - (dmin * m). Chunk c (64 elements) takes qs[32c..32c+32]: the low nibbles
/// are sub-block 2c, the high nibbles sub-block 2c + 1.
fn q4_k<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        for l in 0..32 {
            let q = qs[32 * c + l];
            o[64 * c + l] = O::from_f32(d1 * f32::from(q & 0x0f) - m1);
            o[64 * c + 32 + l] = O::from_f32(d2 * f32::from(q >> 4) - m2);
        }
    }
}

/// block_q5_K { d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }: as Q4_K,
/// with the fifth bit of element l of sub-block j being bit j of qh[l].
fn q5_k<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for c in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        for l in 0..32 {
            let q = qs[32 * c + l];
            let lo = (q & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4);
            let hi = (q >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
            o[64 * c + l] = O::from_f32(d1 * f32::from(lo) - m1);
            o[64 * c + 32 + l] = O::from_f32(d2 * f32::from(hi) - m2);
        }
    }
}

/// block_q6_K { ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 }, 16 sub-blocks of 16:
/// x = (d * scale) * (q - 32). Half h (128 elements) uses ql[64h..], qh[32h..]; its element
/// 32k + l (k in 0..4, l in 0..32) takes a nibble of ql[l] (k even) or ql[l + 32] (k odd), low
/// for k < 2, and bits 2k..2k+2 of qh[l]; element i uses scales[i / 16].
fn q6_k<O: Float>(b: &[u8], o: &mut [O]) {
    let d = f16_at(b, 208);
    for h in 0..2 {
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..128 + 32 * h + 32];
        for k in 0..4 {
            for l in 0..32 {
                let byte = ql[l + 32 * (k & 1)];
                let low = if k < 2 { byte & 0x0f } else { byte >> 4 };
                let q = i32::from(low | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                let i = 128 * h + 32 * k + l;
                let sc = f32::from(b[192 + i / 16] as i8);
                o[i] = O::from_f32((d * sc) * q as f32);
            }
        }
    }
}
