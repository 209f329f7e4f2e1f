//! lowbit-gpu: the native side of lowbit's WGSL kernels (shaders/). It loads the same .wgsl
//! files the WebGPU backend embeds, validates every one with naga in `cargo test`, and drives
//! every kernel family through wgpu on whatever adapter exists (lavapipe on CPU-only machines):
//! [`kernels`] has one driver per shader file that binds uniforms, buffers, entry points,
//! defines (WEIGHT_F32 / F16 / BF16, DOT4) and workgroup counts exactly as
//! ts/backends/webgpu/ (index.ts, weights.ts, quantize.ts) does, including weights split into
//! parts for a small binding limit. The tests (tests/*.rs, one per family) check each against
//! the Rust scalar references in lowbit-core (and its quantizer for quantize4.wgsl), bit-exact
//! or within error bounds derived from WGSL's accuracy rules; `gpu-bench` measures them.
pub mod context;
pub mod layout;
pub mod preprocess;

pub use context::{record, Gpu, Kernel, Step};
pub use layout::{Layout, Params};
pub use preprocess::{defines_used, kernel_files, load, shaders_dir, validate, validate_info};
pub mod bench;
pub mod kernels;
