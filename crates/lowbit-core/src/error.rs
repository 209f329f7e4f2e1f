//! One error type for every fallible operation. Each error carries a stable machine-readable
//! kind (mapped 1:1 to the TypeScript `LowbitError.code`) and a message a user can act on.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A blocksize outside the supported set.
    UnsupportedBlocksize,
    /// A quant type we do not know ("nf4", "fp4", "int4").
    UnsupportedQuantType,
    /// An input or output dtype the operation does not take.
    UnsupportedDtype,
    /// Data length disagrees with the shape or with other tensors.
    LengthMismatch,
    /// NaN or +-Inf in the input while the caller did not opt in to bitsandbytes' behaviour.
    NonFinite,
    /// A tensor with no elements.
    EmptyTensor,
    /// A QuantState whose fields disagree with each other or with the data.
    InconsistentState,
    /// Malformed serialized data (JSON of a quant state, dict keys).
    Parse,
    /// A checkpoint file (safetensors, GGUF, bnb tensors) that breaks its format's rules:
    /// truncated, out-of-bounds offsets, overflowing shapes, bad magic, ...
    MalformedFile,
    /// A parser needs more bytes of the file than it was given (streaming parsers only; the
    /// caller reads more and retries). `index` holds the byte count needed.
    NeedMoreData,
    /// Any other invalid argument.
    InvalidArgument,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::UnsupportedBlocksize => "UNSUPPORTED_BLOCKSIZE",
            ErrorKind::UnsupportedQuantType => "UNSUPPORTED_QUANT_TYPE",
            ErrorKind::UnsupportedDtype => "UNSUPPORTED_DTYPE",
            ErrorKind::LengthMismatch => "LENGTH_MISMATCH",
            ErrorKind::NonFinite => "NON_FINITE",
            ErrorKind::EmptyTensor => "EMPTY_TENSOR",
            ErrorKind::InconsistentState => "INCONSISTENT_STATE",
            ErrorKind::Parse => "PARSE",
            ErrorKind::MalformedFile => "MALFORMED_FILE",
            ErrorKind::NeedMoreData => "NEED_MORE_DATA",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// For `NonFinite`: flat index of the first bad element.
    pub index: Option<usize>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), index: None }
    }
    pub fn with_index(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)*)))
    };
}
pub(crate) use bail;
