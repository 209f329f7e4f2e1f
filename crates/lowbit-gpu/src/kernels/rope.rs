//! rope.wgsl: rotary embeddings with the cos / sin table built on the host (index.ts
//! `ropeTable` / `rope`): for positions [0, capacity), capacity = max(needed, 256),
//! cs[(p * half + i) * 2 ..] = cos, sin of f32(f32(p) * inv_freq[i]) evaluated in f64 and
//! rounded to f32 (JS Math.cos / Math.sin into a Float32Array).
use super::{grid, run_read_f32};
use crate::Gpu;

/// The host's cos / sin table for `capacity` positions.
pub fn rope_table(inv_freq: &[f32], capacity: usize) -> Vec<f32> {
    let half = inv_freq.len();
    let mut cs = vec![0f32; capacity * half * 2];
    for p in 0..capacity {
        for (i, &f) in inv_freq.iter().enumerate() {
            let angle = (p as f32 * f) as f64;
            cs[(p * half + i) * 2] = angle.cos() as f32;
            cs[(p * half + i) * 2 + 1] = angle.sin() as f32;
        }
    }
    cs
}

/// RoPE of x `[rows, n_heads * head_dim]`, row r at `positions[r]`, head_dim = 2 * inv_freq.len().
pub fn rope(gpu: &Gpu, x: &[f32], rows: usize, n_heads: usize, positions: &[u32], inv_freq: &[f32]) -> Result<Vec<f32>, String> {
    let half = inv_freq.len();
    if n_heads == 0 || half == 0 {
        return Err(format!("rope: {n_heads} heads of {} values", 2 * half));
    }
    if x.len() != rows * n_heads * 2 * half {
        return Err(format!("rope: x has {} values but [{rows}, {n_heads} x {}] needs {}", x.len(), 2 * half, rows * n_heads * 2 * half));
    }
    if positions.len() != rows {
        return Err(format!("rope: {} positions for {rows} rows", positions.len()));
    }
    if rows == 0 {
        return Ok(Vec::new());
    }
    let needed = *positions.iter().max().unwrap() as usize + 1;
    let table = rope_table(inv_freq, needed.max(256));
    if (table.len() * 4) as u64 > gpu.device.limits().max_storage_buffer_binding_size {
        return Err(format!("rope: a table for {needed} positions exceeds the storage binding limit"));
    }
    let (xb, pb, tb, yb) = (gpu.storage_f32("x", x), gpu.storage_u32("positions", positions), gpu.storage_f32("rope cos/sin", &table), gpu.zeroed("y", (x.len() * 4) as u64));
    let pipe = gpu.kernel("rope.wgsl", "rope", &[])?;
    let uni = gpu.params(pipe.params().u("rows", rows).u("n_heads", n_heads).u("half", half).u("head_dim", 2 * half))?;
    let groups = grid((rows * n_heads * half).div_ceil(256))?;
    let step = gpu.step(&pipe, &[("p", &uni), ("x", &xb), ("positions", &pb), ("cs", &tb), ("y", &yb)], groups)?;
    Ok(run_read_f32(gpu, &[step], &yb, x.len()))
}
