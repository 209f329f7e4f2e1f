//! lowbit-gpu: the native side of lowbit's WGSL kernels (shaders/). It loads the same .wgsl
//! files the WebGPU backend embeds, validates every one with naga in `cargo test`, runs the
//! kernels through wgpu on whatever adapter exists (lavapipe on CPU-only machines) against the
//! Rust scalar references in lowbit-core, and measures them on a real GPU (`gpu-bench`).
pub mod context;
pub mod preprocess;

pub use context::{record, Gpu, Step, Words};
pub use preprocess::{defines_used, kernel_files, load, shaders_dir, validate};
pub mod bench;
pub mod kernels;
