//! bitsandbytes 4-bit quant state: arbitrary bytes become the packed JSON and the tensors of a
//! `QuantState.as_dict(packed=True)` dict, fed to `QuantState::from_dict`. A state it accepts
//! must dequantize (`dequantize_4bit_vec::<f32>` with a packed buffer of the right size) and
//! survive `to_dict` -> `from_dict`.
//!
//! Input: mode byte `m`. `m & 2`: raw JSON, `data[1..3]` its length (LE u16), then the JSON bytes;
//! otherwise the JSON is built from fields drawn from the input (mostly valid values, so the
//! consistency checks are reached). The rest of the input (through `arbitrary::Unstructured`)
//! picks which tensors exist, their dtypes, element counts (mostly the consistent ones) and
//! bytes. `m & 1`: double quantization. Sizes stay small (at most 2^14 elements dequantized).
//! With FUZZ_DEBUG set, each input prints whether it was accepted or why it was refused.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use lowbit_core::blockwise4::dequantize_4bit_vec;
use lowbit_core::quant_state::DictTensor;
use lowbit_core::{DType, Kernel, QuantState};

const TYPES: [&str; 5] = ["nf4", "fp4", "int4", "NF4", ""];
const DTYPES: [&str; 9] = ["float32", "float16", "bfloat16", "uint8", "int8", "int32", "float", "half", "float64"];
const BLOCKSIZES: [u64; 10] = [64, 32, 128, 256, 512, 1024, 2048, 4096, 0, 100];
const TENSOR_DTYPES: [DType; 6] = [DType::F32, DType::U8, DType::F16, DType::BF16, DType::I8, DType::I32];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let nested = m & 1 != 0;
    let (raw_json, rest) = if m & 2 != 0 {
        let Some((len, rest)) = rest.split_first_chunk::<2>() else { return };
        let len = (u16::from_le_bytes(*len) as usize).min(rest.len());
        (Some(&rest[..len]), &rest[len..])
    } else {
        (None, rest)
    };
    let mut u = Unstructured::new(rest);
    let Ok(dict) = build(&mut u, nested, raw_json) else { return };
    let st = match QuantState::from_dict(&dict) {
        Ok(st) => st,
        Err(e) => {
            if std::env::var_os("FUZZ_DEBUG").is_some() {
                eprintln!("refused: {e}");
            }
            return;
        }
    };
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("accepted: {st:?}");
    }
    let n = st.validate().expect("from_dict returned a state that does not validate");
    if n > 1 << 14 {
        return;
    }
    let packed: Vec<u8> = (0..n.div_ceil(2)).map(|i| (i as u8).wrapping_mul(0x9d) ^ m).collect();
    let out = dequantize_4bit_vec::<f32>(&packed, &st, Kernel::best()).expect("a validated state must dequantize");
    assert_eq!(out.len(), n);
    assert!(dequantize_4bit_vec::<f32>(&packed[1..], &st, Kernel::best()).is_err());
    let d2 = st.to_dict();
    let back = QuantState::from_dict(&d2).expect("to_dict output must load");
    assert_eq!(back.to_dict(), d2);
});

/// True about once in `den` draws; false once the input is used up (so the defaults are the
/// consistent values).
fn rare(u: &mut Unstructured, den: u8) -> Result<bool> {
    Ok(!u.ratio(den - 1, den)?)
}

fn build(u: &mut Unstructured, nested: bool, raw_json: Option<&[u8]>) -> Result<Vec<(String, DictTensor)>> {
    // The JSON, and the sizes it implies.
    let json_type = *u.choose(&TYPES)?;
    let blocksize = if rare(u, 16)? { u.arbitrary::<u16>()? as u64 } else { *u.choose(&BLOCKSIZES)? };
    let rank = u.int_in_range(1..=3)?;
    let mut shape = Vec::with_capacity(rank);
    for _ in 0..rank {
        shape.push(if rare(u, 32)? { u.arbitrary::<u64>()? } else { u.int_in_range(1..=64)? });
    }
    let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).unwrap_or(u64::MAX);
    let nb = if blocksize == 0 { 1 } else { numel.div_ceil(blocksize) }.min(1 << 12) as usize;
    let json: Vec<u8> = match raw_json {
        Some(j) => j.to_vec(),
        None => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let mut s = format!(
                "{{\"quant_type\": \"{json_type}\", \"blocksize\": {blocksize}, \"dtype\": \"{}\", \"shape\": [{}]",
                u.choose(&DTYPES)?,
                dims.join(", ")
            );
            if nested {
                let nbs = if rare(u, 16)? { u.arbitrary::<u16>()? as u64 } else { 256 };
                let offset = if rare(u, 8)? { f32::from_bits(u.arbitrary()?) } else { u.int_in_range(0..=1000)? as f32 / 7.0 };
                s += &format!(", \"nested_blocksize\": {nbs}, \"nested_dtype\": \"{}\", \"nested_offset\": {offset:?}", u.choose(&DTYPES)?);
            }
            s.push('}');
            s.into_bytes()
        }
    };
    let key_type = if rare(u, 8)? { *u.choose(&TYPES)? } else { json_type };
    let prefix = if u.arbitrary()? { "model.layers.0.mlp.up_proj.weight." } else { "" };
    let mut dict = Vec::new();
    let nested_tensors = nested ^ rare(u, 16)?;
    let specs: &[(&str, DType, usize)] = if nested_tensors {
        &[("absmax", DType::U8, nb), ("quant_map", DType::F32, 16), ("nested_absmax", DType::F32, nb.div_ceil(256)), ("nested_quant_map", DType::F32, 256)]
    } else {
        &[("absmax", DType::F32, nb), ("quant_map", DType::F32, 16)]
    };
    for &(name, dtype, count) in specs {
        if rare(u, 32)? {
            continue; // missing
        }
        let dtype = if rare(u, 16)? { *u.choose(&TENSOR_DTYPES)? } else { dtype };
        let count = if rare(u, 16)? { u.int_in_range(0..=1024)? } else { count };
        let nbytes = count * dtype.size();
        let mut data = vec![0u8; nbytes];
        let avail = u.len().min(nbytes);
        data[..avail].copy_from_slice(u.bytes(avail)?);
        if name.ends_with("absmax") && dtype == DType::F32 && u.arbitrary::<bool>()? {
            // Mostly finite positive scales.
            for (i, c) in data.chunks_exact_mut(4).enumerate() {
                c.copy_from_slice(&(1.0 + (i % 7) as f32 / 3.0).to_le_bytes());
            }
        }
        let shape = if rare(u, 16)? { vec![count, 1] } else { vec![count] };
        let shape = if rare(u, 32)? { vec![count + 1] } else { shape }; // bytes disagree with shape
        dict.push((format!("{prefix}{name}"), DictTensor { dtype, shape, data }));
    }
    let jdtype = if rare(u, 32)? { DType::I8 } else { DType::U8 };
    dict.push((format!("{prefix}quant_state.bitsandbytes__{key_type}"), DictTensor { dtype: jdtype, shape: vec![json.len()], data: json }));
    if rare(u, 32)? {
        let i = u.choose_index(dict.len())?;
        dict.swap(0, i);
    }
    Ok(dict)
}
