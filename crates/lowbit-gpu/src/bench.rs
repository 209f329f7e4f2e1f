//! The measurements behind `gpu-bench`. Times are wall-clock around `repeats` dispatches in one
//! submission, waited for with device.poll (medians of several such runs), so per-submit
//! overhead is amortized; figures on a software adapter only prove the code runs.
use crate::Gpu;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Seconds per repetition of `record` (which encodes one repetition), median of `runs`.
pub fn time_encoded(gpu: &Gpu, repeats: u32, runs: u32, mut record: impl FnMut(&mut wgpu::CommandEncoder)) -> f64 {
    let mut times = Vec::new();
    for run in 0..=runs {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for _ in 0..repeats {
            record(&mut enc);
        }
        let t = Instant::now();
        gpu.queue.submit([enc.finish()]);
        gpu.device.poll(wgpu::PollType::wait_indefinitely()).expect("device lost");
        if run > 0 {
            times.push(t.elapsed().as_secs_f64() / repeats as f64);
        }
    }
    median(times)
}

pub fn emit(gpu: &Gpu, case: &str, metric: &str, value: f64, unit: &str, vs: Option<f64>, goal: Option<f64>) {
    let ratio = vs.map(|v| value / v);
    let num = |x: Option<f64>| x.map_or("null".to_string(), |v| format!("{v:.6}"));
    println!(
        "{{\"suite\":\"gpu\",\"case\":\"{case}\",\"metric\":\"{metric}\",\"value\":{value:.6},\"unit\":\"{unit}\",\"vs\":{},\"ratio\":{},\"goal\":{},\"adapter\":\"{}\",\"software\":{}}}",
        num(vs),
        num(ratio),
        num(goal),
        gpu.describe().replace('"', "'"),
        gpu.is_software()
    );
}

/// Device-to-device copy bandwidth (bytes read + bytes written per second) of a `bytes` buffer.
pub fn copy_bandwidth(gpu: &Gpu, bytes: u64, repeats: u32) -> f64 {
    let a = gpu.zeroed("copy-src", bytes);
    let b = gpu.zeroed("copy-dst", bytes);
    let t = time_encoded(gpu, repeats, 5, |enc| enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes));
    2.0 * bytes as f64 / t / 1e9
}

pub fn run(gpu: &Gpu, quick: bool) -> Result<(), String> {
    eprintln!("gpu-bench on {}{}", gpu.describe(), if gpu.is_software() { " — a software adapter: figures only prove it runs" } else { "" });
    let size: u64 = if quick { 16 << 20 } else { 256 << 20 };
    let size = size.min(gpu.device.limits().max_buffer_size / 2);
    let copy = copy_bandwidth(gpu, size, if quick { 4 } else { 20 });
    emit(gpu, &format!("copy_{}MiB", size >> 20), "bandwidth", copy, "GB/s", None, None);
    crate::kernels::bench(gpu, quick, copy)
}
