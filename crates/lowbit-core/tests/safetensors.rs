//! safetensors header parsing and writing against files written by the Python `safetensors`
//! package (scripts/fixtures/make_safetensors_fixtures.py; versions in the manifest). Runs
//! natively and in wasm.

use lowbit_core::formats::safetensors::{self as st, StDtype};
use lowbit_core::ErrorKind;
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const MANIFEST: &str = include_str!("../../../test/fixtures/safetensors/manifest.json");
const FILES: [(&str, &[u8]); 3] = [
    ("mixed.safetensors", include_bytes!("../../../test/fixtures/safetensors/mixed.safetensors")),
    ("nometa.safetensors", include_bytes!("../../../test/fixtures/safetensors/nometa.safetensors")),
    ("empty.safetensors", include_bytes!("../../../test/fixtures/safetensors/empty.safetensors")),
];

fn manifest(file: &str) -> Value {
    let m: Value = serde_json::from_str(MANIFEST).unwrap();
    m["files"][file].clone()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// (name, dtype, shape, nbytes) of a manifest file, in offset order.
fn specs(m: &Value) -> Vec<(String, StDtype, Vec<usize>, u64)> {
    m["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let o = t["data_offsets"].as_array().unwrap();
            (
                t["name"].as_str().unwrap().to_string(),
                StDtype::from_name(t["dtype"].as_str().unwrap()).unwrap(),
                t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect(),
                o[1].as_u64().unwrap() - o[0].as_u64().unwrap(),
            )
        })
        .collect()
}

fn metadata(m: &Value) -> Vec<(String, String)> {
    match m["metadata"].as_object() {
        Some(o) => o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect(),
        None => vec![],
    }
}

#[test]
fn python_files_parse_to_what_python_reads() {
    for (fname, bytes) in FILES {
        let m = manifest(fname);
        assert_eq!(m["file_len"].as_u64().unwrap(), bytes.len() as u64, "{fname}");
        let h = st::parse(bytes).unwrap_or_else(|e| panic!("{fname}: {e}"));
        let n = m["header_len"].as_u64().unwrap();
        assert_eq!(h.data_start, 8 + n, "{fname}");
        assert_eq!(h.metadata, metadata(&m), "{fname}");
        let want = m["tensors"].as_array().unwrap();
        assert_eq!(h.tensors.len(), want.len(), "{fname}");
        for (t, w) in h.tensors.iter().zip(want) {
            assert_eq!(t.name, w["name"].as_str().unwrap(), "{fname}");
            assert_eq!(t.dtype.name(), w["dtype"].as_str().unwrap(), "{fname} {}", t.name);
            let shape: Vec<usize> = w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(t.shape, shape, "{fname} {}", t.name);
            let o = w["data_offsets"].as_array().unwrap();
            assert_eq!(t.start, h.data_start + o[0].as_u64().unwrap(), "{fname} {}", t.name);
            assert_eq!(t.end, h.data_start + o[1].as_u64().unwrap(), "{fname} {}", t.name);
            assert_eq!(hex(&bytes[t.start as usize..t.end as usize]), w["data_hex"].as_str().unwrap(), "{fname} {}", t.name);
        }
        // Sorted by offset and tiling the data section.
        let mut pos = h.data_start;
        for t in &h.tensors {
            assert_eq!(t.start, pos);
            pos = t.end;
        }
        assert_eq!(pos, bytes.len() as u64);
    }
}

#[test]
fn mixed_file_values() {
    let bytes = FILES[0].1;
    let h = st::parse(bytes).unwrap();
    assert_eq!(h.metadata_value("format"), Some("pt"));
    assert_eq!(h.tensors.len(), 23);
    let get = |n: &str| h.get(n).unwrap_or_else(|| panic!("{n}"));
    let e = get("model.embed.weight");
    assert_eq!((e.dtype, e.shape.as_slice(), e.nbytes(), e.numel()), (StDtype::F32, &[4usize, 8][..], 128, 32));
    let vals: Vec<f32> = bytes[e.start as usize..e.end as usize].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(vals, (0..32).map(|i| i as f32 / 8.0).collect::<Vec<_>>());
    let s = get("scalar");
    assert_eq!((s.shape.len(), s.numel()), (0, 1));
    assert_eq!(f32::from_le_bytes(bytes[s.start as usize..s.end as usize].try_into().unwrap()), 2.5);
    let z = get("zero_size");
    assert_eq!((z.shape.as_slice(), z.nbytes()), (&[0usize, 3][..], 0));
    let f4 = get("mx.f4");
    assert_eq!((f4.dtype, f4.shape.as_slice(), f4.nbytes()), (StDtype::F4, &[1usize, 6][..], 3));
    assert_eq!(&bytes[f4.start as usize..f4.end as usize], &[0x12, 0x34, 0x56]);
    assert_eq!(get("blocks.\u{fc}.\u{2603}.weight").dtype, StDtype::F16);
    assert_eq!(get("model.norm.weight").dtype.to_dtype(), Some(lowbit_core::DType::BF16));
    assert_eq!(get("mask").dtype, StDtype::Bool);
    assert_eq!(get("complex").dtype.byte_size(), Some(8));
}

#[test]
fn streaming_api_matches_whole_file() {
    for (fname, bytes) in FILES {
        let len = bytes.len() as u64;
        let e = st::header_len(&bytes[..5], len).unwrap_err();
        assert_eq!((e.kind, e.index), (ErrorKind::NeedMoreData, Some(8)), "{fname}");
        let n = st::header_len(&bytes[..8], len).unwrap();
        let h = st::parse_header(&bytes[8..8 + n as usize], len).unwrap();
        assert_eq!(h, st::parse(bytes).unwrap(), "{fname}");
    }
}

#[test]
fn writer_is_byte_identical_to_python() {
    for (fname, bytes) in FILES {
        let m = manifest(fname);
        let mut specs = specs(&m);
        let want_order: Vec<String> = specs.iter().map(|s| s.0.clone()).collect();
        specs.reverse();
        st::reference_order(&mut specs);
        let order: Vec<String> = specs.iter().map(|s| s.0.clone()).collect();
        assert_eq!(order, want_order, "{fname}: reference_order differs from the Python writer's layout");
        let header = st::write_header(&specs, &metadata(&m)).unwrap();
        let n = 8 + m["header_len"].as_u64().unwrap() as usize;
        assert_eq!(header.len() % 8, 0);
        assert_eq!(String::from_utf8_lossy(&header[8..]), String::from_utf8_lossy(&bytes[8..n]), "{fname}");
        assert_eq!(header, &bytes[..n], "{fname}");
    }
}

#[test]
fn round_trip() {
    let names = ["w", "quote\"back\\slash", "ctl\u{1}\n\t", "\u{1f600}.\u{e9}", "z.scalar", "empty", "mx6"];
    let specs: Vec<Spec> = vec![
        (names[0], StDtype::BF16, vec![3, 5], 30),
        (names[1], StDtype::F4, vec![2, 3], 3),
        (names[2], StDtype::U64, vec![1, 1, 1, 2], 16),
        (names[3], StDtype::F8E4M3, vec![7], 7),
        (names[4], StDtype::F64, vec![], 8),
        (names[5], StDtype::I32, vec![4, 0, 1 << 30], 0),
        (names[6], StDtype::F6E3M2, vec![4], 3),
    ];
    let meta = [("format", "pt"), ("k\"ey", "v\u{2603}\nal"), ("empty", "")];
    let header = st::write_header(&specs, &meta).unwrap();
    let data_len: u64 = specs.iter().map(|s| s.3).sum();
    let mut file = header.clone();
    file.extend((0..data_len).map(|i| i as u8));
    let h = st::parse(&file).unwrap();
    assert_eq!(h.data_start, header.len() as u64);
    assert_eq!(h.metadata, meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
    // Given order == offset order (a stable sort keeps the zero-size tensor after "z.scalar").
    assert_eq!(h.tensors.len(), specs.len());
    let mut pos = h.data_start;
    for (t, s) in h.tensors.iter().zip(&specs) {
        assert_eq!((t.name.as_str(), t.dtype, &t.shape, t.start, t.nbytes()), (s.0, s.1, &s.2, pos, s.3));
        pos = t.end;
    }
    // Writing the parsed index again gives the same bytes.
    let again: Vec<_> = h.tensors.iter().map(|t| (t.name.clone(), t.dtype, t.shape.clone(), t.nbytes())).collect();
    assert_eq!(st::write_header(&again, &h.metadata).unwrap(), header);
}

/// (name, dtype, shape, nbytes), what write_header takes.
type Spec<'a> = (&'a str, StDtype, Vec<usize>, u64);

#[test]
fn writer_refuses_bad_input() {
    let none: [(&str, &str); 0] = [];
    let cases: Vec<(Vec<Spec>, ErrorKind, &str)> = vec![
        (vec![("a", StDtype::F32, vec![2], 8), ("a", StDtype::F16, vec![2], 4)], ErrorKind::InvalidArgument, "duplicate"),
        (vec![("a", StDtype::F32, vec![2], 7)], ErrorKind::LengthMismatch, "needs 8"),
        (vec![("", StDtype::F32, vec![2], 8)], ErrorKind::InvalidArgument, "invalid tensor name"),
        (vec![("__metadata__", StDtype::F32, vec![2], 8)], ErrorKind::InvalidArgument, "invalid tensor name"),
        (vec![("a", StDtype::F4, vec![3], 1)], ErrorKind::InvalidArgument, "whole number of bytes"),
        (vec![("a", StDtype::F32, vec![usize::MAX; 3], 0)], ErrorKind::InvalidArgument, "overflows"),
        (vec![("a", StDtype::U8, vec![1; 65], 1)], ErrorKind::InvalidArgument, "dimensions"),
    ];
    #[cfg(target_pointer_width = "64")]
    let cases = {
        let mut c = cases;
        c.push((vec![("a", StDtype::U8, vec![u64::MAX as usize], u64::MAX), ("b", StDtype::U8, vec![1], 1)], ErrorKind::InvalidArgument, "overflows"));
        c
    };
    for (specs, kind, word) in cases {
        let e = st::write_header(&specs, &none).unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.message.contains(word), "{e}");
    }
    let e = st::write_header(&[("a", StDtype::U8, [1usize], 1u64)], &[("k", "1"), ("k", "2")]).unwrap_err();
    assert!(e.message.contains("duplicate metadata key"), "{e}");
}

#[test]
fn dtype_table() {
    assert_eq!(StDtype::ALL.len(), 22);
    for &d in StDtype::ALL {
        assert_eq!(StDtype::from_name(d.name()), Some(d));
        assert_eq!(d.byte_size().map(|b| b * 8).unwrap_or(d.bits()), d.bits());
    }
    let bytes: Vec<(&str, Option<u32>)> = StDtype::ALL.iter().map(|d| (d.name(), d.byte_size())).collect();
    for (name, size) in [
        ("BOOL", Some(1)),
        ("U8", Some(1)),
        ("I8", Some(1)),
        ("F8_E5M2", Some(1)),
        ("F8_E4M3", Some(1)),
        ("F8_E8M0", Some(1)),
        ("F8_E4M3FNUZ", Some(1)),
        ("F8_E5M2FNUZ", Some(1)),
        ("I16", Some(2)),
        ("U16", Some(2)),
        ("F16", Some(2)),
        ("BF16", Some(2)),
        ("I32", Some(4)),
        ("U32", Some(4)),
        ("F32", Some(4)),
        ("F64", Some(8)),
        ("I64", Some(8)),
        ("U64", Some(8)),
        ("C64", Some(8)),
        ("F4", None),
        ("F6_E2M3", None),
        ("F6_E3M2", None),
    ] {
        assert!(bytes.contains(&(name, size)), "{name}");
    }
    assert_eq!(StDtype::from_name("f32"), None);
    assert_eq!(StDtype::F4.nbytes(&[3, 2]), Some(3));
    assert_eq!(StDtype::F4.nbytes(&[3]), None);
}

#[test]
fn in_file_names_the_file() {
    let e = st::parse(b"\x02\0\0\0\0\0\0\0[]").map_err(st::in_file("shard-00002.safetensors")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MalformedFile);
    assert!(e.message.starts_with("shard-00002.safetensors: safetensors header:"), "{e}");
}
