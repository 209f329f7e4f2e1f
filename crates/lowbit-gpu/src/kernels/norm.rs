//! norm.wgsl: RMSNorm and LayerNorm, one workgroup per row (index.ts `rmsNorm` / `layerNorm`).
use super::{grid, run_read_f32};
use crate::Gpu;

fn check(x: &[f32], rows: usize, hidden: usize, w: &[f32], what: &str) -> Result<(), String> {
    if rows == 0 || hidden == 0 {
        return Err(format!("{what}: x is [{rows}, {hidden}]"));
    }
    if x.len() != rows * hidden {
        return Err(format!("{what}: x has {} values but [{rows}, {hidden}] needs {}", x.len(), rows * hidden));
    }
    if w.len() != hidden {
        return Err(format!("{what}: weight has {} values but x has {hidden} columns", w.len()));
    }
    Ok(())
}

/// `y = w * (x * (1 / sqrt(mean(x²) + eps)))` per row of x `[rows, hidden]`.
pub fn rms_norm(gpu: &Gpu, x: &[f32], rows: usize, hidden: usize, w: &[f32], eps: f32) -> Result<Vec<f32>, String> {
    check(x, rows, hidden, w, "rmsNorm")?;
    let (xb, wb, yb) = (gpu.storage_f32("x", x), gpu.storage_f32("w", w), gpu.zeroed("y", (x.len() * 4) as u64));
    let pipe = gpu.kernel("norm.wgsl", "rms_norm", &[])?;
    let uni = gpu.params(pipe.params().u("rows", rows).u("hidden", hidden).f("eps", eps).flag("has_bias", false))?;
    let step = gpu.step(&pipe, &[("p", &uni), ("x", &xb), ("w", &wb), ("y", &yb)], grid(rows)?)?;
    Ok(run_read_f32(gpu, &[step], &yb, x.len()))
}

/// `y = (x - mean) * (1 / sqrt(var + eps)) * w (+ b)` per row of x `[rows, hidden]`.
pub fn layer_norm(gpu: &Gpu, x: &[f32], rows: usize, hidden: usize, w: &[f32], b: Option<&[f32]>, eps: f32) -> Result<Vec<f32>, String> {
    check(x, rows, hidden, w, "layerNorm")?;
    if let Some(b) = b.filter(|b| b.len() != hidden) {
        return Err(format!("layerNorm: bias has {} values but x has {hidden} columns", b.len()));
    }
    let (xb, wb, yb) = (gpu.storage_f32("x", x), gpu.storage_f32("w", w), gpu.zeroed("y", (x.len() * 4) as u64));
    let bb = b.map(|b| gpu.storage_f32("b", b));
    let pipe = gpu.kernel("norm.wgsl", "layer_norm", &[])?;
    let uni = gpu.params(pipe.params().u("rows", rows).u("hidden", hidden).f("eps", eps).flag("has_bias", b.is_some()))?;
    let bind = [("p", &uni), ("x", &xb), ("w", &wb), ("b", bb.as_ref().unwrap_or(gpu.dummy())), ("y", &yb)];
    let step = gpu.step(&pipe, &bind, grid(rows)?)?;
    Ok(run_read_f32(gpu, &[step], &yb, x.len()))
}
