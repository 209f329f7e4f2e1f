//! matmul_int8.wgsl: LLM.int8 linear layers (CB int8 rows padded to k4 = ceil(k / 4) * 4 bytes,
//! and SCB), in the four dispatches of index.ts `int8Forward`: int8_flags and int8_compact (only
//! with a threshold > 0), int8_quant, then once per part (weights.ts `int8Parts`) int8_gemv for
//! one row (row groups of `lanes` threads, 4 rows each; SUBGROUPS when `gpu.subgroups`) or
//! int8_matmul.
//! The DOT4 variant (dot4I8Packed) is the pipeline's global define when `gpu.packed_dot`.
use super::{bias_part, check_bias, grid, rows_per_part, runs, Part};
use crate::{Gpu, Kernel, Step};

/// An LLM.int8 weight `[n, k]` uploaded for matmul_int8.wgsl.
#[derive(Debug)]
pub struct MatmulInt8 {
    pub n: usize,
    pub k: usize,
    /// f32(llm_int8_threshold); 0 = no outlier columns.
    pub threshold: f32,
    pub parts: Vec<Part>,
    /// Bytes of CB (padded rows) + SCB a forward reads.
    pub weight_bytes: usize,
}

/// A forward's output and the intermediates the shaders computed on the way.
pub struct Int8Output {
    pub y: Vec<f32>,
    /// CA `[m, k]`: the activations' int8 codes (0 in outlier columns).
    pub ca: Vec<i8>,
    /// SCA `[m]`: each row's absmax over its non-outliers (after rounding to f16).
    pub sca: Vec<f32>,
    /// The outlier columns in ascending order (None without a threshold).
    pub outlier_cols: Option<Vec<u32>>,
}

/// The forward's scratch buffers (index.ts acquires them from its pool).
pub struct Int8Scratch {
    pub flags: Option<wgpu::Buffer>,
    pub cols: Option<wgpu::Buffer>,
    pub ca: wgpu::Buffer,
    pub sca: wgpu::Buffer,
}

impl MatmulInt8 {
    pub fn new(gpu: &Gpu, cb: &[i8], scb: &[f32], n: usize, k: usize, threshold: f32, bias: Option<&[f32]>) -> Result<MatmulInt8, String> {
        if n == 0 || k == 0 {
            return Err(format!("a linear weight needs positive sizes, got [{n}, {k}]"));
        }
        if cb.len() != n * k || scb.len() != n {
            return Err(format!("CB has {} and SCB {} values for [{n}, {k}]", cb.len(), scb.len()));
        }
        if k > 0x7fff_ffff / (127 * 127) {
            return Err(format!("K = {k} could overflow the i32 accumulator"));
        }
        if !threshold.is_finite() || threshold < 0.0 {
            return Err(format!("int8Threshold must be a finite number >= 0, got {threshold}"));
        }
        check_bias(bias, n)?;
        let k4 = k.div_ceil(4) * 4;
        let mut parts = Vec::new();
        let mut weight_bytes = 0;
        for (r0, r1) in runs(n, rows_per_part(gpu, 2 * k4, 0, "int8 weight")?) {
            let mut bytes = vec![0u8; (r1 - r0) * k4];
            for r in r0..r1 {
                for (d, &s) in bytes[(r - r0) * k4..][..k].iter_mut().zip(&cb[r * k..(r + 1) * k]) {
                    *d = s as u8;
                }
            }
            weight_bytes += bytes.len() + (r1 - r0) * 4;
            parts.push(Part {
                n0: r0,
                rows: r1 - r0,
                data: gpu.storage("CB", &bytes),
                scales: Some(gpu.storage_f32("SCB", &scb[r0..r1])),
                bias: bias_part(gpu, bias, r0, r1),
                flat_base: 0,
                block_base: 0,
            });
        }
        Ok(MatmulInt8 { n, k, threshold, parts, weight_bytes })
    }

    /// The uniform for m rows and `part` (none: the activation passes before the matmul).
    fn params(&self, gpu: &Gpu, kernel: &Kernel, m: usize, part: Option<&Part>, lanes: usize) -> Result<wgpu::Buffer, String> {
        let (n0, n_part, has_bias) = part.map_or((0, 0, false), |p| (p.n0, p.rows, p.bias.is_some()));
        let p = kernel.params().u("m", m).u("k", self.k).u("n_total", self.n).u("n0", n0).u("n_part", n_part).flag("has_bias", has_bias);
        gpu.params(p.u("words", self.k.div_ceil(4)).flag("has_outliers", self.threshold > 0.0).f("threshold", self.threshold).u("lanes", lanes))
    }

    /// The dispatches of `y = LLM.int8(x) Wᵀ (+ bias)` for m rows, and their scratch buffers.
    pub fn steps(&self, gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, m: usize) -> Result<(Vec<Step>, Int8Scratch), String> {
        if m == 0 {
            return Err("linear: x has no rows".into());
        }
        if m > super::MAX_GROUPS {
            return Err(format!("int8: {m} rows exceed one dispatch"));
        }
        let k = self.k;
        let words = k.div_ceil(4);
        let mut steps = Vec::new();
        let (mut flags, mut cols) = (None, None);
        if self.threshold > 0.0 {
            let f = gpu.zeroed("flags", (k * 4) as u64);
            let c = gpu.zeroed("cols", ((k + 1) * 4) as u64);
            let flags_pipe = gpu.kernel("matmul_int8.wgsl", "int8_flags", &[])?;
            let u = self.params(gpu, &flags_pipe, m, None, 0)?;
            steps.push(gpu.step(&flags_pipe, &[("p", &u), ("x", x), ("flags", &f)], grid(k.div_ceil(256))?)?);
            steps.push(gpu.step(&gpu.kernel("matmul_int8.wgsl", "int8_compact", &[])?, &[("p", &u), ("cols", &c), ("flags_in", &f)], (1, 1, 1))?);
            flags = Some(f);
            cols = Some(c);
        }
        let ca = gpu.zeroed("CA", (m * words * 4) as u64);
        let sca = gpu.zeroed("SCA", (m * 4) as u64);
        let quant = gpu.kernel("matmul_int8.wgsl", "int8_quant", &[])?;
        let u = self.params(gpu, &quant, m, None, 0)?;
        steps.push(gpu.step(&quant, &[("p", &u), ("x", x), ("ca", &ca), ("sca", &sca), ("flags_in", flags.as_ref().unwrap_or(gpu.dummy()))], grid(m)?)?);
        // decode: int8_gemv with the threads per row group covering the row's words (index.ts)
        let gemv = m == 1;
        let mut lanes = 8;
        while gemv && lanes < 64 && lanes < words {
            lanes *= 2;
        }
        let pipe = if gemv { gpu.kernel("matmul_int8.wgsl", "int8_gemv", if gpu.subgroups { &["SUBGROUPS"] } else { &[] })? } else { gpu.kernel("matmul_int8.wgsl", "int8_matmul", &[])? };
        for part in &self.parts {
            let u = self.params(gpu, &pipe, m, Some(part), lanes)?;
            let b = [
                ("p", &u),
                ("x", x),
                ("cols_in", cols.as_ref().unwrap_or(gpu.dummy())),
                ("ca_in", &ca),
                ("sca_in", &sca),
                ("cb", &part.data),
                ("scb", part.scales.as_ref().ok_or("int8 parts have SCB")?),
                ("bias", part.bias.as_ref().unwrap_or(gpu.dummy())),
                ("y", y),
            ];
            let groups = if gemv { grid(part.rows.div_ceil(4 * 64 / lanes))? } else { (part.rows.div_ceil(64) as u32, m as u32, 1) };
            steps.push(gpu.step(&pipe, &b, groups)?);
        }
        Ok((steps, Int8Scratch { flags, cols, ca, sca }))
    }

    pub fn forward(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Int8Output, String> {
        if x.len() != m * self.k {
            return Err(format!("x has {} values but [{m}, {}] needs {}", x.len(), self.k, m * self.k));
        }
        let xb = gpu.storage_f32("x", x);
        let yb = gpu.zeroed("y", (m * self.n * 4) as u64);
        let (steps, s) = self.steps(gpu, &xb, &yb, m)?;
        gpu.submit(&steps);
        let mut y = gpu.read_f32(&yb);
        y.truncate(m * self.n);
        let words = self.k.div_ceil(4);
        let ca_bytes = gpu.read(&s.ca);
        let ca = (0..m).flat_map(|i| ca_bytes[i * words * 4..][..self.k].iter().map(|&b| b as i8)).collect();
        let mut sca = gpu.read_f32(&s.sca);
        sca.truncate(m);
        let outlier_cols = s.cols.as_ref().map(|c| {
            let v = gpu.read_u32(c);
            v[1..1 + (v[0] as usize).min(self.k)].to_vec()
        });
        Ok(Int8Output { y, ca, sca, outlier_cols })
    }
}
