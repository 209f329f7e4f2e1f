//! matmul_dense.wgsl: unquantized linear layers (and the tied output projection through an
//! embedding table) with f32, f16 or bf16 weights, selected by the WEIGHT_F32 / WEIGHT_F16 /
//! WEIGHT_BF16 define; split by rows as weights.ts `denseParts` does.
use super::{bias_part, check_bias, linear_steps, rows_per_part, forward_from_host, runs, LinearFormat, Part};
use crate::{Gpu, Params, Step};
use lowbit_core::{bf16, f16};

/// Weight values as the host holds them: f32, or f16 / bf16 (uploaded as bit patterns).
#[derive(Clone, Copy)]
pub enum DenseData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseStorage {
    F32,
    F16,
    Bf16,
}

impl DenseStorage {
    /// The WGSL define that selects the storage (weights.ts `storageDefine`).
    pub fn define(self) -> &'static str {
        match self {
            DenseStorage::F32 => "WEIGHT_F32",
            DenseStorage::F16 => "WEIGHT_F16",
            DenseStorage::Bf16 => "WEIGHT_BF16",
        }
    }
    pub fn size(self) -> usize {
        if self == DenseStorage::F32 {
            4
        } else {
            2
        }
    }
}

impl DenseData<'_> {
    pub fn storage(&self) -> DenseStorage {
        match self {
            DenseData::F32(_) => DenseStorage::F32,
            DenseData::F16(_) => DenseStorage::F16,
            DenseData::Bf16(_) => DenseStorage::Bf16,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            DenseData::F32(v) => v.len(),
            DenseData::F16(v) => v.len(),
            DenseData::Bf16(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Little-endian bytes of elements [a, b) (halves two per u32 word, element 2i low).
    fn bytes(&self, a: usize, b: usize) -> Vec<u8> {
        match self {
            DenseData::F32(v) => v[a..b].iter().flat_map(|x| x.to_le_bytes()).collect(),
            DenseData::F16(v) => v[a..b].iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            DenseData::Bf16(v) => v[a..b].iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        }
    }
}

/// `[n, k]` rows split into parts that fit the weight binding (weights.ts `denseParts`); each
/// part holds its rows from element 0. Returns the parts and their bytes.
pub(crate) fn dense_parts(gpu: &Gpu, w: &DenseData, n: usize, k: usize, bias: Option<&[f32]>) -> Result<(Vec<Part>, usize), String> {
    if n == 0 || k == 0 {
        return Err(format!("a dense weight needs positive sizes, got [{n}, {k}]"));
    }
    if w.len() != n * k {
        return Err(format!("dense weight has {} values but [{n}, {k}] needs {}", w.len(), n * k));
    }
    check_bias(bias, n)?;
    let size = w.storage().size();
    let mut parts = Vec::new();
    let mut total = 0;
    for (r0, r1) in runs(n, rows_per_part(gpu, 2 * k * size, 4, "dense weight")?) {
        let bytes = w.bytes(r0 * k, r1 * k);
        total += bytes.len().next_multiple_of(4) + bias.map_or(0, |_| (r1 - r0) * 4);
        parts.push(Part { n0: r0, rows: r1 - r0, data: gpu.storage("dense", &bytes), scales: None, bias: bias_part(gpu, bias, r0, r1), flat_base: 0, block_base: 0 });
    }
    Ok((parts, total))
}

/// `y = x Wᵀ (+ bias)` through matmul_dense.wgsl over `parts` of a `[n, k]` dense weight.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_steps(gpu: &Gpu, storage: DenseStorage, parts: &[Part], n: usize, k: usize, m: usize, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<Vec<Step>, String> {
    // decode with k a multiple of 4: gemv_rows (gemv4's layout: row groups of `lanes` threads
    // covering k / 4 steps, 4 rows each; SUBGROUPS when `gpu.subgroups`), else the generic GEMV
    let rows = m == 1 && k.is_multiple_of(4);
    let mut lanes = 8;
    while rows && lanes < 64 && lanes * 4 < k {
        lanes *= 2;
    }
    let mut defines = vec![storage.define()];
    if rows && gpu.subgroups {
        defines.push("SUBGROUPS");
    }
    let tail: &dyn for<'p> Fn(Params<'p>, &Part) -> Params<'p> = &|p, _| p.u("lanes", lanes);
    let gemv = if rows { ("gemv_rows", 4 * 64 / lanes) } else { ("gemv", 8) };
    linear_steps(gpu, &LinearFormat { file: "matmul_dense.wgsl", defines, tail, weight: ("wt", ""), gemv }, parts, n, k, m, x, y)
}

/// An unquantized weight `[n, k]` uploaded for matmul_dense.wgsl.
#[derive(Debug)]
pub struct MatmulDense {
    pub n: usize,
    pub k: usize,
    pub storage: DenseStorage,
    pub parts: Vec<Part>,
    /// Bytes of weights (and bias) a forward reads.
    pub weight_bytes: usize,
}

impl MatmulDense {
    pub fn new(gpu: &Gpu, w: DenseData, n: usize, k: usize, bias: Option<&[f32]>) -> Result<MatmulDense, String> {
        let (parts, weight_bytes) = dense_parts(gpu, &w, n, k, bias)?;
        Ok(MatmulDense { n, k, storage: w.storage(), parts, weight_bytes })
    }

    pub fn steps(&self, gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, m: usize) -> Result<Vec<Step>, String> {
        dense_steps(gpu, self.storage, &self.parts, self.n, self.k, m, x, y)
    }

    pub fn forward(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, String> {
        forward_from_host(gpu, x, m, self.k, self.n, |xb, yb| self.steps(gpu, xb, yb, m))
    }
}
