//! A wgpu device on whatever adapter exists (a real GPU, or lavapipe / llvmpipe on CPU-only
//! machines), with the adapter's own limits, the buffer helpers the tests and gpu-bench need,
//! a pipeline cache keyed like the TypeScript host's (file, entry, defines), and recorded
//! [`Step`]s that go into one command encoder, as ts/backends/webgpu/context.ts records them.
use crate::layout::{Layout, Params};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// A compiled entry point of a kernel file under a define set, with the module's layout as naga
/// reflects it (crate::layout): what `Gpu::step` binds by name and `params` fills by name.
#[derive(Clone)]
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: Arc<Layout>,
    pub entry: String,
    /// "file|entry|defines", for messages.
    pub label: String,
}

impl Kernel {
    /// A uniform block for this kernel's module, filled by field name.
    pub fn params(&self) -> Params<'_> {
        Params::new(&self.layout)
    }
}

pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The WGSL implementation has `packed_4x8_integer_dot_product` (the shaders' DOT4 define).
    pub dot4_available: bool,
    /// Build every pipeline with DOT4 (the TS backend's `packedDot` option: on when available).
    /// Tests switch it off to run the other variant.
    pub packed_dot: bool,
    /// The device has subgroup operations (WebGPU's `subgroups` feature, wgpu's SUBGROUP).
    pub subgroups_available: bool,
    /// The 4-bit decode GEMV reduces with subgroupAdd (the shaders' SUBGROUPS define; the TS
    /// backend's `subgroups` option: on when available). Tests switch it off for the tree.
    pub subgroups: bool,
    /// Largest weight part in bytes (the TS backend's `weightBinding`: the adapter's storage
    /// binding limit, or a smaller `maxBindingSize`). Tests lower it to split weights into parts.
    pub weight_binding: u64,
    pipelines: Mutex<HashMap<String, Kernel>>,
    dummy: wgpu::Buffer,
}

/// One recorded command: a dispatch, or a buffer-to-buffer copy (the KV cache writes).
pub enum Step {
    Dispatch { pipeline: wgpu::ComputePipeline, group: wgpu::BindGroup, groups: (u32, u32, u32) },
    Copy { src: wgpu::Buffer, src_offset: u64, dst: wgpu::Buffer, dst_offset: u64, size: u64 },
}

/// Records `steps` into `enc`: consecutive dispatches share one compute pass.
pub fn record(enc: &mut wgpu::CommandEncoder, steps: &[Step]) {
    let mut i = 0;
    while i < steps.len() {
        match &steps[i] {
            Step::Copy { src, src_offset, dst, dst_offset, size } => {
                enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                i += 1;
            }
            Step::Dispatch { .. } => {
                let mut pass = enc.begin_compute_pass(&Default::default());
                while let Some(Step::Dispatch { pipeline, group, groups }) = steps.get(i) {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups(groups.0, groups.1, groups.2);
                    i += 1;
                }
            }
        }
    }
}

impl Gpu {
    /// The highest-performance adapter (LOWBIT_WGPU_BACKEND=vulkan|gl narrows the search), or
    /// an error saying none was found.
    pub fn new() -> Result<Gpu, String> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Ok(b) = std::env::var("LOWBIT_WGPU_BACKEND") {
            desc.backends = match b.as_str() {
                "vulkan" => wgpu::Backends::VULKAN,
                "gl" => wgpu::Backends::GL,
                other => return Err(format!("LOWBIT_WGPU_BACKEND={other}: expected vulkan or gl")),
            };
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| format!("no WebGPU adapter: {e}"))?;
        let features = adapter.features() & (wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("lowbit-gpu"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| format!("request_device: {e}"))?;
        let dot4_available = instance.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let l = device.limits();
        let max_binding = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        let dummy = device.create_buffer(&wgpu::BufferDescriptor { label: Some("dummy"), size: 16, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        let subgroups_available = device.features().contains(wgpu::Features::SUBGROUP);
        Ok(Gpu { adapter, device, queue, dot4_available, packed_dot: dot4_available, subgroups_available, subgroups: subgroups_available, weight_binding: max_binding - max_binding % 4, pipelines: Mutex::new(HashMap::new()), dummy })
    }

    /// A 16-byte storage buffer for bindings an entry point declares but the call does not use
    /// (the TS host's `ctx.dummy`).
    pub fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
    }

    /// "name (driver, backend, device type)".
    pub fn describe(&self) -> String {
        let i = self.adapter.get_info();
        format!("{} ({} {}, {:?}, {:?})", i.name, i.driver, i.driver_info, i.backend, i.device_type)
    }

    /// True for software rasterizers (lavapipe, llvmpipe, SwiftShader): figures only prove it runs.
    pub fn is_software(&self) -> bool {
        self.adapter.get_info().device_type == wgpu::DeviceType::Cpu
    }

    pub fn storage(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        // WebGPU bindings need a non-zero size and 4-byte multiples.
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().max(4).next_multiple_of(4), 0);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &padded,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    pub fn storage_f32(&self, label: &str, v: &[f32]) -> wgpu::Buffer {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        self.storage(label, &bytes)
    }

    pub fn storage_u32(&self, label: &str, v: &[u32]) -> wgpu::Buffer {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        self.storage(label, &bytes)
    }

    pub fn uniform(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: bytes, usage: wgpu::BufferUsages::UNIFORM })
    }

    pub fn zeroed(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copies a buffer back to the host (waits for the queue).
    pub fn read(&self, buf: &wgpu::Buffer) -> Vec<u8> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: buf.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, buf.size());
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("device lost while reading back");
        let out = slice.get_mapped_range().expect("mapped readback buffer").to_vec();
        staging.unmap();
        out
    }

    pub fn read_f32(&self, buf: &wgpu::Buffer) -> Vec<f32> {
        self.read(buf).chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    pub fn read_u32(&self, buf: &wgpu::Buffer) -> Vec<u32> {
        self.read(buf).chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    /// The pipeline of `entry` in shaders/`file` with `defines` (plus DOT4 when `packed_dot`, a
    /// global define as in the TS host), compiled once per session, with its module's layout.
    pub fn kernel(&self, file: &str, entry: &str, defines: &[&str]) -> Result<Kernel, String> {
        let mut all: Vec<&str> = defines.to_vec();
        if self.packed_dot {
            all.push("DOT4");
        }
        all.sort();
        all.dedup();
        let key = format!("{file}|{entry}|{}", all.join(","));
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let src = crate::load(file, &all)?;
        let (module, info) = crate::validate_info(&src).map_err(|e| format!("{key}: {e}"))?;
        let layout = Arc::new(Layout::reflect(&module, &info).map_err(|e| format!("{key}: {e}"))?);
        layout.entry(entry).map_err(|e| format!("{key}: {e}"))?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let p = self.pipeline(&key, &src, entry);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("{key}: {e}"));
        }
        let k = Kernel { pipeline: p, layout, entry: entry.to_string(), label: key.clone() };
        self.pipelines.lock().unwrap().insert(key, k.clone());
        Ok(k)
    }

    /// A uniform buffer filled by field name (`kernel.params().u(..).f(..)`).
    pub fn params(&self, params: Params) -> Result<wgpu::Buffer, String> {
        Ok(self.uniform("params", &params.bytes()?))
    }

    /// A dispatch of `kernel` with its bindings by WGSL variable name (group 0): exactly those
    /// its entry point uses, else an `Err` naming the one missing or unknown.
    pub fn step(&self, kernel: &Kernel, bindings: &[(&str, &wgpu::Buffer)], groups: (u32, u32, u32)) -> Result<Step, String> {
        let numbered = kernel.layout.bind(&kernel.entry, bindings).map_err(|e| format!("{}: {e}", kernel.label))?;
        let entries: Vec<wgpu::BindGroupEntry> = numbered.iter().map(|(i, b)| wgpu::BindGroupEntry { binding: *i, resource: b.as_entire_binding() }).collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &kernel.pipeline.get_bind_group_layout(0), entries: &entries });
        Ok(Step::Dispatch { pipeline: kernel.pipeline.clone(), group, groups })
    }

    /// Records `steps` into one encoder and submits it (without waiting).
    pub fn submit(&self, steps: &[Step]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        record(&mut enc, steps);
        self.queue.submit([enc.finish()]);
    }

    /// A compute pipeline for `entry` of WGSL `source` (layout derived from the shader).
    pub fn pipeline(&self, label: &str, source: &str, entry: &str) -> wgpu::ComputePipeline {
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(label), source: wgpu::ShaderSource::Wgsl(source.into()) });
        self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
    }
}
