//! safetensors: the 8-byte header length, the JSON header and its tensor index, validated in
//! full before a caller reads or allocates anything the header describes; and a writer that
//! produces the same header bytes as the reference writer (the `safetensors` Rust crate, which
//! the Python package calls).
//!
//! Layout: `u64 LE n`, then `n` bytes of UTF-8 JSON, then the data section. The JSON maps tensor
//! names to `{"dtype", "shape", "data_offsets": [start, end]}` (offsets relative to the data
//! section) plus an optional `"__metadata__"` string-to-string map.
//!
//! # Why not the `safetensors` crate
//!
//! `safetensors` 0.8.0 was checked and is not used:
//! - `SafeTensors::read_metadata` needs the whole file in one buffer (it compares the offsets with
//!   the buffer's length). Its `Metadata` can be deserialized from the header alone, but
//! - offsets and shapes are `usize`: on wasm32 that is 32 bits, so any file over 4 GiB (most LLM
//!   checkpoints, which we stream by ranges) fails to parse in the browser;
//! - it accepts duplicate tensor names (a `#[serde(flatten)]` `HashMap` keeps the last one
//!   silently, though the format's spec forbids duplicates) and unknown fields in tensor entries;
//! - most errors carry no tensor name (`TensorInvalidInfo`, `ValidationOverflow`, ...).
//!
//! Detecting duplicates needs our own pass over the JSON anyway, so this module is a serde_json
//! visitor (keys in file order, duplicates and unknown fields refused, bounded allocation) followed
//! by the same checks as the crate, in u64. The rules match the crate's except where noted:
//! - Every tensor: known dtype, at most [`MAX_RANK`] dimensions, element count and bit count
//!   without u64 overflow, a whole number of bytes (sub-byte dtypes), `start <= end`,
//!   `end <= data section length`, `end - start == byte size`.
//! - Sorted by offset, the tensors tile the data section from 0 with no gap and no overlap, and
//!   the last one ends exactly at the end of the file. **Trailing bytes after the last tensor are
//!   an error**, as in the crate (`MetadataIncompleteBuffer`), so we refuse what HF refuses.
//! - Stricter than the crate, as the format's spec requires: the header starts with `{`;
//!   duplicate names (and duplicate fields or `__metadata__` keys) are errors; unknown fields
//!   in a tensor entry are errors; an empty tensor name is an error (our choice: it cannot be a
//!   state-dict key of a module). Like the crate, `"__metadata__": null` means no metadata.
//!
//! Memory: the only allocations are proportional to the header's own length (capped at
//! [`MAX_HEADER_LEN`], as in the crate); sizes and offsets read from the header are only
//! compared, never allocated.
//!
//! Errors: `MalformedFile` for anything breaking the format, `UnsupportedDtype` for an unknown
//! dtype string, `NeedMoreData` when [`header_len`] is given fewer than 8 bytes of a longer file.
//! Messages name the tensor and the problem; [`in_file`] prefixes the file's name.

use crate::dtype::DType;
use crate::error::{bail, Error, ErrorKind, Result};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Bytes of the little-endian u64 header length that starts every file.
pub const LEN_PREFIX: u64 = 8;
/// Largest JSON header accepted (the `safetensors` crate's `MAX_HEADER_SIZE`).
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// Most dimensions a tensor may have (numpy 2's limit; bounds what a shape array can allocate).
pub const MAX_RANK: usize = 64;

macro_rules! st_dtypes {
    ($($(#[$m:meta])* $v:ident = $name:literal, $bits:literal;)*) => {
        /// The safetensors dtypes, in the reference crate's order (increasing alignment). The
        /// reference writer lays tensors out by this order descending, then by name: see
        /// [`reference_order`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum StDtype { $($(#[$m])* $v,)* }

        impl StDtype {
            /// Every dtype, in order.
            pub const ALL: &'static [StDtype] = &[$(StDtype::$v,)*];
            /// The name written in the header ("F32", "BF16", "F8_E4M3", ...).
            pub fn name(self) -> &'static str {
                match self { $(StDtype::$v => $name,)* }
            }
            /// Size of one element in bits (4 and 6 for the MX sub-byte floats).
            pub fn bits(self) -> u32 {
                match self { $(StDtype::$v => $bits,)* }
            }
            pub fn from_name(name: &str) -> Option<StDtype> {
                match name { $($name => Some(StDtype::$v),)* _ => None }
            }
        }
    };
}

st_dtypes! {
    Bool = "BOOL", 8;
    /// MXFP4 E2M1 (two per byte).
    F4 = "F4", 4;
    /// MXFP6 E2M3.
    F6E2M3 = "F6_E2M3", 6;
    /// MXFP6 E3M2.
    F6E3M2 = "F6_E3M2", 6;
    U8 = "U8", 8;
    I8 = "I8", 8;
    F8E5M2 = "F8_E5M2", 8;
    F8E4M3 = "F8_E4M3", 8;
    /// MX scale (exponent only).
    F8E8M0 = "F8_E8M0", 8;
    F8E4M3Fnuz = "F8_E4M3FNUZ", 8;
    F8E5M2Fnuz = "F8_E5M2FNUZ", 8;
    I16 = "I16", 16;
    U16 = "U16", 16;
    F16 = "F16", 16;
    BF16 = "BF16", 16;
    I32 = "I32", 32;
    U32 = "U32", 32;
    F32 = "F32", 32;
    /// complex64 (two f32).
    C64 = "C64", 64;
    F64 = "F64", 64;
    I64 = "I64", 64;
    U64 = "U64", 64;
}

impl StDtype {
    /// Bytes per element, `None` for the sub-byte dtypes (F4, F6_*).
    pub fn byte_size(self) -> Option<u32> {
        let b = self.bits();
        (b & 7 == 0).then_some(b / 8)
    }
    /// The crate's [`DType`] with the same element layout, where there is one.
    pub fn to_dtype(self) -> Option<DType> {
        Some(match self {
            StDtype::F32 => DType::F32,
            StDtype::F16 => DType::F16,
            StDtype::BF16 => DType::BF16,
            StDtype::U8 => DType::U8,
            StDtype::I8 => DType::I8,
            StDtype::I32 => DType::I32,
            _ => return None,
        })
    }
    /// Byte size of `shape` elements, refusing overflow and partial bytes.
    pub fn nbytes(self, shape: &[usize]) -> Option<u64> {
        let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
        let bits = numel.checked_mul(self.bits() as u64)?;
        (bits & 7 == 0).then_some(bits / 8)
    }
}

impl fmt::Display for StDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: StDtype,
    pub shape: Vec<usize>,
    /// Absolute file offset of the first byte.
    pub start: u64,
    /// Absolute file offset one past the last byte.
    pub end: u64,
}

impl TensorInfo {
    pub fn nbytes(&self) -> u64 {
        self.end - self.start
    }
    /// Element count (cannot overflow: checked while parsing).
    pub fn numel(&self) -> u64 {
        self.shape.iter().fold(1u64, |n, &d| n.wrapping_mul(d as u64))
    }
}

/// A parsed and validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsHeader {
    /// Absolute offset of the data section (8 + the header length).
    pub data_start: u64,
    /// Sorted by offset; together they cover `data_start..file_len` exactly.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__`, in file order (empty when absent).
    pub metadata: Vec<(String, String)>,
}

impl SafetensorsHeader {
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Prefix an error's message with a file name: `parse_header(..).map_err(in_file("model.safetensors"))`.
pub fn in_file(file: &str) -> impl Fn(Error) -> Error + '_ {
    move |mut e| {
        e.message = format!("{file}: {}", e.message);
        e
    }
}

/// A name for a message: quoted and escaped, cut after 120 bytes.
fn q(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..cut], s.len())
}

/// The header length from the first 8 bytes (more may be passed; only 8 are read), checked
/// against the file's length and [`MAX_HEADER_LEN`]. The JSON is then `file[8 .. 8 + n]`.
pub fn header_len(first8: &[u8], file_len: u64) -> Result<u64> {
    if file_len < LEN_PREFIX {
        bail!(MalformedFile, "safetensors: the file is {file_len} bytes, shorter than the 8-byte header length that starts it (truncated?)");
    }
    let Some(b) = first8.get(..8) else {
        return Err(Error::new(ErrorKind::NeedMoreData, format!("safetensors: need the first 8 bytes to read the header length, got {}", first8.len())).with_index(8));
    };
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    if n > MAX_HEADER_LEN {
        bail!(MalformedFile, "safetensors: header length {n} is over the {MAX_HEADER_LEN}-byte limit (not a safetensors file, or corrupt)");
    }
    if n > file_len - LEN_PREFIX {
        bail!(MalformedFile, "safetensors: header length {n} runs past the end of the file ({file_len} bytes; truncated?)");
    }
    if n < 2 {
        bail!(MalformedFile, "safetensors: header length {n} is too small for a JSON object");
    }
    Ok(n)
}

/// Parse and validate the JSON header: `header` is exactly the `n` bytes after the length prefix
/// ([`header_len`]) and `file_len` the whole file's length, which the data section must fill.
pub fn parse_header(header: &[u8], file_len: u64) -> Result<SafetensorsHeader> {
    let n = header.len() as u64;
    if n > MAX_HEADER_LEN {
        bail!(MalformedFile, "safetensors header: {n} bytes is over the {MAX_HEADER_LEN}-byte limit");
    }
    let data_start = n + LEN_PREFIX;
    if data_start > file_len {
        bail!(MalformedFile, "safetensors header: 8 + {n} header bytes run past the end of the file ({file_len} bytes; truncated?)");
    }
    let data_len = file_len - data_start;
    if header.first() != Some(&b'{') {
        bail!(MalformedFile, "safetensors header: must start with '{{' (found {})", header.first().map_or("nothing".to_string(), |b| format!("byte 0x{b:02x}")));
    }
    let text = match std::str::from_utf8(header) {
        Ok(t) => t,
        Err(e) => bail!(MalformedFile, "safetensors header: invalid UTF-8 at byte {} of the JSON", e.valid_up_to()),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = de::Deserializer::deserialize_map(&mut de, HeaderVisitor).and_then(|r| de.end().map(|_| r)).map_err(json_error)?;
    validate(raw, data_start, data_len)
}

/// Parse a whole file held in memory (tests, small files).
pub fn parse(file: &[u8]) -> Result<SafetensorsHeader> {
    let len = file.len() as u64;
    let n = header_len(file, len)?;
    // header_len checked 8 + n <= len.
    match file.get(LEN_PREFIX as usize..(LEN_PREFIX + n) as usize) {
        Some(h) => parse_header(h, len),
        None => bail!(MalformedFile, "safetensors: header length {n} runs past the end of the file"),
    }
}

fn json_error(e: serde_json::Error) -> Error {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => Error::new(ErrorKind::MalformedFile, format!("safetensors header: invalid JSON: {e}")),
        Category::Data => Error::new(ErrorKind::MalformedFile, format!("safetensors header: {e}")),
    }
}

// ---- JSON -> raw entries (structure only) ----------------------------------------------------

struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    offsets: [u64; 2],
}

struct RawHeader {
    tensors: Vec<(String, RawEntry)>,
    metadata: Vec<(String, String)>,
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = RawHeader;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object mapping tensor names to {dtype, shape, data_offsets}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawHeader, A::Error> {
        let mut tensors = Vec::new();
        let mut metadata = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                if metadata.is_some() {
                    return Err(de::Error::custom("duplicate key \"__metadata__\""));
                }
                metadata = Some(map.next_value_seed(MetadataSeed)?.unwrap_or_default());
            } else {
                let entry = map.next_value_seed(EntrySeed { name: &key })?;
                tensors.push((key, entry));
            }
        }
        Ok(RawHeader { tensors, metadata: metadata.unwrap_or_default() })
    }
}

struct EntrySeed<'a> {
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = RawEntry;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<RawEntry, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = RawEntry;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object {{dtype, shape, data_offsets}} for tensor {}", q(self.name))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawEntry, A::Error> {
        let name = self.name;
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        while let Some(field) = map.next_key::<String>()? {
            let dup = match field.as_str() {
                "dtype" => dtype.replace(map.next_value_seed(StrSeed { what: "dtype string", name })?).is_some(),
                "shape" => shape.replace(map.next_value_seed(U64List { name, field: "shape", max: MAX_RANK, exact: false })?).is_some(),
                "data_offsets" => offsets.replace(map.next_value_seed(U64List { name, field: "data_offsets", max: 2, exact: true })?).is_some(),
                _ => return Err(de::Error::custom(format!("tensor {}: unknown field {} (expected dtype, shape, data_offsets)", q(name), q(&field)))),
            };
            if dup {
                return Err(de::Error::custom(format!("tensor {}: duplicate field \"{field}\"", q(name))));
            }
        }
        let missing = |f: &str| de::Error::custom(format!("tensor {}: missing field \"{f}\"", q(name)));
        let dtype = dtype.ok_or_else(|| missing("dtype"))?;
        let shape = shape.ok_or_else(|| missing("shape"))?;
        let o: Vec<u64> = offsets.ok_or_else(|| missing("data_offsets"))?;
        Ok(RawEntry { dtype, shape, offsets: [o[0], o[1]] })
    }
}

struct StrSeed<'a> {
    what: &'static str,
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrSeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} for {}", self.what, q(self.name))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<String, E> {
        Ok(v)
    }
}

/// A list of non-negative integers (`shape`, `data_offsets`), at most `max` long (exactly when
/// `exact`).
struct U64List<'a> {
    name: &'a str,
    field: &'static str,
    max: usize,
    exact: bool,
}

impl<'de> DeserializeSeed<'de> for U64List<'_> {
    type Value = Vec<u64>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Vec<u64>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for U64List<'_> {
    type Value = Vec<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.exact {
            write!(f, "tensor {}: '{}' as a list of {} non-negative integers", q(self.name), self.field, self.max)
        } else {
            write!(f, "tensor {}: '{}' as a list of non-negative integers", q(self.name), self.field)
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<u64>, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element_seed(U64Seed { name: self.name, field: self.field })? {
            if v.len() == self.max {
                return Err(de::Error::custom(if self.exact {
                    format!("tensor {}: '{}' must have exactly {} entries", q(self.name), self.field, self.max)
                } else {
                    format!("tensor {}: '{}' has more than {} dimensions", q(self.name), self.field, self.max)
                }));
            }
            v.push(x);
        }
        if self.exact && v.len() != self.max {
            return Err(de::Error::custom(format!("tensor {}: '{}' must have exactly {} entries, found {}", q(self.name), self.field, self.max, v.len())));
        }
        Ok(v)
    }
}

struct U64Seed<'a> {
    name: &'a str,
    field: &'static str,
}

impl<'de> DeserializeSeed<'de> for U64Seed<'_> {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<u64, D::Error> {
        d.deserialize_u64(self)
    }
}

impl<'de> Visitor<'de> for U64Seed<'_> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "tensor {}: a non-negative integer in '{}'", q(self.name), self.field)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("tensor {}: negative value {v} in '{}'", q(self.name), self.field)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<u64, E> {
        Err(E::custom(format!("tensor {}: '{}' holds {v}, which is not an integer that fits in 64 bits", q(self.name), self.field)))
    }
}

/// `__metadata__`: null or an object of string values.
struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = Option<Vec<(String, String)>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed {
    type Value = Option<Vec<(String, String)>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"__metadata__\" as an object of string values")
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut v: Vec<(String, String)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let val = map.next_value_seed(StrSeed { what: "string value in \"__metadata__\"", name: &k })?;
            v.push((k, val));
        }
        if let Some(k) = first_duplicate(&v, |e| &e.0) {
            return Err(de::Error::custom(format!("duplicate key {} in \"__metadata__\"", q(k))));
        }
        Ok(Some(v))
    }
}

/// The first repeated key (by sorted order), without copying any of them.
fn first_duplicate<T>(items: &[T], key: impl Fn(&T) -> &str) -> Option<&str> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    idx.sort_unstable_by(|&a, &b| key(&items[a]).cmp(key(&items[b])));
    idx.windows(2).find(|w| key(&items[w[0]]) == key(&items[w[1]])).map(|w| key(&items[w[0]]))
}

// ---- raw entries -> validated index -----------------------------------------------------------

fn validate(raw: RawHeader, data_start: u64, data_len: u64) -> Result<SafetensorsHeader> {
    if let Some(name) = first_duplicate(&raw.tensors, |e| &e.0) {
        bail!(MalformedFile, "safetensors header: duplicate tensor name {} (the JSON repeats a key; readers disagree on which one wins)", q(name));
    }
    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, e) in raw.tensors {
        let qn = q(&name);
        if name.is_empty() {
            bail!(MalformedFile, "safetensors header: empty tensor name");
        }
        let Some(dtype) = StDtype::from_name(&e.dtype) else {
            let known: Vec<&str> = StDtype::ALL.iter().map(|d| d.name()).collect();
            bail!(UnsupportedDtype, "safetensors header: tensor {qn}: unknown dtype {} (safetensors dtypes are {})", q(&e.dtype), known.join(", "));
        };
        let Some(numel) = e.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)) else {
            bail!(MalformedFile, "safetensors header: tensor {qn}: shape {:?} overflows (its element count does not fit in 64 bits)", e.shape);
        };
        let Some(bits) = numel.checked_mul(dtype.bits() as u64) else {
            bail!(MalformedFile, "safetensors header: tensor {qn}: shape {:?} of {dtype} overflows (its byte size does not fit in 64 bits)", e.shape);
        };
        if bits & 7 != 0 {
            bail!(MalformedFile, "safetensors header: tensor {qn}: {numel} elements of {dtype} are not a whole number of bytes (misaligned)");
        }
        let nbytes = bits / 8;
        let [s, end] = e.offsets;
        if s > end {
            bail!(MalformedFile, "safetensors header: tensor {qn}: data_offsets [{s}, {end}] are reversed (start after end)");
        }
        if end > data_len {
            bail!(MalformedFile, "safetensors header: tensor {qn}: data_offsets [{s}, {end}] are out of bounds: the data section is {data_len} bytes (truncated file or corrupt offsets)");
        }
        if end - s != nbytes {
            bail!(MalformedFile, "safetensors header: tensor {qn}: data_offsets [{s}, {end}] span {} bytes but {dtype} {:?} needs {nbytes}", end - s, e.shape);
        }
        // Last: a platform limit (32-bit wasm), not a format error.
        let mut shape = Vec::with_capacity(e.shape.len());
        for &d in &e.shape {
            match usize::try_from(d) {
                Ok(d) => shape.push(d),
                Err(_) => bail!(MalformedFile, "safetensors header: tensor {qn}: dimension {d} does not fit in this platform's usize"),
            }
        }
        tensors.push(TensorInfo { name, dtype, shape, start: data_start + s, end: data_start + end });
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    let mut pos = data_start;
    for (i, t) in tensors.iter().enumerate() {
        if t.start < pos {
            let prev = &tensors[i - 1];
            bail!(
                MalformedFile,
                "safetensors header: tensors {} and {} overlap (data_offsets [{}, {}] and [{}, {}])",
                q(&prev.name),
                q(&t.name),
                prev.start - data_start,
                prev.end - data_start,
                t.start - data_start,
                t.end - data_start
            );
        }
        if t.start > pos {
            bail!(MalformedFile, "safetensors header: gap of {} bytes before tensor {} (data_offsets must be contiguous from 0)", t.start - pos, q(&t.name));
        }
        pos = t.end;
    }
    let end = data_start + data_len;
    if pos != end {
        bail!(MalformedFile, "safetensors header: the tensors cover {} bytes of data but the file has {} more after them (trailing bytes)", pos - data_start, end - pos);
    }
    Ok(SafetensorsHeader { data_start, tensors, metadata: raw.metadata })
}

// ---- writer -----------------------------------------------------------------------------------

/// Sort `(name, dtype, shape, nbytes)` entries into the order the reference writer lays them
/// out: dtype descending (by [`StDtype`]'s order), then name.
pub fn reference_order<N: AsRef<str>, S>(tensors: &mut [(N, StDtype, S, u64)]) {
    tensors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_ref().cmp(b.0.as_ref())));
}

/// The first `8 + n` bytes of a file: the length prefix, then the JSON header padded with spaces
/// to a multiple of 8, with the tensors `(name, dtype, shape, nbytes)` laid out contiguously in
/// the given order and `metadata` as `__metadata__` (left out when empty). The tensor data
/// follows, in the same order. With the tensors in [`reference_order`] and at most one metadata
/// entry, the bytes equal the reference writer's (which writes its metadata map in hash order,
/// and `"__metadata__":{}` for an empty map).
pub fn write_header<N, S, K, V>(tensors: &[(N, StDtype, S, u64)], metadata: &[(K, V)]) -> Result<Vec<u8>>
where
    N: AsRef<str>,
    S: AsRef<[usize]>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    if let Some(name) = first_duplicate(tensors, |t| t.0.as_ref()) {
        bail!(InvalidArgument, "write_header: duplicate tensor name {}", q(name));
    }
    if let Some(k) = first_duplicate(metadata, |m| m.0.as_ref()) {
        bail!(InvalidArgument, "write_header: duplicate metadata key {}", q(k));
    }
    let js = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut json = String::from("{");
    if !metadata.is_empty() {
        json += "\"__metadata__\":{";
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json += &js(k.as_ref());
            json.push(':');
            json += &js(v.as_ref());
        }
        json.push('}');
    }
    let mut offset: u64 = 0;
    for (i, (name, dtype, shape, nbytes)) in tensors.iter().enumerate() {
        let (name, shape) = (name.as_ref(), shape.as_ref());
        if name.is_empty() || name == "__metadata__" {
            bail!(InvalidArgument, "write_header: invalid tensor name {}", q(name));
        }
        if shape.len() > MAX_RANK {
            bail!(InvalidArgument, "write_header: tensor {} has {} dimensions (at most {MAX_RANK})", q(name), shape.len());
        }
        match dtype.nbytes(shape) {
            Some(b) if b == *nbytes => {}
            Some(b) => bail!(LengthMismatch, "write_header: tensor {} is {nbytes} bytes but {dtype} {shape:?} needs {b}", q(name)),
            None => bail!(InvalidArgument, "write_header: tensor {}: {dtype} {shape:?} overflows or is not a whole number of bytes", q(name)),
        }
        let Some(end) = offset.checked_add(*nbytes) else {
            bail!(InvalidArgument, "write_header: total data size overflows");
        };
        if i > 0 || !metadata.is_empty() {
            json.push(',');
        }
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        json += &format!("{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}", js(name), dtype.name(), dims.join(","));
        offset = end;
    }
    json.push('}');
    let n = json.len().next_multiple_of(LEN_PREFIX as usize);
    if n as u64 > MAX_HEADER_LEN {
        bail!(InvalidArgument, "write_header: the header would be {n} bytes, over the {MAX_HEADER_LEN}-byte limit");
    }
    let mut out = Vec::with_capacity(8 + n);
    out.extend_from_slice(&(n as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.resize(8 + n, b' ');
    Ok(out)
}
