//! Host-side drivers for the kernels in shaders/, binding exactly what the WebGPU backend
//! (ts/backends/webgpu) binds, so that `cargo test` checks the same WGSL against the Rust
//! references in lowbit-core, and gpu-bench measures it.
use crate::bench::{emit, time_encoded};
use crate::{load, Gpu};
use lowbit_core::codebook::Codebook4;
use lowbit_core::QuantType4;

/// A 4-bit weight `[n, k]` (bitsandbytes layout, f32 absmax) uploaded for matmul4.wgsl.
pub struct Matmul4 {
    pub n: usize,
    pub k: usize,
    pub blocksize: usize,
    pub quant_type: QuantType4,
    packed: wgpu::Buffer,
    absmax: wgpu::Buffer,
    bias: Option<wgpu::Buffer>,
    /// Bytes of packed weights + absmax (what a GEMV must read).
    pub weight_bytes: usize,
}

/// matmul4.wgsl's `Params` (12 u32 then the 16 code values as 4 vec4).
fn params4(m: usize, w: &Matmul4) -> Vec<u8> {
    let mut b = Vec::with_capacity(112);
    // m, k, n_total, n0, n_part, has_bias, flat_base, block_base, block_shift (log2 blocksize), pad
    for v in [m, w.k, w.n, 0, w.n, w.bias.is_some() as usize, 0, 0, w.blocksize.trailing_zeros() as usize, 0, 0, 0] {
        b.extend_from_slice(&(v as u32).to_le_bytes());
    }
    for c in Codebook4::get(w.quant_type).values {
        b.extend_from_slice(&c.to_le_bytes());
    }
    b
}

/// Workgroup counts for `groups` linear workgroups: x up to 65 535, the rest in y (the shaders
/// use `wid.x + wid.y * nwg.x`).
pub fn grid(groups: usize) -> (u32, u32, u32) {
    if groups <= 65_535 {
        (groups.max(1) as u32, 1, 1)
    } else {
        (65_535, groups.div_ceil(65_535) as u32, 1)
    }
}

impl Matmul4 {
    pub fn new(gpu: &Gpu, packed: &[u8], absmax: &[f32], quant_type: QuantType4, blocksize: usize, n: usize, k: usize, bias: Option<&[f32]>) -> Matmul4 {
        Matmul4 {
            n,
            k,
            blocksize,
            quant_type,
            packed: gpu.storage("packed", packed),
            absmax: gpu.storage_f32("absmax", absmax),
            bias: bias.map(|b| gpu.storage_f32("bias", b)),
            weight_bytes: packed.len() + absmax.len() * 4,
        }
    }

    /// The pipeline and bind-group inputs of `y = x Wᵀ (+ b)` for m rows: GEMV when m == 1.
    fn prepare(&self, gpu: &Gpu, x: &wgpu::Buffer, y: &wgpu::Buffer, m: usize) -> Result<(wgpu::ComputePipeline, wgpu::BindGroup, (u32, u32, u32)), String> {
        let src = load("matmul4.wgsl", &[])?;
        let entry = if m == 1 { "gemv" } else { "gemm" };
        let pipe = gpu.pipeline("matmul4", &src, entry);
        let params = gpu.uniform("params", &params4(m, self));
        let dummy;
        let bias = match &self.bias {
            Some(b) => b,
            None => {
                dummy = gpu.zeroed("no-bias", 4);
                &dummy
            }
        };
        let bufs = [&params, x, &self.packed, &self.absmax, bias, y];
        let entries: Vec<wgpu::BindGroupEntry> = bufs.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("matmul4"), layout: &pipe.get_bind_group_layout(0), entries: &entries });
        // gemv: 8 output rows per workgroup; gemm: 64 x 64 output tiles.
        let groups = if m == 1 { grid(self.n.div_ceil(8)) } else { (self.n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1) };
        Ok((pipe, bg, groups))
    }

    pub fn forward(&self, gpu: &Gpu, x: &[f32], m: usize) -> Result<Vec<f32>, String> {
        let xb = gpu.storage_f32("x", x);
        let yb = gpu.zeroed("y", (m * self.n * 4) as u64);
        let (pipe, bg, groups) = self.prepare(gpu, &xb, &yb, m)?;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        record(&mut enc, &pipe, &bg, groups);
        gpu.queue.submit([enc.finish()]);
        let mut y = gpu.read_f32(&yb);
        y.truncate(m * self.n);
        Ok(y)
    }

    /// Seconds per forward of m rows (median; many dispatches per submission).
    pub fn time(&self, gpu: &Gpu, m: usize, repeats: u32) -> Result<f64, String> {
        let xb = gpu.storage_f32("x", &vec![0.5; m * self.k]);
        let yb = gpu.zeroed("y", (m * self.n * 4) as u64);
        let (pipe, bg, groups) = self.prepare(gpu, &xb, &yb, m)?;
        Ok(time_encoded(gpu, repeats, 5, |enc| record(enc, &pipe, &bg, groups)))
    }
}

fn record(enc: &mut wgpu::CommandEncoder, pipe: &wgpu::ComputePipeline, bg: &wgpu::BindGroup, groups: (u32, u32, u32)) {
    let mut pass = enc.begin_compute_pass(&Default::default());
    pass.set_pipeline(pipe);
    pass.set_bind_group(0, bg, &[]);
    pass.dispatch_workgroups(groups.0, groups.1, groups.2);
}

/// gpu-bench's kernel figures: NF4 GEMV effective bandwidth (weights + absmax read per second)
/// next to the copy bandwidth, and NF4 GEMM GFLOP/s, on Llama-7B / TinyLlama projection shapes.
pub fn bench(gpu: &Gpu, quick: bool, copy_bw: f64) -> Result<(), String> {
    let shapes: &[(usize, usize)] = if quick { &[(2048, 2048)] } else { &[(4096, 4096), (11008, 4096), (4096, 11008), (5632, 2048)] };
    for &(n, k) in shapes {
        let numel = n * k;
        // Weight contents do not matter for speed: a fixed byte pattern and unit absmax.
        let packed: Vec<u8> = (0..numel / 2).map(|i| (i * 37 % 251) as u8).collect();
        let absmax = vec![1.0f32; numel.div_ceil(64)];
        let w = Matmul4::new(gpu, &packed, &absmax, QuantType4::Nf4, 64, n, k, None);
        let t = w.time(gpu, 1, if quick { 5 } else { 50 })?;
        let bw = w.weight_bytes as f64 / t / 1e9;
        emit(gpu, &format!("gemv_nf4_{n}x{k}"), "effective_bandwidth", bw, "GB/s", Some(copy_bw), Some(0.7));
        let m = 128;
        let t = w.time(gpu, m, if quick { 2 } else { 10 })?;
        emit(gpu, &format!("gemm_nf4_{m}x{n}x{k}"), "throughput", 2.0 * (m * n * k) as f64 / t / 1e9, "GFLOP/s", None, None);
    }
    Ok(())
}
