//! GGUF parsing and dequantization against files written, and values computed, by the `gguf`
//! Python package (gguf-py, llama.cpp's reference reader/writer; version in
//! test/fixtures/gguf/manifest.json, made by scripts/fixtures/make_gguf_fixtures.py), plus a
//! hostile corpus built here from scratch or from the fixtures. Runs natively and in wasm.
//!
//! Dequantization to f32 must equal gguf-py's `gguf.quants.dequantize` bit for bit for every
//! type (NaN payloads included): both compute in f32 with the same operations in the same order.

use lowbit_core::formats::gguf::{self, GgmlType, GgufArray, GgufHeader, GgufValue, GgufValueType};
use lowbit_core::{bf16, f16, ErrorKind};
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const MANIFEST: &str = include_str!("../../../test/fixtures/gguf/manifest.json");
const REFERENCE: &[u8] = include_bytes!("../../../test/fixtures/gguf/reference.bin");
const TYPES_V3: &[u8] = include_bytes!("../../../test/fixtures/gguf/types_v3.gguf");
const SMALL_V2: &[u8] = include_bytes!("../../../test/fixtures/gguf/small_v2.gguf");

fn manifest() -> Value {
    serde_json::from_str(MANIFEST).unwrap()
}

fn file_bytes(name: &str) -> &'static [u8] {
    match name {
        "types_v3.gguf" => TYPES_V3,
        "small_v2.gguf" => SMALL_V2,
        other => panic!("fixture {other} is not embedded in the test"),
    }
}

fn parse_full(bytes: &[u8]) -> GgufHeader {
    gguf::parse(bytes, bytes.len() as u64).unwrap_or_else(|e| panic!("parse: {e}"))
}

fn reference(t: &Value) -> Vec<f32> {
    let off = t["ref_offset"].as_u64().unwrap() as usize;
    let n = t["ref_nbytes"].as_u64().unwrap() as usize;
    REFERENCE[off..off + n].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect()
}

/// Whether a parsed value equals the manifest's description of what gguf-py wrote.
fn value_matches(v: &GgufValue, j: &Value) -> bool {
    let ty = j["type"].as_str().unwrap();
    if v.value_type().name() != ty {
        return false;
    }
    match v {
        GgufValue::F32(x) => u64::from(x.to_bits()) == j["bits"].as_u64().unwrap(),
        GgufValue::F64(x) => x.to_bits() == j["bits"].as_u64().unwrap(),
        GgufValue::Bool(b) => Some(*b) == j["value"].as_bool(),
        GgufValue::String(s) => Some(s.as_str()) == j["value"].as_str(),
        GgufValue::Array(a) => {
            let want = j["values"].as_array().unwrap();
            a.elem_type().name() == j["elem"].as_str().unwrap()
                && a.len() == want.len()
                && want.iter().enumerate().all(|(i, w)| value_matches(&a.get(i).unwrap(), w))
                && a.get(want.len()).is_none()
        }
        GgufValue::U64(x) => Some(*x) == j["value"].as_u64(),
        GgufValue::I64(x) => Some(*x) == j["value"].as_i64(),
        other => {
            let n = other.as_i64().unwrap();
            Some(n) == j["value"].as_i64()
        }
    }
}

#[test]
fn fixtures_parse_with_gguf_py_metadata_and_tensor_infos() {
    let m = manifest();
    assert!(m["versions"]["gguf"].as_str().unwrap().starts_with("0."), "gguf-py version recorded");
    for f in m["files"].as_array().unwrap() {
        let name = f["file"].as_str().unwrap();
        let bytes = file_bytes(name);
        assert_eq!(bytes.len() as u64, f["size"].as_u64().unwrap(), "{name}: size");
        let h = parse_full(bytes);
        assert_eq!(u64::from(h.version), f["version"].as_u64().unwrap(), "{name}: version");
        assert_eq!(u64::from(h.alignment), f["alignment"].as_u64().unwrap(), "{name}: alignment");
        assert_eq!(h.data_start, f["data_start"].as_u64().unwrap(), "{name}: data_start");
        assert!(h.header_len <= h.data_start && h.data_start - h.header_len < u64::from(h.alignment));

        let meta = f["metadata"].as_array().unwrap();
        assert_eq!(h.metadata.len(), meta.len(), "{name}: metadata count");
        for ((k, v), j) in h.metadata.iter().zip(meta) {
            assert_eq!(k, j["key"].as_str().unwrap(), "{name}: metadata order");
            assert!(value_matches(v, j), "{name}: metadata {k}: parsed {v:?}, gguf-py wrote {j}");
        }

        let tens = f["tensors"].as_array().unwrap();
        assert_eq!(h.tensors.len(), tens.len(), "{name}: tensor count");
        for (t, j) in h.tensors.iter().zip(tens) {
            let tn = j["name"].as_str().unwrap();
            assert_eq!(t.name, tn);
            assert_eq!(u64::from(t.ggml_type.id()), j["ggml_type"].as_u64().unwrap(), "{tn}: type");
            assert_eq!(t.ggml_type.name(), j["type_name"].as_str().unwrap(), "{tn}: type name");
            assert_eq!(t.shape, u64s(&j["ne"]), "{tn}: ne");
            let mut torch = u64s(&j["ne"]);
            torch.reverse();
            assert_eq!(t.torch_shape(), torch, "{tn}: torch shape");
            assert_eq!(t.n_elements(), j["n_elements"].as_u64().unwrap(), "{tn}: n_elements");
            assert_eq!(t.offset, j["offset"].as_u64().unwrap(), "{tn}: absolute offset");
            assert_eq!(t.n_bytes, j["n_bytes"].as_u64().unwrap(), "{tn}: n_bytes");
            assert_eq!(t.offset % u64::from(h.alignment), 0);
            assert_eq!(h.tensor(tn), Some(t));
        }
    }
}

#[test]
fn fixture_metadata_spot_checks() {
    let h = parse_full(TYPES_V3);
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.get("general.architecture").and_then(GgufValue::as_str), Some("lowbit-test"));
    assert_eq!(h.get("test.u64"), Some(&GgufValue::U64(u64::MAX)));
    assert_eq!(h.get("test.i64").and_then(GgufValue::as_i64), Some(i64::MIN));
    assert_eq!(h.get("test.i8"), Some(&GgufValue::I8(-128)));
    assert_eq!(h.get("test.bool.true").and_then(GgufValue::as_bool), Some(true));
    assert_eq!(h.get("test.f64").and_then(GgufValue::as_f64), Some(std::f64::consts::E));
    assert_eq!(h.get("test.string").and_then(GgufValue::as_str), Some("h\u{e9}llo w\u{f6}rld \u{2713} \u{1f980}"));
    let strs = h.get("test.array.string").and_then(GgufValue::as_array).and_then(GgufArray::as_strings).unwrap();
    assert_eq!(strs, ["", "a", "\u{2581}the", "\u{65e5}\u{672c}\u{8a9e}", "\n\t\"q\""]);
    match h.get("test.array.nested_i32") {
        Some(GgufValue::Array(GgufArray::Array(rows))) => {
            assert_eq!(rows, &[GgufArray::I32(vec![1, 2, 3]), GgufArray::I32(vec![4]), GgufArray::I32(vec![-5, 6])]);
        }
        other => panic!("nested array: {other:?}"),
    }
    assert_eq!(h.get("test.array.f32").and_then(GgufValue::as_array).map(GgufArray::elem_type), Some(GgufValueType::F32));
    assert_eq!(h.get("test.array.u8"), Some(&GgufValue::Array(GgufArray::U8(vec![0, 1, 127, 255]))));
    assert_eq!(h.get("missing"), None);

    let v2 = parse_full(SMALL_V2);
    assert_eq!(v2.version, 2);
    assert_eq!(v2.alignment, 64);
    assert_eq!(v2.get("general.alignment"), Some(&GgufValue::U32(64)));
    assert_eq!(v2.data_start % 64, 0);
    let t = v2.tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!((t.shape.as_slice(), t.ggml_type), (&[256u64, 1, 1, 2][..], GgmlType::Q5_K));
    assert_eq!(t.torch_shape(), [2, 1, 1, 256]);
}

fn tensors_with_reference() -> Vec<(String, GgmlType, &'static [u8], Vec<f32>)> {
    let m = manifest();
    let mut out = Vec::new();
    for f in m["files"].as_array().unwrap() {
        let bytes = file_bytes(f["file"].as_str().unwrap());
        let h = parse_full(bytes);
        for (t, j) in h.tensors.iter().zip(f["tensors"].as_array().unwrap()) {
            let data = t.data_in(bytes, 0).unwrap();
            assert_eq!(data.len() as u64, t.n_bytes);
            out.push((format!("{}:{}", f["file"].as_str().unwrap(), t.name), t.ggml_type, data, reference(j)));
        }
    }
    out
}

#[test]
fn dequantize_f32_matches_gguf_py_bit_for_bit() {
    let mut seen = Vec::new();
    for (name, ty, data, want) in tensors_with_reference() {
        let mut got = vec![0f32; want.len()];
        gguf::dequantize_f32(ty, data, &mut got).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name} ({ty}) element {i}: ours {g:e} ({:#x}), gguf-py {w:e} ({:#x})", g.to_bits(), w.to_bits());
        }
        if !seen.contains(&ty) {
            seen.push(ty);
        }
    }
    use GgmlType::*;
    for ty in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K] {
        assert!(seen.contains(&ty), "no fixture tensor of type {ty}");
        assert!(ty.can_dequantize());
    }
}

#[test]
fn dequantize_f16_and_bf16_are_rne_of_the_f32_values() {
    for (name, ty, data, want) in tensors_with_reference() {
        let mut h = vec![f16::ZERO; want.len()];
        gguf::dequantize_f16(ty, data, &mut h).unwrap();
        let mut b = vec![bf16::ZERO; want.len()];
        gguf::dequantize(ty, data, &mut b).unwrap();
        for (i, w) in want.iter().enumerate() {
            assert_eq!(h[i].to_bits(), f16::from_f32(*w).to_bits(), "{name} f16 element {i}");
            assert_eq!(b[i].to_bits(), bf16::from_f32(*w).to_bits(), "{name} bf16 element {i}");
        }
    }
}

#[test]
fn tensor_info_dequantize_helper() {
    let h = parse_full(SMALL_V2);
    let t = h.tensor("blk.0.attn_q.weight").unwrap();
    let data = t.data_in(SMALL_V2, 0).unwrap();
    let v: Vec<f32> = t.dequantize(data).unwrap();
    assert_eq!(v.len() as u64, t.n_elements());
    let e = t.dequantize::<f32>(&data[1..]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LengthMismatch);
    // data_in with a buffer holding only part of the file
    let tail = &SMALL_V2[600..];
    assert_eq!(t.data_in(tail, 600).unwrap(), data);
    let e = t.data_in(&SMALL_V2[..t.offset as usize + 10], 0).unwrap_err();
    assert_eq!((e.kind, e.index), (ErrorKind::NeedMoreData, Some((t.offset + t.n_bytes) as usize)));
}

#[test]
fn dequantize_refuses_bad_arguments() {
    let mut out = [0f32; 32];
    let e = gguf::dequantize_f32(GgmlType::Q2_K, &[0; 84], &mut [0f32; 256]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UnsupportedDtype);
    assert!(e.message.contains("Q2_K"), "{e}");
    let e = gguf::dequantize_f32(GgmlType::Q4_0, &[0; 17], &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LengthMismatch);
    let e = gguf::dequantize_f32(GgmlType::Q4_0, &[0; 18], &mut out[..31]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::LengthMismatch);
    assert!(e.message.contains("block"), "{e}");
    gguf::dequantize_f32(GgmlType::Q4_0, &[0; 18], &mut out).unwrap();
    gguf::dequantize_f32(GgmlType::Q4_K, &[], &mut []).unwrap();
}

#[test]
fn ggml_type_table() {
    for &t in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(t.id()).unwrap(), t);
        assert!(t.block_size() >= 1 && t.type_size() >= 1);
    }
    use GgmlType::*;
    let listed = [(Q4_0, 32, 18), (Q4_1, 32, 20), (Q5_0, 32, 22), (Q5_1, 32, 24), (Q8_0, 32, 34), (Q4_K, 256, 144), (Q5_K, 256, 176), (Q6_K, 256, 210), (F32, 1, 4), (F16, 1, 2), (BF16, 1, 2)];
    for (t, bs, ts) in listed {
        assert_eq!((t.block_size(), t.type_size()), (bs, ts), "{t}");
    }
    assert_eq!(Q4_K.byte_size(512), Some(288));
    assert_eq!(Q4_K.byte_size(500), None);
    for id in [4, 5, 31, 33, 36, 38, 42, 1000, u32::MAX] {
        assert_eq!(GgmlType::from_id(id).unwrap_err().kind, ErrorKind::UnsupportedDtype, "id {id}");
    }
}

// ---------------------------------------------------------------------------------------------
// streaming

/// Every prefix shorter than the header gets `NeedMoreData` with a bound that is past the prefix
/// and no more than the header; following the bounds from an empty prefix reaches the header.
fn check_streaming(name: &str, bytes: &[u8]) {
    let full = parse_full(bytes);
    let len = bytes.len() as u64;
    let header_end = full.data_start.min(len) as usize;
    for n in 0..header_end {
        let e = gguf::parse(&bytes[..n], len).expect_err("prefix shorter than the header must not parse");
        assert_eq!(e.kind, ErrorKind::NeedMoreData, "{name}: prefix {n}: {e}");
        let need = e.index.unwrap();
        assert!(need > n && need <= header_end, "{name}: prefix {n}: bound {need} (header {header_end})");
    }
    for n in [header_end, header_end + 1, bytes.len()] {
        if n <= bytes.len() {
            assert_eq!(gguf::parse(&bytes[..n], len).unwrap(), full, "{name}: prefix {n}");
        }
    }
    let (mut n, mut steps) = (0usize, 0);
    let h = loop {
        match gguf::parse(&bytes[..n], len) {
            Ok(h) => break h,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::NeedMoreData, "{e}");
                n = e.index.unwrap();
                steps += 1;
            }
        }
    };
    assert_eq!(h, full);
    assert!(steps <= 1 + full.metadata.len() * 3 + full.tensors.len() * 3 + 100, "{name}: {steps} steps");
}

#[test]
fn streaming_parse_asks_for_more_and_finishes() {
    check_streaming("types_v3.gguf", TYPES_V3);
    check_streaming("small_v2.gguf", SMALL_V2);
    // a header-only file (no tensors) that ends without padding
    let f = Gguf::new().kv_u32("a", 1).build();
    let h = parse_full(&f);
    assert!(h.data_start > f.len() as u64 && h.tensors.is_empty());
    check_streaming("no tensors", &f);
}

#[test]
fn huge_counts_in_a_huge_file_do_not_allocate() {
    // The counts are plausible for the claimed 2^62-byte file, so the parser must ask for more
    // data rather than reserve room for 2^40 entries.
    let f = Gguf::new().header(3, 1 << 40, 1 << 40);
    let e = gguf::parse(&f, 1 << 62).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedMoreData, "{e}");
    assert!(e.index.unwrap() > f.len());
    let mut f = Gguf::new().header(3, 0, 1);
    f.extend(string("arr"));
    f.extend(9u32.to_le_bytes());
    f.extend(8u32.to_le_bytes()); // array of strings
    f.extend((1u64 << 40).to_le_bytes());
    let e = gguf::parse(&f, 1 << 62).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NeedMoreData, "{e}");
}

// ---------------------------------------------------------------------------------------------
// hostile corpus

fn string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend(s.as_bytes());
    v
}

/// A small GGUF builder. Tensors are given with their stored (relative) offset.
#[derive(Clone)]
struct Gguf {
    version: u32,
    kvs: Vec<Vec<u8>>,
    tis: Vec<Vec<u8>>,
    alignment: usize,
    data_len: usize,
}

impl Gguf {
    fn new() -> Self {
        Gguf { version: 3, kvs: vec![], tis: vec![], alignment: 32, data_len: 0 }
    }
    fn header(&self, version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(version.to_le_bytes());
        v.extend(n_tensors.to_le_bytes());
        v.extend(n_kv.to_le_bytes());
        v
    }
    /// A raw metadata entry: key, then the type-tagged value bytes.
    fn kv_raw(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        let mut v = string(key);
        v.extend(ty.to_le_bytes());
        v.extend(value);
        self.kvs.push(v);
        self
    }
    fn kv_u32(self, key: &str, x: u32) -> Self {
        self.kv_raw(key, 4, &x.to_le_bytes())
    }
    fn tensor(mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> Self {
        let mut v = string(name);
        v.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            v.extend(d.to_le_bytes());
        }
        v.extend(ty.to_le_bytes());
        v.extend(offset.to_le_bytes());
        self.tis.push(v);
        self
    }
    fn data(mut self, n: usize) -> Self {
        self.data_len = n;
        self
    }
    fn build(&self) -> Vec<u8> {
        let mut v = self.header(self.version, self.tis.len() as u64, self.kvs.len() as u64);
        for kv in &self.kvs {
            v.extend(kv);
        }
        for t in &self.tis {
            v.extend(t);
        }
        if self.data_len > 0 {
            v.resize(v.len().next_multiple_of(self.alignment), 0);
            v.resize(v.len() + self.data_len, 0x3c);
        }
        v
    }
}

#[track_caller]
fn expect_err(case: &str, bytes: &[u8], file_len: u64, kind: ErrorKind, keywords: &[&str]) {
    let e = match gguf::parse(bytes, file_len) {
        Ok(h) => panic!("{case}: parsed: {h:?}"),
        Err(e) => e,
    };
    assert_eq!(e.kind, kind, "{case}: {e}");
    let msg = e.message.to_lowercase();
    assert!(keywords.iter().any(|k| msg.contains(&k.to_lowercase())), "{case}: message {:?} names none of {keywords:?}", e.message);
}

#[track_caller]
fn hostile(case: &str, bytes: &[u8], kind: ErrorKind, keywords: &[&str]) {
    expect_err(case, bytes, bytes.len() as u64, kind, keywords);
}

const MAL: ErrorKind = ErrorKind::MalformedFile;

#[test]
fn hostile_headers() {
    let ok = Gguf::new().kv_u32("k", 7).tensor("t", &[32, 2], 8, 0).data(68);
    let good = ok.build();
    assert_eq!(parse_full(&good).tensors[0].n_bytes, 68);

    let mut f = good.clone();
    f[3] = b'X';
    hostile("bad magic", &f, MAL, &["magic"]);
    hostile("bad magic, 4 bytes", b"GGUX", MAL, &["magic"]);
    hostile("2-byte file", b"GX", MAL, &["truncated"]);
    hostile("empty file", b"", MAL, &["truncated"]);
    for (v, kw) in [(1u32, "version 1"), (99, "version 99"), (0, "version 0"), (3u32.swap_bytes(), "big-endian")] {
        let mut f = good.clone();
        f[4..8].copy_from_slice(&v.to_le_bytes());
        hostile(&format!("version {v}"), &f, MAL, &[kw]);
    }
    // version 1 with its 32-bit counts, too short for a v2 header: still named as version 1
    let mut v1 = b"GGUF".to_vec();
    v1.extend(1u32.to_le_bytes());
    v1.extend([0; 8]);
    hostile("v1 file", &v1, MAL, &["version 1"]);

    hostile("n_kv 2^60", &ok.header(3, 0, 1 << 60), MAL, &["metadata count"]);
    hostile("n_tensors 2^60", &ok.header(3, 1 << 60, 0), MAL, &["tensor count"]);
    hostile("n_kv u64::MAX", &ok.header(3, 0, u64::MAX), MAL, &["metadata count"]);
    let mut f = ok.header(3, 3, 0);
    f.extend([0; 60]); // 84 bytes < 3 * 24 tensor infos needs
    hostile("n_tensors just too big", &f, MAL, &["tensor count"]);
}

#[test]
fn hostile_metadata() {
    let base = Gguf::new().kv_u32("k", 7);

    let mut f = base.header(3, 0, 1);
    f.extend((1u64 << 62).to_le_bytes());
    f.extend(b"key");
    f.extend([0; 16]);
    hostile("key length 2^62", &f, MAL, &["string length"]);

    let mut v = (1u64 << 61).to_le_bytes().to_vec();
    v.extend(b"abc");
    hostile("string value length 2^61", &base.clone().kv_raw("s", 8, &v).build(), MAL, &["string length"]);
    // within the (claimed) file but over the 64 MiB string limit
    let f = base.clone().kv_raw("s", 8, &(100u64 << 20).to_le_bytes()).build();
    expect_err("string over the limit", &f, 1 << 40, MAL, &["limit"]);

    let mut v = 4u32.to_le_bytes().to_vec();
    v.extend((1u64 << 61).to_le_bytes());
    hostile("u32 array length 2^61", &base.clone().kv_raw("a", 9, &v).build(), MAL, &["array length"]);
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend(1000u64.to_le_bytes());
    v.extend(string("x"));
    hostile("string array length 1000 with one string", &base.clone().kv_raw("a", 9, &v).build(), MAL, &["array length"]);
    let mut v = 9u32.to_le_bytes().to_vec();
    v.extend(u64::MAX.to_le_bytes());
    hostile("array-of-arrays length u64::MAX", &base.clone().kv_raw("a", 9, &v).build(), MAL, &["array length"]);

    // nesting: array(array(array(array(array(u8))))) is 5 deep; 4 is the limit
    let nested = |depth: usize| {
        let mut v = Vec::new();
        for _ in 1..depth {
            v.extend(9u32.to_le_bytes());
            v.extend(1u64.to_le_bytes());
        }
        v.extend(0u32.to_le_bytes());
        v.extend(1u64.to_le_bytes());
        v.push(42);
        v
    };
    let h = parse_full(&base.clone().kv_raw("a", 9, &nested(4)).build());
    let mut x = h.get("a").unwrap().as_array().unwrap();
    for _ in 0..3 {
        match x {
            GgufArray::Array(v) => x = &v[0],
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(x, &GgufArray::U8(vec![42]));
    hostile("array nesting depth 5", &base.clone().kv_raw("a", 9, &nested(5)).build(), MAL, &["nested"]);
    // empty arrays of every type parse
    for et in 0..=12u32 {
        let mut v = et.to_le_bytes().to_vec();
        v.extend(0u64.to_le_bytes());
        let h = parse_full(&base.clone().kv_raw("e", 9, &v).build());
        assert_eq!(h.get("e").unwrap().as_array().unwrap().len(), 0);
    }

    hostile("unknown value type 13", &base.clone().kv_raw("u", 13, &[0; 8]).build(), MAL, &["value type 13"]);
    hostile("unknown value type u32::MAX", &base.clone().kv_raw("u", u32::MAX, &[0; 8]).build(), MAL, &["value type"]);
    let mut v = 99u32.to_le_bytes().to_vec();
    v.extend(1u64.to_le_bytes());
    hostile("unknown array element type", &base.clone().kv_raw("u", 9, &v).build(), MAL, &["element type 99"]);
    hostile("bool 2", &base.clone().kv_raw("b", 7, &[2]).build(), MAL, &["bool"]);
    let mut v = 7u32.to_le_bytes().to_vec();
    v.extend(2u64.to_le_bytes());
    v.extend([1, 7]);
    hostile("bool array with 7", &base.clone().kv_raw("b", 9, &v).build(), MAL, &["bool"]);
    hostile("duplicate key", &base.clone().kv_u32("k", 8).build(), MAL, &["duplicate metadata key 'k'"]);
    hostile("empty key", &base.clone().kv_u32("", 8).build(), MAL, &["empty"]);
    let mut f = base.header(3, 0, 1);
    f.extend(2u64.to_le_bytes());
    f.extend([0xff, 0xfe]);
    f.extend(4u32.to_le_bytes());
    f.extend(1u32.to_le_bytes());
    hostile("non-UTF-8 key", &f, MAL, &["utf-8"]);
    // a non-UTF-8 string value is kept, with replacement characters
    let mut v = 3u64.to_le_bytes().to_vec();
    v.extend([b'a', 0xff, b'b']);
    let h = parse_full(&base.clone().kv_raw("s", 8, &v).build());
    assert_eq!(h.get("s").unwrap().as_str(), Some("a\u{fffd}b"));

    for (a, kw) in [(0u32, "power of two"), (3, "power of two"), (48, "power of two")] {
        let f = Gguf::new().kv_u32("general.alignment", a).tensor("t", &[4], 0, 0).data(16).build();
        hostile(&format!("alignment {a}"), &f, MAL, &[kw]);
    }
    let f = Gguf::new().kv_raw("general.alignment", 10, &64u64.to_le_bytes()).build();
    hostile("alignment as u64", &f, MAL, &["u32"]);
    // a valid custom alignment is used for the data section and the offsets
    let mut g = Gguf::new().kv_u32("general.alignment", 256).tensor("t", &[4], 0, 0).data(16);
    g.alignment = 256;
    let h = parse_full(&g.build());
    assert_eq!((h.alignment, h.data_start, h.tensors[0].offset), (256, 256, 256));
}

#[test]
fn hostile_tensor_infos() {
    let g = || Gguf::new().kv_u32("k", 7);
    hostile("n_dims 5", &g().tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(4).build(), MAL, &["dimensions"]);
    hostile("n_dims u32::MAX", &g().tensor("t", &[], 0, 0).build().tap_ndims(u32::MAX), MAL, &["dimensions"]);
    hostile("dim product overflow", &g().tensor("t", &[1 << 32, 1 << 32], 0, 0).data(4).build(), MAL, &["overflow"]);
    hostile("dim product overflow, 4 dims", &g().tensor("t", &[1 << 20, 1 << 20, 1 << 20, 1 << 4], 0, 0).build(), MAL, &["overflow"]);
    hostile("dim >= 2^63", &g().tensor("t", &[1 << 63], 0, 0).build(), MAL, &["2^63"]);
    hostile("byte size overflow", &g().tensor("t", &[1 << 62], 0, 0).build(), MAL, &["overflow", "end of the file"]);
    hostile("unknown ggml type", &g().tensor("t", &[32], 99, 0).data(64).build(), ErrorKind::UnsupportedDtype, &["99"]);
    hostile("removed ggml type", &g().tensor("t", &[32], 31, 0).data(64).build(), ErrorKind::UnsupportedDtype, &["removed"]);
    hostile("ggml type u32::MAX", &g().tensor("t", &[32], u32::MAX, 0).data(64).build(), ErrorKind::UnsupportedDtype, &["4294967295"]);
    hostile("row not a multiple of the block", &g().tensor("t", &[33], 2, 0).data(64).build(), MAL, &["block size"]);
    hostile("row 16 of Q4_0, 32 elements", &g().tensor("t", &[16, 2], 2, 0).data(64).build(), MAL, &["block size"]);
    hostile("Q4_K row 128", &g().tensor("t", &[128, 2], 12, 0).data(144).build(), MAL, &["block size"]);
    hostile("misaligned offset", &g().tensor("t", &[4], 0, 16).data(64).build(), MAL, &["misaligned"]);
    hostile("tensor beyond EOF", &g().tensor("t", &[32], 0, 0).data(127).build(), MAL, &["end of the file"]);
    hostile("offset beyond EOF", &g().tensor("t", &[4], 0, 1 << 40).data(16).build(), MAL, &["end of the file"]);
    hostile("offset near u64::MAX", &g().tensor("t", &[4], 0, u64::MAX - 31).data(16).build(), MAL, &["end of the file"]);
    hostile("overlapping tensors", &g().tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32).data(64).build(), MAL, &["overlap"]);
    hostile("same offset", &g().tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 0).data(64).build(), MAL, &["overlap"]);
    hostile("duplicate names", &g().tensor("a", &[8], 0, 0).tensor("a", &[8], 0, 32).data(64).build(), MAL, &["duplicate tensor name 'a'"]);
    let mut f = g().tensor("xy", &[8], 0, 0).data(32).build();
    let at = f.windows(2).position(|w| w == b"xy").unwrap();
    f[at] = 0xc3;
    hostile("non-UTF-8 name", &f, MAL, &["utf-8"]);
    hostile("tensor name length huge", &g().tensor("t", &[8], 0, 0).build().tap_name_len(1 << 60), MAL, &["string length"]);

    // what is fine: out-of-order and non-contiguous tensors, zero-size tensors, scalars
    let h = parse_full(&g().tensor("b", &[8], 0, 64).tensor("a", &[8], 0, 0).tensor("z", &[0, 5], 2, 0).tensor("s", &[], 0, 96).data(100).build());
    assert_eq!(h.tensors.iter().map(|t| t.n_bytes).collect::<Vec<_>>(), [32, 32, 0, 4]);
    assert_eq!(h.tensor("s").unwrap().n_elements(), 1);
}

trait Tap {
    fn tap_ndims(self, n: u32) -> Vec<u8>;
    fn tap_name_len(self, n: u64) -> Vec<u8>;
}
impl Tap for Vec<u8> {
    /// Replaces the n_dims of the last tensor of a file without data, one with zero dims: the
    /// last 16 bytes are n_dims, type and offset.
    fn tap_ndims(mut self, n: u32) -> Vec<u8> {
        let at = self.len() - 16;
        self[at..at + 4].copy_from_slice(&n.to_le_bytes());
        self
    }
    /// Replaces the name length of the only tensor, named "t".
    fn tap_name_len(mut self, n: u64) -> Vec<u8> {
        let at = self.windows(9).position(|w| w == b"\x01\0\0\0\0\0\0\0t").unwrap();
        self[at..at + 8].copy_from_slice(&n.to_le_bytes());
        self
    }
}

#[test]
fn hostile_truncations_and_prefix_misuse() {
    for (name, bytes) in [("small_v2.gguf", SMALL_V2), ("types_v3.gguf", TYPES_V3)] {
        let h = parse_full(bytes);
        let data_end = h.tensors.iter().map(|t| t.offset + t.n_bytes).max().unwrap() as usize;
        for cut in 0..bytes.len() {
            let r = gguf::parse(&bytes[..cut], cut as u64);
            if cut < data_end {
                let e = r.expect_err("truncated file must not parse");
                assert_eq!(e.kind, MAL, "{name} cut at {cut}: {e}");
                let named = ["truncated", "end of the file", "left in the file"].iter().any(|k| e.message.contains(k));
                assert!(named, "{name} cut at {cut}: {e}");
            } else {
                // only trailing padding is missing
                assert_eq!(r.unwrap().tensors, h.tensors);
            }
        }
    }
    let e = gguf::parse(SMALL_V2, 10).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
}

#[test]
fn fixture_mutations_never_panic() {
    // Every single-byte change of the header of both fixtures: parse gives Ok or a typed
    // error, and each tensor of an Ok header dequantizes (or is refused) without panicking.
    for bytes in [SMALL_V2, TYPES_V3] {
        let end = parse_full(bytes).data_start as usize;
        let mut f = bytes.to_vec();
        for i in 0..end {
            let orig = f[i];
            for x in [0u8, 0xff, orig ^ 0x80, orig.wrapping_add(1)] {
                f[i] = x;
                if let Ok(h) = gguf::parse(&f, f.len() as u64) {
                    for t in &h.tensors {
                        let d = t.data_in(&f, 0).unwrap();
                        let _ = t.dequantize::<f32>(d);
                    }
                }
            }
            f[i] = orig;
        }
    }
}
