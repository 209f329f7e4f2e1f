//! embedding.wgsl: token embedding gather from an f32 / f16 / bf16 table `[vocab, dim]` split
//! by rows (index.ts `embed`: one dispatch per part some id falls into), and the tied output
//! projection through the same table (index.ts `project`, matmul_dense.wgsl).
use super::matmul_dense::{dense_parts, dense_steps};
use super::{grid, run_read_f32, DenseData, DenseStorage, Part};
use crate::Gpu;

#[derive(Debug)]
pub struct Embedding {
    pub vocab: usize,
    pub dim: usize,
    pub storage: DenseStorage,
    pub parts: Vec<Part>,
}

impl Embedding {
    pub fn new(gpu: &Gpu, table: DenseData, vocab: usize, dim: usize) -> Result<Embedding, String> {
        let (parts, _) = dense_parts(gpu, &table, vocab, dim, None)?;
        Ok(Embedding { vocab, dim, storage: table.storage(), parts })
    }

    /// `y[t, :] = table[ids[t], :]` widened to f32.
    pub fn gather(&self, gpu: &Gpu, ids: &[u32]) -> Result<Vec<f32>, String> {
        if ids.is_empty() {
            return Err("embed: no token ids".into());
        }
        if let Some(t) = ids.iter().position(|&id| id as usize >= self.vocab) {
            return Err(format!("token id {} at position {t} is outside the vocabulary of {}", ids[t], self.vocab));
        }
        let len = ids.len() * self.dim;
        let out = gpu.zeroed("embed output", (len * 4) as u64);
        let idb = gpu.storage_u32("ids", ids);
        let pipe = gpu.kernel("embedding.wgsl", "gather", &[self.storage.define()])?;
        let groups = grid(len.div_ceil(256))?;
        let mut steps = Vec::new();
        for part in &self.parts {
            // only the parts some id falls into
            if !ids.iter().any(|&id| (part.n0..part.n0 + part.rows).contains(&(id as usize))) {
                continue;
            }
            let uni = gpu.params(pipe.params().u("n", ids.len()).u("dim", self.dim).u("row0", part.n0).u("rows", part.rows))?;
            steps.push(gpu.step(&pipe, &[("p", &uni), ("ids", &idb), ("table", &part.data), ("y", &out)], groups)?);
        }
        Ok(run_read_f32(gpu, &steps, &out, len))
    }

    /// Logits `x [m, dim] · tableᵀ` → `[m, vocab]`.
    pub fn project(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, String> {
        if x.len() != m * self.dim {
            return Err(format!("project: x has {} values but [{m}, {}] needs {}", x.len(), self.dim, m * self.dim));
        }
        let xb = gpu.storage_f32("x", x);
        let yb = gpu.zeroed("logits", (m * self.vocab * 4) as u64);
        let steps = dense_steps(gpu, self.storage, &self.parts, self.vocab, self.dim, m, &xb, &yb)?;
        Ok(run_read_f32(gpu, &steps, &yb, m * self.vocab))
    }
}
