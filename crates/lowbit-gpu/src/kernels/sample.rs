//! sample.wgsl: on-device token selection (index.ts `argmax` / `topK`).
use super::grid;
use crate::Gpu;

/// index.ts MAX_TOP_K: top-k takes k passes over the row in one workgroup.
pub const MAX_TOP_K: usize = 1024;

/// The index of the largest value of each row of x `[rows, cols]` (first on ties, NaN never wins).
pub fn argmax(gpu: &Gpu, x: &[f32], rows: usize, cols: usize) -> Result<Vec<u32>, String> {
    if rows == 0 || cols == 0 || x.len() != rows * cols {
        return Err(format!("argmax: x has {} values for [{rows}, {cols}]", x.len()));
    }
    let (xb, out) = (gpu.storage_f32("x", x), gpu.zeroed("ids", (rows * 4) as u64));
    let pipe = gpu.kernel("sample.wgsl", "argmax", &[])?;
    let uni = gpu.params(pipe.params().u("rows", rows).u("cols", cols))?;
    gpu.submit(&[gpu.step(&pipe, &[("p", &uni), ("x", &xb), ("out", &out)], grid(rows)?)?]);
    let mut v = gpu.read_u32(&out);
    v.truncate(rows);
    Ok(v)
}

/// The k largest values of one row (stable descending order): (indices, values).
pub fn top_k(gpu: &Gpu, x: &[f32], k: usize) -> Result<(Vec<u32>, Vec<f32>), String> {
    if x.is_empty() {
        return Err("topK: x must be one non-empty row".into());
    }
    if k < 1 || k > x.len().min(MAX_TOP_K) {
        return Err(format!("topK: k must be an integer in [1, {}], got {k}", x.len().min(MAX_TOP_K)));
    }
    let (xb, out) = (gpu.storage_f32("x", x), gpu.zeroed("top-k", (2 * k * 4) as u64));
    let pipe = gpu.kernel("sample.wgsl", "topk", &[])?;
    let uni = gpu.params(pipe.params().u("rows", k).u("cols", x.len()))?;
    gpu.submit(&[gpu.step(&pipe, &[("p", &uni), ("x", &xb), ("out", &out)], (1, 1, 1))?]);
    let r = gpu.read_u32(&out);
    Ok((r[..k].to_vec(), r[k..2 * k].iter().map(|&b| f32::from_bits(b)).collect()))
}
