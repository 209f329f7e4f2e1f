//! safetensors header: `header_len` + `parse_header` on arbitrary bytes, and, on success, the
//! index's invariants and a write/parse round trip.
//!
//! Input: one mode byte, then the file's first bytes. Mode bit 7 clear: the file is exactly those
//! bytes. Set: the file is that long plus 2^(mode & 63) bytes not given (a large file read by
//! ranges), so offsets far beyond the input are exercised too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lowbit_core::formats::safetensors as st;
use lowbit_core::ErrorKind;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else { return };
    let file_len = if mode & 0x80 == 0 { file.len() as u64 } else { file.len() as u64 + (1u64 << (mode & 63)) };
    let n = match st::header_len(&file[..file.len().min(8)], file_len) {
        Ok(n) => n,
        Err(e) => {
            assert!(matches!(e.kind, ErrorKind::MalformedFile | ErrorKind::NeedMoreData), "{e}");
            return;
        }
    };
    assert!(8 + n <= file_len && n <= st::MAX_HEADER_LEN);
    let Some(header) = file.get(8..8 + n as usize) else { return };
    let whole = if mode & 0x80 == 0 { Some(st::parse(file)) } else { None };
    let h = match st::parse_header(header, file_len) {
        Ok(h) => h,
        Err(e) => {
            assert!(matches!(e.kind, ErrorKind::MalformedFile | ErrorKind::UnsupportedDtype), "{e}");
            if let Some(w) = whole {
                assert_eq!(w.unwrap_err(), e);
            }
            return;
        }
    };
    if let Some(w) = whole {
        assert_eq!(w.as_ref(), Ok(&h));
    }
    // The index tiles the data section in order, each tensor exactly its dtype x shape.
    assert_eq!(h.data_start, 8 + n);
    let mut pos = h.data_start;
    for t in &h.tensors {
        assert_eq!(t.start, pos);
        assert!(!t.name.is_empty());
        assert_eq!(t.dtype.nbytes(&t.shape), Some(t.end - t.start));
        pos = t.end;
    }
    assert_eq!(pos, file_len);
    // Write it back (in offset order) and parse again: the same index.
    let specs: Vec<_> = h.tensors.iter().map(|t| (t.name.as_str(), t.dtype, t.shape.as_slice(), t.nbytes())).collect();
    let out = st::write_header(&specs, &h.metadata).expect("a parsed index must be writable");
    let data_len = file_len - h.data_start;
    let again = st::parse_header(&out[8..], out.len() as u64 + data_len).expect("written header must parse");
    assert_eq!(again.metadata, h.metadata);
    assert_eq!(again.tensors.len(), h.tensors.len());
    for (a, b) in again.tensors.iter().zip(&h.tensors) {
        assert_eq!((&a.name, a.dtype, &a.shape, a.start - again.data_start, a.end - again.data_start), (&b.name, b.dtype, &b.shape, b.start - h.data_start, b.end - h.data_start));
    }
});
