//! quantize4.wgsl: block-wise 4-bit quantization on the GPU (quantize.ts `quantize4bitGpu`):
//! chunks of whole blocks that fit one weight binding, one workgroup per block; the encode
//! tables (sorted order, f32 midpoints as order-preserving keys, the code of 0.0) come from
//! lowbit-core's codebook, as quantize.ts `encodeTables` rebuilds them.
use super::grid;
use crate::Gpu;
use lowbit_core::codebook::Codebook4;
use lowbit_core::{QuantType4, BLOCKSIZES_4BIT};

/// f32 -> u32 ordered like the values (-0 just below +0), as key() in quantize4.wgsl.
fn key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Packed codes (element 2j in the high nibble of byte j) and f32 absmax per block of the
/// flattened `x`; no double quantization.
pub fn quantize4(gpu: &Gpu, x: &[f32], quant_type: QuantType4, blocksize: usize) -> Result<(Vec<u8>, Vec<f32>), String> {
    if !BLOCKSIZES_4BIT.contains(&blocksize) {
        return Err(format!("blocksize must be one of {BLOCKSIZES_4BIT:?}, got {blocksize}"));
    }
    let n = x.len();
    if n == 0 {
        return Err("cannot quantize an empty tensor".into());
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(format!("input element {i} is {} (NaN/Inf cannot be quantized)", x[i]));
    }
    let cb = Codebook4::get(quant_type);
    // after n, blocksize, nblocks, pad_code: 15 midpoint keys (+ an unused 16th), the order
    let mut mid_key: Vec<u32> = cb.midpoints.iter().map(|&m| key(m)).collect();
    mid_key.push(0xffff_ffff);
    let order: Vec<u32> = cb.order.iter().map(|&o| o as u32).collect();
    let pipe = gpu.kernel("quantize4.wgsl", "quantize4", &[])?;
    let mut packed = vec![0u8; n.div_ceil(2)];
    let mut absmax = vec![0f32; n.div_ceil(blocksize)];
    // chunks of whole blocks that fit a storage binding
    let per_chunk = ((gpu.weight_binding / 4) as usize / blocksize).max(1) * blocksize;
    for c0 in (0..n).step_by(per_chunk) {
        let cn = per_chunk.min(n - c0);
        let nb = cn.div_ceil(blocksize);
        let words = cn.div_ceil(8);
        let uni = gpu.params(pipe.params().u("n", cn).u("blocksize", blocksize).u("nblocks", nb).u("pad_code", cb.encode(0.0) as usize).us("mid_key", &mid_key).us("order", &order))?;
        let xb = gpu.storage_f32("x", &x[c0..c0 + cn]);
        let (out, am) = (gpu.zeroed("packed", (words * 4) as u64), gpu.zeroed("absmax", (nb * 4) as u64));
        gpu.submit(&[gpu.step(&pipe, &[("p", &uni), ("x", &xb), ("packed", &out), ("absmax", &am)], grid(nb)?)?]);
        let p = gpu.read(&out);
        packed[c0 / 2..c0 / 2 + cn.div_ceil(2)].copy_from_slice(&p[..cn.div_ceil(2)]);
        let a = gpu.read_f32(&am);
        absmax[c0 / blocksize..c0 / blocksize + nb].copy_from_slice(&a[..nb]);
    }
    Ok((packed, absmax))
}
