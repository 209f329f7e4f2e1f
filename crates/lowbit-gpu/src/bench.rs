//! The measurements behind `gpu-bench`. Times are wall-clock around `repeats` dispatches in one
//! submission, waited for with device.poll (medians of several such runs), so per-submit
//! overhead is amortized; figures on a software adapter only prove the code runs.
use crate::kernels::{DenseData, KvCache, Matmul4, MatmulBlockwise8, MatmulDense, MatmulInt8};
use lowbit_core::kernels::matmul_blockwise8::INT8_CODE;
use crate::{record, Gpu, Step};
use lowbit_core::{f16, QuantType4};
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

/// Seconds per execution of `steps` (median; `repeats` executions per submission).
pub fn time_steps(gpu: &Gpu, steps: &[Step], repeats: u32) -> f64 {
    time_encoded(gpu, repeats, 5, |enc| record(enc, steps))
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
    linears(gpu, quick, copy)?;
    attention_decode(gpu, quick, copy)
}

/// GEMV effective bandwidth (weight bytes read per second) of NF4, dense f16, LLM.int8 and Q8_0
/// weights next to the copy bandwidth, and NF4 GEMM GFLOP/s, on Llama-7B / TinyLlama projection
/// shapes. Weight contents do not matter for speed: fixed byte patterns.
fn linears(gpu: &Gpu, quick: bool, copy_bw: f64) -> Result<(), String> {
    let shapes: &[(usize, usize)] = if quick { &[(2048, 2048)] } else { &[(4096, 4096), (11008, 4096), (4096, 11008), (5632, 2048)] };
    let reps = if quick { 5 } else { 50 };
    for &(n, k) in shapes {
        let numel = n * k;
        let x = gpu.storage_f32("x", &vec![0.5; 128 * k]);
        let y = gpu.zeroed("y", (128 * n * 4) as u64);

        let packed: Vec<u8> = (0..numel / 2).map(|i| (i * 37 % 251) as u8).collect();
        let w = Matmul4::new(gpu, &packed, &vec![1.0f32; numel.div_ceil(64)], QuantType4::Nf4, 64, n, k, None)?;
        drop(packed);
        let t = time_steps(gpu, &w.steps(gpu, &x, &y, 1)?, reps);
        emit(gpu, &format!("gemv_nf4_{n}x{k}"), "effective_bandwidth", w.weight_bytes as f64 / t / 1e9, "GB/s", Some(copy_bw), Some(0.7));
        let m = 128;
        let t = time_steps(gpu, &w.steps(gpu, &x, &y, m)?, if quick { 2 } else { 10 });
        emit(gpu, &format!("gemm_nf4_{m}x{n}x{k}"), "throughput", 2.0 * (m * n * k) as f64 / t / 1e9, "GFLOP/s", None, None);
        drop(w);

        let halves: Vec<f16> = (0..numel).map(|i| f16::from_bits(0x3000 + (i * 37 % 1021) as u16)).collect();
        let w = MatmulDense::new(gpu, DenseData::F16(&halves), n, k, None)?;
        drop(halves);
        let t = time_steps(gpu, &w.steps(gpu, &x, &y, 1)?, reps);
        emit(gpu, &format!("gemv_f16_{n}x{k}"), "effective_bandwidth", w.weight_bytes as f64 / t / 1e9, "GB/s", Some(copy_bw), Some(0.7));
        drop(w);

        // the whole LLM.int8 forward of one row as the backend runs it (threshold 6: flags,
        // compact, quant, matmul); counted bytes: CB rows + SCB
        let cb: Vec<i8> = (0..numel).map(|i| ((i * 37 % 255) as i32 - 127) as i8).collect();
        let w = MatmulInt8::new(gpu, &cb, &vec![0.01f32; n], n, k, 6.0, None)?;
        drop(cb);
        let (steps, _scratch) = w.steps(gpu, &x, &y, 1)?;
        let t = time_steps(gpu, &steps, reps);
        let label = if gpu.packed_dot { "dot4" } else { "scalar" };
        emit(gpu, &format!("gemv_int8_{label}_{n}x{k}"), "effective_bandwidth", w.weight_bytes as f64 / t / 1e9, "GB/s", Some(copy_bw), Some(0.7));
        drop(w);

        // GGUF Q8_0 (int8 code, blocks of 32; counted bytes: codes + f32 absmax): gemv8 on f32
        // activations and on 14-bit integer activations (INT_ACT)
        let q: Vec<u8> = (0..numel).map(|i| (i * 37 % 251) as u8).collect();
        let mut w = MatmulBlockwise8::new(gpu, &q, &vec![0.01f32; numel.div_ceil(32)], &INT8_CODE, 32, n, k, None)?;
        drop(q);
        for int_act in [false, true] {
            w.int_activations = int_act;
            let t = time_steps(gpu, &w.steps(gpu, &x, &y, 1)?, reps);
            let label = if !int_act { "f32" } else if gpu.packed_dot { "intact_dot4" } else { "intact_scalar" };
            emit(gpu, &format!("gemv_q8_0_{label}_{n}x{k}"), "effective_bandwidth", w.weight_bytes as f64 / t / 1e9, "GB/s", Some(copy_bw), Some(0.7));
        }
    }
    Ok(())
}

/// One decode step of attention for a TinyLlama-1.1B layer (32 query heads, 4 kv heads,
/// head_dim 64) at contexts 512 and 2048: the two KV row copies and the attention dispatches, as
/// the backend records them, split over the context by the rule (`attention_splits`) and
/// unsplit (`_unsplit`). Reported as time per step and as K + V bytes read per second next to
/// the copy bandwidth.
fn attention_decode(gpu: &Gpu, quick: bool, copy_bw: f64) -> Result<(), String> {
    let (n_heads, n_kv, hd) = (32, 4, 64);
    for ctx in [512, 2048] {
        for (tag, splits) in [("", None), ("_unsplit", Some(1))] {
            let mut cache = KvCache::new(gpu, ctx, n_kv, hd)?;
            cache.splits = splits;
            let q = gpu.storage_f32("q", &(0..n_heads * hd).map(|i| ((i % 17) as f32 - 8.0) * 0.05).collect::<Vec<_>>());
            let k = gpu.storage_f32("k", &vec![0.1; n_kv * hd]);
            let v = gpu.storage_f32("v", &vec![0.2; n_kv * hd]);
            let out = gpu.zeroed("out", (n_heads * hd * 4) as u64);
            let steps = cache.steps(gpu, &q, &k, &v, 1, ctx - 1, n_heads, None, &out)?;
            let t = time_steps(gpu, &steps, if quick { 10 } else { 200 });
            let case = format!("attention_decode_tinyllama_ctx{ctx}{tag}");
            emit(gpu, &case, "step_time", t * 1e6, "us", None, None);
            let kv_bytes = (2 * ctx * n_kv * hd * 4) as f64;
            emit(gpu, &case, "effective_bandwidth", kv_bytes / t / 1e9, "GB/s", Some(copy_bw), None);
        }
    }
    Ok(())
}
