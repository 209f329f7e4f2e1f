//! norm.wgsl: RMSNorm and LayerNorm, one workgroup per row (index.ts `rmsNorm` / `layerNorm`).
use super::{grid, run_read_f32};
use crate::{Gpu, Words};

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
    let uni = gpu.uniform("params", &Words::new().u(rows).u(hidden).f(eps).u(0).bytes());
    let step = gpu.step(&gpu.kernel("norm.wgsl", "rms_norm", &[])?, &[(0, &uni), (1, &xb), (2, &wb), (4, &yb)], grid(rows)?);
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
    let uni = gpu.uniform("params", &Words::new().u(rows).u(hidden).f(eps).u(b.is_some() as usize).bytes());
    let bind = [(0, &uni), (1, &xb), (2, &wb), (3, bb.as_ref().unwrap_or(gpu.dummy())), (4, &yb)];
    let step = gpu.step(&gpu.kernel("norm.wgsl", "layer_norm", &[])?, &bind, grid(rows)?);
    Ok(run_read_f32(gpu, &[step], &yb, x.len()))
}
