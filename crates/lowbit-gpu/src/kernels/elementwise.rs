//! elementwise.wgsl: add, SiLU, SwiGLU, GELU (erf) and GELU (tanh), one invocation per
//! element (index.ts `unaryOrBinary`).
use super::{grid, run_read_f32};
use crate::Gpu;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// a + b
    Add,
    /// silu(a) * b
    Swiglu,
    Silu,
    Gelu,
    GeluTanh,
}

impl Op {
    pub fn entry(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Swiglu => "swiglu",
            Op::Silu => "silu_op",
            Op::Gelu => "gelu",
            Op::GeluTanh => "gelu_tanh",
        }
    }
    pub fn binary(self) -> bool {
        matches!(self, Op::Add | Op::Swiglu)
    }
}

/// `op` over a (and b for the binary ops), same lengths.
pub fn elementwise(gpu: &Gpu, op: Op, a: &[f32], b: Option<&[f32]>) -> Result<Vec<f32>, String> {
    match (op.binary(), b) {
        (true, Some(b)) if b.len() != a.len() => return Err(format!("{}: {} and {} values", op.entry(), a.len(), b.len())),
        (true, None) => return Err(format!("{} takes two inputs", op.entry())),
        (false, Some(_)) => return Err(format!("{} takes one input", op.entry())),
        _ => {}
    }
    let count = a.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let (ab, yb) = (gpu.storage_f32("a", a), gpu.zeroed("y", (count * 4) as u64));
    let bb = b.map(|b| gpu.storage_f32("b", b));
    let pipe = gpu.kernel("elementwise.wgsl", op.entry(), &[])?;
    let uni = gpu.params(pipe.params().u("count", count).f("value", 0.0))?;
    let mut bind = vec![("p", &uni), ("a", &ab), ("y", &yb)];
    if let Some(bb) = &bb {
        bind.push(("b", bb));
    }
    let step = gpu.step(&pipe, &bind, grid(count.div_ceil(256))?)?;
    Ok(run_read_f32(gpu, &[step], &yb, count))
}
