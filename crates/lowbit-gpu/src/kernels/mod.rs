//! Host-side drivers for the kernels in shaders/, one file per kernel family. Each fills the
//! uniform `Params` by field name and binds the buffers by variable name (crate::layout reads
//! both from the WGSL), with the workgroup counts, exactly as the WebGPU backend
//! (ts/backends/webgpu/index.ts, weights.ts, quantize.ts) does, so that `cargo test` checks the
//! same WGSL against the Rust references in lowbit-core, and gpu-bench measures it. Bad
//! arguments are an `Err(String)` (the TS host's INVALID_ARGUMENT checks), never a panic.
pub mod attention;
pub mod elementwise;
pub mod embedding;
pub mod matmul4;
pub mod matmul_blockwise8;
pub mod matmul_dense;
pub mod matmul_int8;
pub mod norm;
pub mod quantize4;
pub mod rope;
pub mod sample;

pub use attention::KvCache;
pub use embedding::Embedding;
pub use matmul4::Matmul4;
pub use matmul_blockwise8::MatmulBlockwise8;
pub use matmul_dense::{DenseData, DenseStorage, MatmulDense};
pub use matmul_int8::{Int8Output, MatmulInt8};

use crate::{Gpu, Params, Step};

/// The TS host's MAX_GROUPS: workgroups per grid dimension.
pub const MAX_GROUPS: usize = 65_535;

/// Workgroup counts for `groups` linear workgroups (context.ts `grid`): x up to 65 535, then
/// y; the shaders use `wid.x + wid.y * nwg.x` and skip the ids past the end.
pub fn grid(groups: usize) -> Result<(u32, u32, u32), String> {
    if groups <= MAX_GROUPS {
        return Ok((groups.max(1) as u32, 1, 1));
    }
    let y = groups.div_ceil(MAX_GROUPS);
    if y > MAX_GROUPS {
        return Err(format!("{groups} workgroups exceed the dispatch limit"));
    }
    Ok((groups.div_ceil(y) as u32, y as u32, 1))
}

/// Rows [n0, n0 + rows) of a weight (weights.ts `Part`), with their own buffers.
#[derive(Debug)]
pub struct Part {
    pub n0: usize,
    pub rows: usize,
    /// f32 values, half bit patterns (two per u32), packed nibbles, int8 rows or 8-bit codes.
    pub data: wgpu::Buffer,
    /// 4-bit: absmax of blocks [block_base, ...); int8: SCB of the part's rows.
    pub scales: Option<wgpu::Buffer>,
    pub bias: Option<wgpu::Buffer>,
    /// 4-bit: flat index of the first element in `data` (a multiple of 8).
    pub flat_base: usize,
    pub block_base: usize,
}

/// Splits n rows into runs of at most `per_part` (>= 1) rows (weights.ts `runs`).
pub(crate) fn runs(n: usize, per_part: usize) -> Vec<(usize, usize)> {
    (0..n).step_by(per_part).map(|r| (r, n.min(r + per_part))).collect()
}

/// Rows of `row_bytes_x2 / 2` bytes that fit one weight binding after `slack` bytes
/// (weights.ts `rowsPerPart`; 4-bit rows are k / 2 bytes, hence the doubled size).
pub(crate) fn rows_per_part(gpu: &Gpu, row_bytes_x2: usize, slack: u64, what: &str) -> Result<usize, String> {
    let fit = (gpu.weight_binding.saturating_sub(slack) * 2 / row_bytes_x2 as u64) as usize;
    if fit < 1 {
        return Err(format!("{what}: one row of {} bytes exceeds the storage binding limit ({} bytes)", row_bytes_x2 as f64 / 2.0, gpu.weight_binding));
    }
    Ok(fit)
}

pub(crate) fn bias_part(gpu: &Gpu, bias: Option<&[f32]>, r0: usize, r1: usize) -> Option<wgpu::Buffer> {
    bias.map(|b| gpu.storage_f32("bias", &b[r0..r1]))
}

pub(crate) fn check_bias(bias: Option<&[f32]>, n: usize) -> Result<(), String> {
    match bias {
        Some(b) if b.len() != n => Err(format!("bias has {} values but the weight has {n} outputs", b.len())),
        _ => Ok(()),
    }
}

/// Per-part uniform fields and the weight bindings of the shared GEMV / GEMM (matmul_common.wgsl).
pub(crate) struct LinearFormat<'a> {
    pub file: &'static str,
    pub defines: Vec<&'static str>,
    /// The fields after `m, k, n_total, n0, n_part, has_bias` for one part.
    pub tail: &'a dyn for<'p> Fn(Params<'p>, &Part) -> Params<'p>,
    /// The binding names of a part's `data` and (when it has them) `scales`.
    pub weight: (&'static str, &'static str),
    /// The one-row entry point and the output rows each of its workgroups takes.
    pub gemv: (&'static str, usize),
}

/// `y = x Wᵀ (+ bias)` over `parts` (index.ts `matmul`): one dispatch per part, GEMV
/// (`fmt.gemv`) for one activation row, 64 x 64 GEMM tiles otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_steps(gpu: &Gpu, fmt: &LinearFormat, parts: &[Part], n: usize, k: usize, m: usize, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<Vec<Step>, String> {
    if m == 0 {
        return Err("linear: x has no rows".into());
    }
    let entry = if m == 1 { fmt.gemv.0 } else { "gemm" };
    let pipe = gpu.kernel(fmt.file, entry, &fmt.defines)?;
    let mut steps = Vec::new();
    for part in parts {
        let head = pipe.params().u("m", m).u("k", k).u("n_total", n).u("n0", part.n0).u("n_part", part.rows).flag("has_bias", part.bias.is_some());
        let uni = gpu.params((fmt.tail)(head, part))?;
        let mut b: Vec<(&str, &wgpu::Buffer)> = vec![("p", &uni), ("x", x), (fmt.weight.0, &part.data), ("bias", part.bias.as_ref().unwrap_or(gpu.dummy())), ("y", y)];
        if let Some(s) = &part.scales {
            b.push((fmt.weight.1, s));
        }
        let groups = if m == 1 {
            grid(part.rows.div_ceil(fmt.gemv.1))?
        } else {
            let gy = m.div_ceil(64);
            if gy > MAX_GROUPS {
                return Err(format!("linear: {m} rows are too many for one dispatch"));
            }
            (part.rows.div_ceil(64) as u32, gy as u32, 1)
        };
        steps.push(gpu.step(&pipe, &b, groups)?);
    }
    Ok(steps)
}

/// A linear layer's forward from host data: x `[m, k]` uploaded, the driver's `steps` run into a
/// fresh y `[m, n]`, y read back (the tests' and gpu-bench's path; the TS host keeps activations on
/// the device).
pub(crate) fn forward_from_host(gpu: &Gpu, x: &[f32], m: usize, k: usize, n: usize, steps: impl FnOnce(&wgpu::Buffer, &wgpu::Buffer) -> Result<Vec<Step>, String>) -> Result<Vec<f32>, String> {
    if x.len() != m * k {
        return Err(format!("x has {} values but [{m}, {k}] needs {}", x.len(), m * k));
    }
    let xb = gpu.storage_f32("x", x);
    let yb = gpu.zeroed("y", (m * n * 4) as u64);
    Ok(run_read_f32(gpu, &steps(&xb, &yb)?, &yb, m * n))
}

/// Submits `steps` and reads `y` back as `len` f32 values.
pub(crate) fn run_read_f32(gpu: &Gpu, steps: &[Step], y: &wgpu::Buffer, len: usize) -> Vec<f32> {
    gpu.submit(steps);
    let mut v = gpu.read_f32(y);
    v.truncate(len);
    v
}
