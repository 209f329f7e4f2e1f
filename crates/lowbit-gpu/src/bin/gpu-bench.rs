//! gpu-bench: lowbit's WGSL kernels on the machine's GPU, each figure next to a device-to-device
//! copy bandwidth measured in the same run (JSON lines, like `npm run bench`).
//!
//!   cargo run --profile gpu-bench -p lowbit-gpu --bin gpu-bench [-- --quick]
use lowbit_gpu::bench;
use lowbit_gpu::Gpu;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gpu-bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = bench::run(&gpu, quick) {
        eprintln!("gpu-bench: {e}");
        std::process::exit(1);
    }
}
