//! GGUF: `gguf::parse` on arbitrary bytes (the input is the whole file), and, on success, the
//! header's invariants and the dequantization of every tensor (to f32 and f16).
//!
//! Also checks streaming: the same file parsed from a prefix (its length picked from the first
//! byte) gives either `NeedMoreData` with a bound past the prefix and inside the file, or exactly
//! the result of the whole-file parse.
//!
//! Seed the corpus with the fixtures: `cp test/fixtures/gguf/*.gguf fuzz/corpus/gguf/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lowbit_core::formats::gguf;
use lowbit_core::{f16, ErrorKind};

/// Tensors with more elements than this are not dequantized (keeps executions fast; the
/// input bounds the data anyway).
const MAX_DEQUANT_ELEMENTS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let full = gguf::parse(data, len);

    // streaming: a prefix never reads past itself and agrees with the whole-file parse
    let k = data.first().map_or(0, |&b| data.len() * usize::from(b) / 256);
    match gguf::parse(&data[..k], len) {
        Err(e) if e.kind == ErrorKind::NeedMoreData => {
            let need = e.index.expect("NeedMoreData carries the byte count");
            assert!(need > k && need as u64 <= len, "prefix {k} of {len}: bound {need}");
        }
        // Debug text: NaN metadata values are not == to themselves
        other => assert_eq!(format!("{other:?}"), format!("{full:?}"), "prefix {k} of {len}"),
    }

    let h = match full {
        Ok(h) => h,
        Err(e) => {
            assert!(matches!(e.kind, ErrorKind::MalformedFile | ErrorKind::UnsupportedDtype), "{e}");
            assert!(!e.message.is_empty());
            return;
        }
    };
    assert!(matches!(h.version, 2 | 3));
    assert!(h.alignment.is_power_of_two());
    assert!(h.header_len <= h.data_start && h.data_start % u64::from(h.alignment) == 0);
    assert!(h.header_len <= len);
    let mut ranges: Vec<_> = h.tensors.iter().filter(|t| t.n_bytes > 0).map(|t| t.byte_range()).collect();
    ranges.sort_by_key(|r| r.start);
    for w in ranges.windows(2) {
        assert!(w[0].end <= w[1].start, "overlap");
    }
    for t in &h.tensors {
        assert!(t.shape.len() <= gguf::GGML_MAX_DIMS);
        assert!(t.offset >= h.data_start && (t.offset - h.data_start) % u64::from(h.alignment) == 0);
        assert!(t.offset + t.n_bytes <= len);
        assert_eq!(t.ggml_type.byte_size(t.n_elements()), Some(t.n_bytes));
        let bytes = t.data_in(data, 0).expect("tensor data is inside the file");
        if t.n_elements() > MAX_DEQUANT_ELEMENTS {
            continue;
        }
        match t.dequantize::<f32>(bytes) {
            Ok(v) => {
                assert!(t.ggml_type.can_dequantize());
                assert_eq!(v.len() as u64, t.n_elements());
                let h16: Vec<f16> = t.dequantize(bytes).expect("f16 dequantizes when f32 does");
                for (a, b) in v.iter().zip(&h16) {
                    assert_eq!(f16::from_f32(*a).to_bits(), b.to_bits());
                }
            }
            Err(e) => assert!(e.kind == ErrorKind::UnsupportedDtype && !t.ggml_type.can_dequantize(), "{e}"),
        }
    }
});
