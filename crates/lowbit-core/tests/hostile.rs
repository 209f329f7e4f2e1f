//! Hostile input: malformed safetensors files and bitsandbytes quant states. Each case must give
//! a typed error whose message names the file and the problem, never a panic, and nothing may
//! allocate a size read from the file before it is validated. The safetensors cases are
//! generated here from one valid file; the GGUF cases live with the GGUF parser. Runs natively
//! and in wasm.

use lowbit_core::blockwise4::{dequantize_4bit_vec, quantize_4bit, Quantize4Options};
use lowbit_core::formats::safetensors as st;
use lowbit_core::quant_state::DictTensor;
use lowbit_core::{DType, ErrorKind, Kernel, QuantState, QuantType4};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

// ---- allocation tracking (native only) ---------------------------------------------------------

#[cfg(not(target_arch = "wasm32"))]
mod alloc_track {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Records the largest single allocation each thread asks for.
    pub struct Tracking;
    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }
    unsafe impl GlobalAlloc for Tracking {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
            System.alloc(l)
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
            System.alloc_zeroed(l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            let _ = LARGEST.try_with(|c| c.set(c.get().max(new)));
            System.realloc(p, l, new)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            System.dealloc(p, l)
        }
    }
    #[global_allocator]
    static GLOBAL: Tracking = Tracking;

    /// Largest single allocation `f` made on this thread.
    pub fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|c| c.set(0));
        let r = f();
        (r, LARGEST.with(|c| c.get()))
    }
}

// ---- safetensors ------------------------------------------------------------------------------

/// A file: the 8-byte length of `json`, `json`, then `data_len` zero bytes.
fn file(json: &str, data_len: usize) -> Vec<u8> {
    with_len(json.len() as u64, json.as_bytes(), data_len)
}
fn with_len(n: u64, header: &[u8], data_len: usize) -> Vec<u8> {
    let mut f = n.to_le_bytes().to_vec();
    f.extend_from_slice(header);
    f.resize(f.len() + data_len, 0);
    f
}

/// A valid header: a F32 [2,2] at [0,16], b F16 [3] at [16,22], c U8 [2] at [22,24].
fn entries(a: &str, b: &str, c: &str) -> String {
    format!("{{\"__metadata__\":{{\"format\":\"pt\"}},\"a\":{a},\"b\":{b},\"c\":{c}}}")
}
const A: &str = r#"{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}"#;
const B: &str = r#"{"dtype":"F16","shape":[3],"data_offsets":[16,22]}"#;
const C: &str = r#"{"dtype":"U8","shape":[2],"data_offsets":[22,24]}"#;
fn valid_json() -> String {
    entries(A, B, C)
}
/// The valid file with tensor `c` renamed to raw bytes (not necessarily UTF-8).
fn name_c_as(raw: &[u8]) -> Vec<u8> {
    let json = valid_json();
    let (pre, post) = json.split_once("\"c\"").unwrap();
    let mut h = pre.as_bytes().to_vec();
    h.push(b'"');
    h.extend_from_slice(raw);
    h.push(b'"');
    h.extend_from_slice(post.as_bytes());
    with_len(h.len() as u64, &h, 24)
}
fn valid() -> Vec<u8> {
    file(&valid_json(), 24)
}
/// The valid file with tensor `a`'s entry replaced.
fn with_a(a: &str) -> Vec<u8> {
    file(&entries(a, B, C), 24)
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    kind: ErrorKind,
    word: &'static str,
}

fn case(name: &'static str, bytes: Vec<u8>, kind: ErrorKind, word: &'static str) -> Case {
    Case { name, bytes, kind, word }
}

use ErrorKind::{MalformedFile as MF, UnsupportedDtype as UD};

fn safetensors_cases() -> Vec<Case> {
    let v = valid();
    let vj = valid_json();
    let n = vj.len();
    let mut c = vec![
        // -- truncated
        case("empty-file", vec![], MF, "shorter than the 8-byte"),
        case("trunc-1", v[..1].to_vec(), MF, "shorter than the 8-byte"),
        case("trunc-7", v[..7].to_vec(), MF, "shorter than the 8-byte"),
        case("trunc-8", v[..8].to_vec(), MF, "runs past the end of the file"),
        case("trunc-mid-header", v[..8 + n / 2].to_vec(), MF, "runs past the end of the file"),
        case("trunc-header-minus-1", v[..7 + n].to_vec(), MF, "runs past the end of the file"),
        case("trunc-no-data", v[..8 + n].to_vec(), MF, "out of bounds"),
        case("trunc-mid-data", v[..8 + n + 10].to_vec(), MF, "out of bounds"),
        case("trunc-last-byte", v[..v.len() - 1].to_vec(), MF, "out of bounds"),
        // -- header length
        case("len-past-eof-by-1", with_len(n as u64 + 25, vj.as_bytes(), 24), MF, "runs past the end of the file"),
        case("len-2^63", with_len(1 << 63, vj.as_bytes(), 24), MF, "over the 100000000-byte limit"),
        case("len-u64-max", with_len(u64::MAX, vj.as_bytes(), 24), MF, "over the 100000000-byte limit"),
        case("len-cap-plus-1", with_len(100_000_001, vj.as_bytes(), 24), MF, "over the 100000000-byte limit"),
        case("len-zero", with_len(0, vj.as_bytes(), 24), MF, "too small"),
        case("len-short-cuts-json", with_len(20, vj.as_bytes(), 24), MF, "invalid JSON"),
        case("len-long-swallows-data", with_len(n as u64 + 4, vj.as_bytes(), 24), MF, "invalid JSON"),
        // -- UTF-8 and JSON syntax
        case("utf8-ff-in-name", name_c_as(&[0xff]), MF, "invalid UTF-8"),
        case("utf8-encoded-surrogate", name_c_as(&[0xed, 0xa0, 0x80]), MF, "invalid UTF-8"),
        case("utf8-overlong-slash", name_c_as(&[0xc0, 0xaf]), MF, "invalid UTF-8"),
        case("json-lone-surrogate-escape", file(&entries(A, B, C).replace("\"c\"", "\"\\ud800\""), 24), MF, "invalid JSON"),
        case("json-not-json", file("hello, world", 24), MF, "must start with '{'"),
        case("json-array", file(&format!("[{vj}]"), 24), MF, "must start with '{'"),
        case("json-leading-space", file(&format!(" {vj}"), 24), MF, "must start with '{'"),
        case("json-trailing-garbage", file(&format!("{vj}x"), 24), MF, "trailing characters"),
        case("json-unclosed", file(&vj[..vj.len() - 1], 24), MF, "EOF"),
        case("json-trailing-comma", file(&format!("{},}}", &vj[..vj.len() - 1]), 24), MF, "invalid JSON"),
        case("json-single-quotes", file(&vj.replace("\"a\"", "'a'"), 24), MF, "invalid JSON"),
        case("json-nan-dim", with_a(r#"{"dtype":"F32","shape":[NaN,2],"data_offsets":[0,16]}"#), MF, "invalid JSON"),
        // -- entry structure and field types
        case("entry-number", with_a("5"), MF, "expected an object {dtype, shape, data_offsets}"),
        case("entry-null", with_a("null"), MF, "expected an object"),
        case("entry-missing-dtype", with_a(r#"{"shape":[2,2],"data_offsets":[0,16]}"#), MF, "missing field \"dtype\""),
        case("entry-missing-shape", with_a(r#"{"dtype":"F32","data_offsets":[0,16]}"#), MF, "missing field \"shape\""),
        case("entry-missing-offsets", with_a(r#"{"dtype":"F32","shape":[2,2]}"#), MF, "missing field \"data_offsets\""),
        case("entry-extra-field", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":[0,16],"align":64}"#), MF, "unknown field \"align\""),
        case("entry-dup-field", with_a(r#"{"dtype":"F32","dtype":"F16","shape":[2,2],"data_offsets":[0,16]}"#), MF, "duplicate field \"dtype\""),
        case("dtype-number", with_a(r#"{"dtype":32,"shape":[2,2],"data_offsets":[0,16]}"#), MF, "invalid type: integer"),
        case("dtype-nested-arrays", with_a(&format!(r#"{{"dtype":{}1{},"shape":[2,2],"data_offsets":[0,16]}}"#, "[".repeat(500), "]".repeat(500))), MF, "invalid type: sequence"),
        case("shape-string", with_a(r#"{"dtype":"F32","shape":"2,2","data_offsets":[0,16]}"#), MF, "'shape' as a list"),
        case("offsets-three", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":[0,8,16]}"#), MF, "exactly 2 entries"),
        case("offsets-one", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":[16]}"#), MF, "exactly 2 entries, found 1"),
        case("offsets-object", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":{"start":0,"end":16}}"#), MF, "'data_offsets' as a list"),
        // -- dtype
        case("dtype-unknown", with_a(r#"{"dtype":"F128","shape":[2,2],"data_offsets":[0,16]}"#), UD, "unknown dtype \"F128\""),
        case("dtype-lowercase", with_a(r#"{"dtype":"f32","shape":[2,2],"data_offsets":[0,16]}"#), UD, "unknown dtype \"f32\""),
        case("dtype-empty", with_a(r#"{"dtype":"","shape":[2,2],"data_offsets":[0,16]}"#), UD, "unknown dtype"),
        // -- shape
        case("dim-negative", with_a(r#"{"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]}"#), MF, "negative value -2"),
        case("dim-fractional", with_a(r#"{"dtype":"F32","shape":[2.5,2],"data_offsets":[0,16]}"#), MF, "not an integer"),
        case("dim-float-integral", with_a(r#"{"dtype":"F32","shape":[2.0,2],"data_offsets":[0,16]}"#), MF, "not an integer"),
        case("dim-1e30", with_a(r#"{"dtype":"F32","shape":[1e30],"data_offsets":[0,16]}"#), MF, "not an integer"),
        case("dim-2^64", with_a(r#"{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,16]}"#), MF, "not an integer"),
        case("shape-numel-overflow", with_a(r#"{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,16]}"#), MF, "element count does not fit"),
        case("shape-bytes-overflow", with_a(r#"{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}"#), MF, "byte size does not fit"),
        case("shape-rank-65", with_a(&format!(r#"{{"dtype":"F32","shape":[{}4],"data_offsets":[0,16]}}"#, "1,".repeat(64))), MF, "more than 64 dimensions"),
        case("shape-f4-half-byte", file(&entries(A, B, r#"{"dtype":"F4","shape":[3],"data_offsets":[22,24]}"#), 24), MF, "not a whole number of bytes"),
        case("shape-size-mismatch", with_a(r#"{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}"#), MF, "span 16 bytes but F32 [2, 3] needs 24"),
        // -- data offsets
        case("offsets-out-of-bounds", file(&entries(A, B, r#"{"dtype":"U8","shape":[2],"data_offsets":[24,26]}"#), 24), MF, "out of bounds"),
        case("offsets-u64-max", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":[18446744073709551615,18446744073709551615]}"#), MF, "out of bounds"),
        case("offsets-reversed", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}"#), MF, "reversed"),
        case("offsets-negative", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":[-16,0]}"#), MF, "negative value -16"),
        case("offsets-wrong-span", with_a(r#"{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}"#), MF, "span 12 bytes"),
        case(
            "offsets-overlap",
            file(&entries(A, r#"{"dtype":"F16","shape":[3],"data_offsets":[14,20]}"#, r#"{"dtype":"U8","shape":[2],"data_offsets":[20,22]}"#), 24),
            MF,
            "overlap",
        ),
        case("offsets-same-range", file(&entries(A, r#"{"dtype":"F32","shape":[4],"data_offsets":[0,16]}"#, r#"{"dtype":"U8","shape":[8],"data_offsets":[16,24]}"#), 24), MF, "overlap"),
        case("offsets-empty-inside-other", file(&entries(A, B, r#"{"dtype":"U8","shape":[0],"data_offsets":[4,4]}"#), 24), MF, "overlap"),
        case(
            "offsets-gap",
            file(&entries(A, r#"{"dtype":"F16","shape":[3],"data_offsets":[18,24]}"#, r#"{"dtype":"U8","shape":[2],"data_offsets":[24,26]}"#), 26),
            MF,
            "gap of 2 bytes before tensor \"b\"",
        ),
        case(
            "offsets-not-from-zero",
            file(
                &entries(
                    r#"{"dtype":"F32","shape":[2,2],"data_offsets":[4,20]}"#,
                    r#"{"dtype":"F16","shape":[3],"data_offsets":[20,26]}"#,
                    r#"{"dtype":"U8","shape":[2],"data_offsets":[26,28]}"#,
                ),
                28,
            ),
            MF,
            "gap of 4 bytes before tensor \"a\"",
        ),
        case("trailing-bytes", file(&vj, 29), MF, "5 more after them (trailing bytes)"),
        case("no-tensors-but-data", file("{}", 8), MF, "trailing bytes"),
        // -- names and metadata
        case("name-duplicate-same", file(&format!("{{\"a\":{A},\"b\":{B},\"c\":{C},\"a\":{A}}}"), 24), MF, "duplicate tensor name \"a\""),
        case("name-duplicate-other", file(&format!("{{\"a\":{A},\"b\":{B},\"c\":{C},\"b\":{C}}}"), 24), MF, "duplicate tensor name \"b\""),
        case("name-empty", file(&vj.replace("\"c\"", "\"\""), 24), MF, "empty tensor name"),
        case("meta-duplicate", file(&vj.replacen("{\"__metadata__\"", "{\"__metadata__\":{},\"__metadata__\"", 1), 24), MF, "duplicate key \"__metadata__\""),
        case("meta-number-value", file(&vj.replace("\"pt\"", "1"), 24), MF, "expected a string value in \"__metadata__\" for \"format\""),
        case("meta-nested-value", file(&vj.replace("\"pt\"", "{\"x\":\"y\"}"), 24), MF, "invalid type: map"),
        case("meta-array", file(&vj.replace("{\"format\":\"pt\"}", "[\"pt\"]"), 24), MF, "\"__metadata__\" as an object"),
        case("meta-string", file(&vj.replace("{\"format\":\"pt\"}", "\"pt\""), 24), MF, "\"__metadata__\" as an object"),
        case("meta-dup-key", file(&vj.replace("{\"format\":\"pt\"}", "{\"format\":\"pt\",\"format\":\"tf\"}"), 24), MF, "duplicate key \"format\" in \"__metadata__\""),
    ];
    // A tensor far beyond a tiny file: refused by comparison, before anything is allocated.
    c.push(case("tensor-2^40-bytes", with_a(r#"{"dtype":"U8","shape":[1048576,1048576],"data_offsets":[0,1099511627776]}"#), MF, "out of bounds"));
    c
}

fn check(c: &Case) {
    let fname = format!("{}.safetensors", c.name);
    // Whole file in memory.
    let e = match st::parse(&c.bytes).map_err(st::in_file(&fname)) {
        Ok(h) => panic!("{}: accepted: {h:?}", c.name),
        Err(e) => e,
    };
    assert_eq!(e.kind, c.kind, "{}: {e}", c.name);
    assert!(e.message.starts_with(&format!("{fname}: safetensors")), "{}: {e}", c.name);
    assert!(e.message.contains(c.word), "{}: expected '{}' in: {e}", c.name, c.word);
    // Streaming: the first 8 bytes, then exactly the header; same error.
    let len = c.bytes.len() as u64;
    let streamed = st::header_len(&c.bytes[..c.bytes.len().min(8)], len).and_then(|n| st::parse_header(&c.bytes[8..8 + n as usize], len));
    let s = streamed.unwrap_err();
    assert_eq!((s.kind, Some(s.message.as_str())), (e.kind, e.message.strip_prefix(&format!("{fname}: "))), "{}", c.name);
}

#[test]
fn valid_template_parses() {
    let h = st::parse(&valid()).unwrap();
    assert_eq!(h.tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(h.metadata_value("format"), Some("pt"));
}

#[test]
fn hostile_safetensors_corpus() {
    let cases = safetensors_cases();
    assert!(cases.len() >= 40, "{}", cases.len());
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    for c in &cases {
        check(c);
    }
}

#[test]
fn every_truncation_is_an_error() {
    let v = valid();
    for cut in 0..v.len() {
        let e = st::parse(&v[..cut]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MalformedFile, "cut {cut}: {e}");
    }
    st::parse(&v).unwrap();
}

#[test]
fn every_header_length_but_the_right_one_is_an_error() {
    let vj = valid_json();
    for n in 0..vj.len() as u64 + 24 {
        let r = st::parse(&with_len(n, vj.as_bytes(), 24));
        assert_eq!(r.is_ok(), n == vj.len() as u64, "n = {n}: {r:?}");
    }
}

#[test]
fn header_length_needs_8_bytes_of_a_longer_file() {
    let v = valid();
    for k in 0..8 {
        let e = st::header_len(&v[..k], v.len() as u64).unwrap_err();
        assert_eq!((e.kind, e.index), (ErrorKind::NeedMoreData, Some(8)));
    }
    // A 2^40-byte file whose header claims 2^40 - 8 bytes: refused by the cap, nothing read.
    let e = st::header_len(&((1u64 << 40) - 8).to_le_bytes(), 1 << 40).unwrap_err();
    assert!(e.message.contains("limit"), "{e}");
}

#[test]
fn huge_tensor_in_tiny_file_is_refused_without_allocating() {
    let bytes = with_a(r#"{"dtype":"U8","shape":[1048576,1048576],"data_offsets":[0,1099511627776]}"#);
    // The same tensor, valid in a (virtual) file large enough: parse_header accepts it without
    // reading or allocating its data.
    let big = big_header();
    #[cfg(not(target_arch = "wasm32"))]
    {
        let t = std::time::Instant::now();
        let (r, largest) = alloc_track::largest_alloc(|| st::parse(&bytes));
        assert!(r.unwrap_err().message.contains("out of bounds"));
        assert!(largest < 64 << 10, "largest allocation {largest} bytes");
        let (r, largest) = alloc_track::largest_alloc(|| st::parse_header(&big.0, big.1));
        let h = r.unwrap();
        assert_eq!(h.get("a").unwrap().nbytes(), 1 << 40);
        assert!(largest < 64 << 10, "largest allocation {largest} bytes");
        assert!(t.elapsed().as_millis() < 500, "{:?}", t.elapsed());
    }
    #[cfg(target_arch = "wasm32")]
    {
        assert!(st::parse(&bytes).unwrap_err().message.contains("out of bounds"));
        assert_eq!(st::parse_header(&big.0, big.1).unwrap().get("a").unwrap().nbytes(), 1 << 40);
    }
}

/// A header with a 2^40-byte tensor first and b, c after it, and the length of a file that fits it.
fn big_header() -> (Vec<u8>, u64) {
    let t = 1u64 << 40;
    let json = entries(
        &format!(r#"{{"dtype":"U8","shape":[1048576,1048576],"data_offsets":[0,{t}]}}"#),
        &format!(r#"{{"dtype":"F16","shape":[3],"data_offsets":[{t},{}]}}"#, t + 6),
        &format!(r#"{{"dtype":"U8","shape":[2],"data_offsets":[{},{}]}}"#, t + 6, t + 8),
    );
    let len = 8 + json.len() as u64 + t + 8;
    (json.into_bytes(), len)
}

// ---- bitsandbytes quant state -----------------------------------------------------------------

/// The dict of a valid 4-bit state of shape [8, 64], blocksize 64 (8 blocks).
fn dict(nested: bool) -> Vec<(String, DictTensor)> {
    let x: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
    let opts = Quantize4Options { quant_type: QuantType4::Nf4, blocksize: 64, compress_statistics: nested, allow_non_finite: false };
    let (_, st) = quantize_4bit(&x, &[8, 64], &opts, Kernel::Scalar).unwrap();
    st.to_dict().into_iter().map(|(k, v)| (format!("model.layers.0.mlp.up_proj.weight.{k}"), v)).collect()
}

/// Replace the packed JSON.
fn with_json(mut d: Vec<(String, DictTensor)>, json: &[u8]) -> Vec<(String, DictTensor)> {
    let e = d.iter_mut().find(|(k, _)| k.contains("quant_state.bitsandbytes__")).unwrap();
    e.1 = DictTensor { dtype: DType::U8, shape: vec![json.len()], data: json.to_vec() };
    d
}
fn json_of(d: &[(String, DictTensor)]) -> String {
    String::from_utf8(d.iter().find(|(k, _)| k.contains("quant_state.bitsandbytes__")).unwrap().1.data.clone()).unwrap()
}
fn edit_json(nested: bool, f: impl Fn(String) -> String) -> Vec<(String, DictTensor)> {
    let d = dict(nested);
    let j = f(json_of(&d));
    with_json(d, j.as_bytes())
}
fn edit_tensor(nested: bool, short: &str, f: impl Fn(&mut DictTensor)) -> Vec<(String, DictTensor)> {
    let mut d = dict(nested);
    let suffix = format!(".{short}");
    f(&mut d.iter_mut().find(|(k, _)| k.ends_with(&suffix)).unwrap().1);
    d
}
fn f32_tensor(v: &[f32]) -> DictTensor {
    DictTensor { dtype: DType::F32, shape: vec![v.len()], data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

struct QsCase {
    name: &'static str,
    dict: Vec<(String, DictTensor)>,
    kind: ErrorKind,
    word: &'static str,
}

fn qs(name: &'static str, dict: Vec<(String, DictTensor)>, kind: ErrorKind, word: &'static str) -> QsCase {
    QsCase { name, dict, kind, word }
}

fn quant_state_cases() -> Vec<QsCase> {
    use ErrorKind::*;
    vec![
        // JSON disagrees with the tensors
        qs("json-shape-vs-absmax", edit_json(false, |j| j.replace("[8, 64]", "[16, 64]")), InconsistentState, "absmax has 8 entries but shape [16, 64]"),
        qs("json-shape-vs-quantized-absmax", edit_json(true, |j| j.replace("[8, 64]", "[8, 32]")), InconsistentState, "quantized absmax has 8 entries"),
        qs("json-blocksize-vs-absmax", edit_json(false, |j| j.replace("\"blocksize\": 64", "\"blocksize\": 128")), InconsistentState, "needs 4"),
        qs("json-nested-without-tensors", edit_json(false, |j| j.replace('}', ", \"nested_offset\": 0.5, \"nested_blocksize\": 256, \"nested_dtype\": \"float32\"}")), Parse, "'nested_absmax' is missing"),
        qs("json-nested-fields-no-offset", edit_json(false, |j| j.replace('}', ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\"}")), Parse, "nested"),
        qs("json-plain-with-nested-tensors", edit_json(true, |j| j.split(", \"nested_blocksize\"").next().unwrap().to_string() + "}"), Parse, "nested_offset"),
        // absmax counts and sizes
        qs("absmax-one-short", edit_tensor(false, "absmax", |t| *t = f32_tensor(&[1.0; 7])), InconsistentState, "absmax has 7 entries"),
        qs("absmax-bytes-vs-shape", edit_tensor(false, "absmax", |t| t.data.truncate(28)), LengthMismatch, "'absmax': 28 bytes"),
        qs("absmax-f16", edit_tensor(false, "absmax", |t| *t = DictTensor { dtype: DType::F16, shape: vec![8], data: vec![0; 16] }), InconsistentState, "must be float32"),
        qs("absmax-nested-f32", edit_tensor(true, "absmax", |t| *t = f32_tensor(&[1.0; 8])), InconsistentState, "must be uint8"),
        // nested sizes
        qs("nested-absmax-count", edit_tensor(true, "nested_absmax", |t| *t = f32_tensor(&[1.0, 2.0])), InconsistentState, "nested_absmax has 2 entries"),
        qs("nested-quant-map-255", edit_tensor(true, "nested_quant_map", |t| *t = f32_tensor(&[0.0; 255])), InconsistentState, "256 entries"),
        qs("nested-blocksize-128", edit_json(true, |j| j.replace("\"nested_blocksize\": 256", "\"nested_blocksize\": 128")), InconsistentState, "nested_blocksize 128"),
        qs("nested-offset-inf", edit_json(true, |j| j.split("\"nested_offset\": ").next().unwrap().to_string() + "\"nested_offset\": 1e300}"), InconsistentState, "finite"),
        qs("nested-dtype-int", edit_json(true, |j| j.replace("\"nested_dtype\": \"float32\"", "\"nested_dtype\": \"int32\"")), InconsistentState, "nested_dtype must be a float"),
        // quant map
        qs("quant-map-15", edit_tensor(false, "quant_map", |t| *t = f32_tensor(&[0.0; 15])), InconsistentState, "16 entries"),
        qs("quant-map-missing", dict(false).into_iter().filter(|(k, _)| !k.ends_with(".quant_map")).collect(), Parse, "missing 'quant_map'"),
        // quant type
        qs("quant-type-mismatch", edit_json(false, |j| j.replace("\"nf4\"", "\"fp4\"")), InconsistentState, "key says quant type 'nf4' but the JSON says 'fp4'"),
        qs("quant-type-unknown-key", dict(false).into_iter().map(|(k, v)| (k.replace("__nf4", "__nf5"), v)).collect(), UnsupportedQuantType, "'nf5'"),
        qs("quant-type-unknown-json", edit_json(false, |j| j.replace("\"nf4\"", "\"af4\"")), UnsupportedQuantType, "'af4'"),
        // dtype names
        qs("dtype-unknown", edit_json(false, |j| j.replace("\"float32\"", "\"float8\"")), UnsupportedDtype, "unknown dtype 'float8'"),
        qs("dtype-torch-prefix", edit_json(false, |j| j.replace("\"float32\"", "\"torch.float32\"")), UnsupportedDtype, "unknown dtype 'torch.float32'"),
        qs("dtype-not-float", edit_json(false, |j| j.replace("\"float32\"", "\"uint8\"")), InconsistentState, "must be float32, float16 or bfloat16"),
        qs("nested-dtype-unknown", edit_json(true, |j| j.replace("\"nested_dtype\": \"float32\"", "\"nested_dtype\": \"f32\"")), UnsupportedDtype, "unknown dtype 'f32'"),
        // JSON itself
        qs("json-invalid", edit_json(false, |j| j[..j.len() - 1].to_string()), Parse, "malformed"),
        qs("json-not-utf8", with_json(dict(false), b"{\"quant_type\": \"nf4\xff\"}"), Parse, "UTF-8"),
        qs("json-array", edit_json(false, |j| format!("[{j}]")), Parse, "must be an object"),
        qs("json-extra-field", edit_json(false, |j| j.replace('}', ", \"compress\": true}")), Parse, "unexpected field 'compress'"),
        qs("json-shape-negative", edit_json(false, |j| j.replace("[8, 64]", "[-8, -64]")), Parse, "non-negative integers"),
        qs("json-shape-fractional", edit_json(false, |j| j.replace("[8, 64]", "[8.5, 64]")), Parse, "non-negative integers"),
        qs("json-shape-overflow", edit_json(false, |j| j.replace("[8, 64]", "[4294967295, 4294967295, 4294967295]")), InvalidArgument, "more elements than fit"),
        qs("json-shape-empty", edit_json(false, |j| j.replace("[8, 64]", "[0, 64]")), EmptyTensor, "no elements"),
        qs("json-blocksize-odd", edit_json(false, |j| j.replace("\"blocksize\": 64", "\"blocksize\": 100")), UnsupportedBlocksize, "blocksize 100"),
        qs("json-blocksize-string", edit_json(false, |j| j.replace("\"blocksize\": 64", "\"blocksize\": \"64\"")), Parse, "'blocksize' must be a non-negative integer"),
        qs("json-missing-dtype", edit_json(false, |j| j.replace(", \"dtype\": \"float32\"", "")), Parse, "'dtype' must be a string"),
        qs("json-tensor-not-u8", edit_tensor(false, "quant_state.bitsandbytes__nf4", |t| *t = DictTensor { dtype: DType::I8, shape: vec![t.data.len()], data: t.data.clone() }), Parse, "must be uint8"),
        // keys
        qs("key-two-json-entries", {
            let mut d = dict(false);
            let j = d.iter().find(|(k, _)| k.contains("bitsandbytes__")).unwrap().clone();
            d.push((j.0.replace("__nf4", "__fp4"), j.1));
            d
        }, Parse, "more than one"),
        qs("key-duplicate-absmax", {
            let mut d = dict(false);
            let a = d[0].clone();
            d.push((format!("other.{}", a.0), a.1));
            d
        }, Parse, "duplicate key 'absmax'"),
        qs("key-unexpected", {
            let mut d = dict(false);
            d.push(("model.layers.0.mlp.up_proj.weight.SCB".into(), f32_tensor(&[1.0])));
            d
        }, Parse, "unexpected key"),
        qs("key-no-json", dict(false).into_iter().filter(|(k, _)| !k.contains("bitsandbytes__")).collect(), Parse, "not a packed bitsandbytes 4-bit quant state"),
    ]
}

#[test]
fn valid_quant_states_load() {
    for nested in [false, true] {
        let st = QuantState::from_dict(&dict(nested)).unwrap();
        assert_eq!((st.shape.as_slice(), st.nested()), (&[8usize, 64][..], nested));
    }
}

#[test]
fn hostile_quant_states() {
    let cases = quant_state_cases();
    assert!(cases.len() >= 6);
    for c in &cases {
        let e = match QuantState::from_dict(&c.dict) {
            Ok(s) => panic!("{}: accepted {s:?}", c.name),
            Err(e) => e,
        };
        assert_eq!(e.kind, c.kind, "{}: {e}", c.name);
        assert!(e.message.contains(c.word), "{}: expected '{}' in: {e}", c.name, c.word);
    }
}

/// The JSON's shape agrees with the absmax count (same number of blocks) but not with the
/// packed weight: loading works, dequantizing refuses the packed data.
#[test]
fn json_shape_disagreeing_with_packed_weight() {
    let d = edit_json(false, |j| j.replace("[8, 64]", "[8, 63]"));
    let st = QuantState::from_dict(&d).unwrap();
    let e = dequantize_4bit_vec::<f32>(&[0u8; 256], &st, Kernel::best()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LengthMismatch);
    assert!(e.message.contains("packed data has 256 bytes but shape [8, 63] needs 252"), "{e}");
    assert_eq!(dequantize_4bit_vec::<f32>(&[0u8; 252], &st, Kernel::best()).unwrap().len(), 504);
}
