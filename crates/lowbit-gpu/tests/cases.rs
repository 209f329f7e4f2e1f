//! The kernel cases of shaders/cases.json (the list the WebGPU and wasm suites run too) on wgpu,
//! each against lowbit-core's reference kernel: inputs from the file's xorshift32 and each case's
//! seed, drawn in the order shaders/README.md lists, compared within the file's `gpu` tolerance,
//! under each host switch set of the case's `run` (subgroups, dot4) the device has.
mod common;
use common::gpu;
use lowbit_core::blockwise4::quantize_packed;
use lowbit_core::double_quant::compress;
use lowbit_core::kernels::activation::{gelu, gelu_tanh, silu, swiglu};
use lowbit_core::kernels::attention::{attention, AttentionShape};
use lowbit_core::kernels::embedding::embedding;
use lowbit_core::kernels::matmul4::{matmul4_reference, Absmax4, NestedAbsmax4, Weight4};
use lowbit_core::codebook::dynamic_map_signed;
use lowbit_core::kernels::matmul_blockwise8::{matmul_blockwise8, Weight8, INT8_CODE};
use lowbit_core::kernels::matmul_blockwise8_int::matmul_blockwise8_int;
use lowbit_core::kernels::matmul_dense::matmul_dense;
use lowbit_core::kernels::matmul_int8::{matmul_int8, WeightInt8};
use lowbit_core::kernels::norm::{layer_norm, rms_norm};
use lowbit_core::kernels::rope::{apply_rope, inv_freq};
use lowbit_core::{bf16, f16, Kernel, QuantType4};
use lowbit_gpu::kernels::elementwise::{elementwise, Op};
use lowbit_gpu::kernels::matmul4::{qkv_steps, Absmax};
use lowbit_gpu::kernels::{norm, rope, sample, DenseData, Embedding, KvCache, Matmul4, MatmulBlockwise8, MatmulDense, MatmulInt8};
use lowbit_gpu::{shaders_dir, Gpu};
use serde_json::Value;
use std::collections::BTreeMap;

/// xorshift32 (13, 17, 5), as test/helpers/kernel-cases.ts writes it.
struct Prng(u32);

impl Prng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// `len` values ((next >> 8) - 2^23) * scale / 2^23: exact in f32 for a power-of-two scale.
    fn values(&mut self, len: usize, scale: f32) -> Vec<f32> {
        assert!(scale > 0.0 && scale.to_bits() & 0x007f_ffff == 0, "scales are powers of two");
        (0..len).map(|_| ((self.next() >> 8) as i32 - (1 << 23)) as f32 * (scale / 8_388_608.0)).collect()
    }
}

fn file() -> Value {
    let path = shaders_dir().join("cases.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn us(c: &Value, key: &str) -> usize {
    c[key].as_u64().unwrap_or_else(|| panic!("{}: '{key}' is not a count", c["name"])) as usize
}

fn flag(c: &Value, key: &str) -> bool {
    c[key].as_bool().unwrap_or(false)
}

/// |got - want| <= abs + rel * max|want| for every element.
fn check(what: &str, got: &[f32], want: &[f32], tol: &Value) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f64, |a, &w| a.max((w as f64).abs()));
    let bound = tol["abs"].as_f64().unwrap() + tol["rel"].as_f64().unwrap() * scale;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w as f64).abs();
        assert!(d <= bound, "{what} [{i}]: gpu {g:e} vs reference {w:e}: |Δ| = {d:e} > {bound:e}");
    }
}

#[test]
fn the_prng_gives_the_files_first_values() {
    let f = file();
    let check = &f["prng"]["check"];
    let mut r = Prng(check["seed"].as_u64().unwrap() as u32);
    let first: Vec<u64> = (0..check["first"].as_array().unwrap().len()).map(|_| r.next() as u64).collect();
    assert_eq!(first, check["first"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>());
}

#[test]
fn the_split_rule_gives_the_files_rows() {
    let f = file();
    for row in f["attention_split_rule"]["rows"].as_array().unwrap() {
        let v = row.as_array().unwrap();
        let n = |i: usize| v[i].as_u64().unwrap() as usize;
        let forced = v[3].as_u64().map(|s| s as usize);
        assert_eq!(lowbit_gpu::kernels::attention::attention_splits(n(0), n(1), n(2), forced), n(4), "row {row}");
    }
}

fn quant_type(c: &Value) -> QuantType4 {
    match c["format"].as_str().unwrap() {
        "nf4" => QuantType4::Nf4,
        "fp4" => QuantType4::Fp4,
        other => panic!("{}: format {other}", c["name"]),
    }
}

/// lowbit-core's output for (x, m).
type Reference = Box<dyn Fn(&[f32], usize) -> Vec<f32>>;

/// One 4-bit weight: drawn, quantized (and double-quantized when `nested`), uploaded; returns
/// the GPU weight and the reference.
fn four_bit(gpu: &Gpu, c: &Value, r: &mut Prng, n: usize, bias: bool) -> (Matmul4, Reference) {
    let (k, bs, qt) = (us(c, "k"), us(c, "blocksize"), quant_type(c));
    let w = r.values(n * k, 1.0 / 16.0);
    let b = bias.then(|| r.values(n, 1.0 / 8.0));
    let (packed, absmax) = quantize_packed(&w, qt, bs, false, Kernel::Scalar).unwrap();
    let nested = flag(c, "nested").then(|| compress(&absmax).unwrap());
    let g = match &nested {
        Some(na) => Matmul4::with_absmax(gpu, &packed, Absmax::Nested(na), qt, bs, n, k, b.as_deref()),
        None => Matmul4::new(gpu, &packed, &absmax, qt, bs, n, k, b.as_deref()),
    }
    .unwrap();
    let reference = move |x: &[f32], m: usize| {
        let a = match &nested {
            Some(na) => Absmax4::Nested(NestedAbsmax4::from_state(na).unwrap()),
            None => Absmax4::F32(&absmax),
        };
        matmul4_reference(x, m, &Weight4::with_absmax(&packed, a, qt, bs, n, k).unwrap(), b.as_deref()).unwrap()
    };
    (g, Box::new(reference))
}

fn half_storage(s: &str, v: &[f32]) -> (Vec<f16>, Vec<bf16>) {
    match s {
        "f16" => (v.iter().map(|&x| f16::from_f32(x)).collect(), vec![]),
        "bf16" => (vec![], v.iter().map(|&x| bf16::from_f32(x)).collect()),
        _ => (vec![], vec![]),
    }
}

/// Runs one case under the current switches; panics on a mismatch.
fn run_case(gpu: &Gpu, c: &Value, tol: &Value) {
    let name = c["name"].as_str().unwrap();
    let entry = c["entry"].as_str().unwrap();
    let mut r = Prng(c["seed"].as_u64().unwrap() as u32);
    let what = format!("{name} (subgroups={} dot4={})", gpu.subgroups, gpu.packed_dot);
    match c["kernel"].as_str().unwrap() {
        "matmul4" => {
            let (m, n, k) = (us(c, "m"), us(c, "n"), us(c, "k"));
            let (g, reference) = four_bit(gpu, c, &mut r, n, flag(c, "bias"));
            let x = r.values(m * k, 1.0);
            let took = if m > 1 { "gemm" } else if g.uses_gemv4() { "gemv4" } else { "gemv" };
            assert_eq!(took, entry, "{what}: the case's entry point");
            check(&what, &g.forward(gpu, &x, m).unwrap(), &reference(&x, m), tol);
        }
        "matmul4_qkv" => {
            let k = us(c, "k");
            let ns: Vec<usize> = c["n"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            let ws: Vec<_> = ns.iter().map(|&n| four_bit(gpu, c, &mut r, n, false)).collect();
            let x = r.values(k, 1.0);
            let xb = gpu.storage_f32("x", &x);
            let ys: Vec<_> = ns.iter().map(|&n| gpu.zeroed("y", (n * 4) as u64)).collect();
            let step = qkv_steps(gpu, [&ws[0].0, &ws[1].0, &ws[2].0], &xb, [&ys[0], &ys[1], &ys[2]]).unwrap();
            gpu.submit(&[step]);
            for (i, ((_, reference), y)) in ws.iter().zip(&ys).enumerate() {
                let mut got = gpu.read_f32(y);
                got.truncate(ns[i]);
                check(&format!("{what} output {i}"), &got, &reference(&x, 1), tol);
            }
        }
        "matmul_int8" => {
            let (m, n, k) = (us(c, "m"), us(c, "n"), us(c, "k"));
            let cb: Vec<i8> = (0..n * k).map(|_| ((r.next() >> 24) % 255) as i32 - 127).map(|v| v as i8).collect();
            let scb: Vec<f32> = (0..n).map(|_| 1.0 / 64.0 + r.values(1, 0.5)[0].abs()).collect();
            let b = flag(c, "bias").then(|| r.values(n, 1.0 / 8.0));
            let x = r.values(m * k, 8.0);
            let threshold = c["threshold"].as_f64().unwrap() as f32;
            assert_eq!(if m == 1 { "int8_gemv" } else { "int8_matmul" }, entry, "{what}: the case's entry point");
            let mut want = vec![0f32; m * n];
            matmul_int8(&x, m, &WeightInt8::new(&cb, &scb, n, k).unwrap(), threshold, b.as_deref(), &mut want, Kernel::Scalar).unwrap();
            let got = MatmulInt8::new(gpu, &cb, &scb, n, k, threshold, b.as_deref()).unwrap().forward(gpu, &x, m).unwrap().y;
            check(&what, &got, &want, tol);
        }
        "matmul_blockwise8" => {
            let (m, n, k, bs) = (us(c, "m"), us(c, "n"), us(c, "k"), us(c, "blocksize"));
            let q: Vec<u8> = (0..n * k).map(|_| (r.next() >> 24) as u8).collect();
            let absmax: Vec<f32> = (0..(n * k).div_ceil(bs)).map(|_| 1.0 / 64.0 + r.values(1, 0.5)[0].abs()).collect();
            let b = flag(c, "bias").then(|| r.values(n, 1.0 / 8.0));
            let x = r.values(m * k, 1.0);
            let code: &[f32; 256] = if c["code"] == "int8" { &INT8_CODE } else { dynamic_map_signed() };
            let mut g = MatmulBlockwise8::new(gpu, &q, &absmax, code, bs, n, k, b.as_deref()).unwrap();
            // int_act: the decode GEMV on integer activations against the CPU's integer kernel
            g.int_activations = flag(c, "int_act");
            assert_eq!(g.int_activations, g.uses_int_act(m), "{what}: an int_act case must take the integer path");
            assert_eq!(if m > 1 { "gemm" } else if g.uses_gemv8(m) { "gemv8" } else { "gemv" }, entry, "{what}: the case's entry point");
            let mut want = vec![0f32; m * n];
            let w8 = Weight8::new(&q, &absmax, code, bs, n, k).unwrap();
            if g.int_activations {
                matmul_blockwise8_int(&x, m, &w8, b.as_deref(), &mut want, Kernel::Scalar).unwrap();
            } else {
                matmul_blockwise8(&x, m, &w8, b.as_deref(), &mut want, Kernel::Scalar).unwrap();
            }
            check(&what, &g.forward(gpu, &x, m).unwrap(), &want, tol);
        }
        "matmul_dense" => {
            let (m, n, k) = (us(c, "m"), us(c, "n"), us(c, "k"));
            let storage = c["storage"].as_str().unwrap();
            let w = r.values(n * k, 1.0 / 16.0);
            let b = flag(c, "bias").then(|| r.values(n, 1.0 / 8.0));
            let x = r.values(m * k, 1.0);
            assert_eq!(if m > 1 { "gemm" } else if k % 4 == 0 { "gemv_rows" } else { "gemv" }, entry, "{what}: the case's entry point");
            let (h, bh) = half_storage(storage, &w);
            let mut want = vec![0f32; m * n];
            let data = match storage {
                "f16" => {
                    matmul_dense(&x, m, &h, n, k, b.as_deref(), &mut want, Kernel::Scalar).unwrap();
                    DenseData::F16(&h)
                }
                "bf16" => {
                    matmul_dense(&x, m, &bh, n, k, b.as_deref(), &mut want, Kernel::Scalar).unwrap();
                    DenseData::Bf16(&bh)
                }
                _ => {
                    matmul_dense(&x, m, &w, n, k, b.as_deref(), &mut want, Kernel::Scalar).unwrap();
                    DenseData::F32(&w)
                }
            };
            check(&what, &MatmulDense::new(gpu, data, n, k, b.as_deref()).unwrap().forward(gpu, &x, m).unwrap(), &want, tol);
        }
        "norm" => {
            let (rows, hidden) = (us(c, "rows"), us(c, "hidden"));
            let eps = c["eps"].as_f64().unwrap() as f32;
            let x = r.values(rows * hidden, 4.0);
            let w = r.values(hidden, 1.0);
            let b = flag(c, "bias").then(|| r.values(hidden, 1.0));
            let mut want = vec![0f32; x.len()];
            let got = if entry == "rms_norm" {
                rms_norm(&x, hidden, &w, eps, &mut want).unwrap();
                norm::rms_norm(gpu, &x, rows, hidden, &w, eps).unwrap()
            } else {
                layer_norm(&x, hidden, &w, b.as_deref(), eps, &mut want).unwrap();
                norm::layer_norm(gpu, &x, rows, hidden, &w, b.as_deref(), eps).unwrap()
            };
            check(&what, &got, &want, tol);
        }
        "rope" => {
            let (n_heads, hd) = (us(c, "n_heads"), us(c, "head_dim"));
            let positions: Vec<u32> = c["positions"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let inv = inv_freq(hd, c["theta"].as_f64().unwrap() as f32, None).unwrap();
            let x = r.values(positions.len() * n_heads * hd, 1.0);
            let mut want = x.clone();
            apply_rope(&mut want, n_heads, hd, &positions.iter().map(|&p| p as usize).collect::<Vec<_>>(), &inv).unwrap();
            check(&what, &rope::rope(gpu, &x, positions.len(), n_heads, &positions, &inv).unwrap(), &want, tol);
        }
        "attention" => {
            let (n_heads, n_kv, hd, max_pos) = (us(c, "n_heads"), us(c, "n_kv_heads"), us(c, "head_dim"), us(c, "max_pos"));
            let shape = AttentionShape { n_heads, n_kv_heads: n_kv, head_dim: hd, max_pos };
            let (q_row, kv_row) = (n_heads * hd, n_kv * hd);
            let mut cache = KvCache::new(gpu, max_pos, n_kv, hd).unwrap();
            cache.splits = c.get("splits").map(|s| s.as_u64().unwrap() as usize);
            let (mut kc, mut vc) = (vec![0f32; max_pos * kv_row], vec![0f32; max_pos * kv_row]);
            for call in c["calls"].as_array().unwrap() {
                let (start, n) = (call[0].as_u64().unwrap() as usize, call[1].as_u64().unwrap() as usize);
                let q = r.values(n * q_row, 1.0);
                let k = r.values(n * kv_row, 1.0);
                let v = r.values(n * kv_row, 1.0);
                kc[start * kv_row..(start + n) * kv_row].copy_from_slice(&k);
                vc[start * kv_row..(start + n) * kv_row].copy_from_slice(&v);
                let mut want = vec![0f32; n * q_row];
                attention(&q, n, start, &kc, &vc, &shape, None, &mut want).unwrap();
                check(&format!("{what} call at {start}"), &cache.attention(gpu, &q, &k, &v, n, start, n_heads, None).unwrap(), &want, tol);
            }
        }
        "elementwise" => {
            let count = us(c, "count");
            let a = r.values(count, 16.0);
            let (op, b, want): (Op, Option<Vec<f32>>, Vec<f32>) = match entry {
                "add" => {
                    let b = r.values(count, 16.0);
                    let want = a.iter().zip(&b).map(|(x, y)| x + y).collect();
                    (Op::Add, Some(b), want)
                }
                "swiglu" => {
                    let b = r.values(count, 16.0);
                    let mut want = vec![0f32; count];
                    swiglu(&a, &b, &mut want).unwrap();
                    (Op::Swiglu, Some(b), want)
                }
                "silu_op" => (Op::Silu, None, a.iter().map(|&v| silu(v)).collect()),
                "gelu" => (Op::Gelu, None, a.iter().map(|&v| gelu(v)).collect()),
                "gelu_tanh" => (Op::GeluTanh, None, a.iter().map(|&v| gelu_tanh(v)).collect()),
                other => panic!("{name}: elementwise entry {other}"),
            };
            check(&what, &elementwise(gpu, op, &a, b.as_deref()).unwrap(), &want, tol);
        }
        "embedding" => {
            let (vocab, dim) = (us(c, "vocab"), us(c, "dim"));
            let storage = c["storage"].as_str().unwrap();
            let table = r.values(vocab * dim, 1.0);
            let ids: Vec<u32> = (0..us(c, "ids")).map(|_| r.next() % vocab as u32).collect();
            let (h, bh) = half_storage(storage, &table);
            let mut want = vec![0f32; ids.len() * dim];
            let data = match storage {
                "f16" => {
                    embedding(&h, dim, &ids, &mut want).unwrap();
                    DenseData::F16(&h)
                }
                "bf16" => {
                    embedding(&bh, dim, &ids, &mut want).unwrap();
                    DenseData::Bf16(&bh)
                }
                _ => {
                    embedding(&table, dim, &ids, &mut want).unwrap();
                    DenseData::F32(&table)
                }
            };
            check(&what, &Embedding::new(gpu, data, vocab, dim).unwrap().gather(gpu, &ids).unwrap(), &want, tol);
        }
        "sample" => {
            let (rows, cols) = (us(c, "rows"), us(c, "cols"));
            let x = r.values(rows * cols, 4.0);
            // the CPU rule: the first index of the largest value; top-k: a stable sort, largest first
            let mut order: Vec<Vec<usize>> = (0..rows).map(|_| (0..cols).collect()).collect();
            for (o, row) in order.iter_mut().zip(x.chunks(cols)) {
                o.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
            }
            if entry == "argmax" {
                let want: Vec<u32> = order.iter().map(|o| o[0] as u32).collect();
                assert_eq!(sample::argmax(gpu, &x, rows, cols).unwrap(), want, "{what}");
            } else {
                let k = us(c, "top_k");
                let (idx, vals) = sample::top_k(gpu, &x, k).unwrap();
                assert_eq!(idx, order[0][..k].iter().map(|&i| i as u32).collect::<Vec<_>>(), "{what}: indices");
                check(&what, &vals, &order[0][..k].iter().map(|&i| x[i]).collect::<Vec<_>>(), tol);
            }
        }
        other => panic!("{name}: unknown kernel {other}"),
    }
}

#[test]
fn kernel_cases_match_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    let f = file();
    let (sg, dot4) = (gpu.subgroups_available, gpu.dot4_available);
    let mut ran: BTreeMap<String, usize> = BTreeMap::new();
    for c in f["cases"].as_array().unwrap() {
        let kernel = c["kernel"].as_str().unwrap();
        let tol = c.get("tolerance").unwrap_or(&f["tolerance"][kernel]["gpu"]);
        let runs = c["run"].as_array().cloned().unwrap_or_else(|| vec![Value::Object(Default::default())]);
        for switches in &runs {
            let want_sg = switches["subgroups"].as_bool().unwrap_or(sg);
            let want_dot4 = switches["dot4"].as_bool().unwrap_or(dot4);
            if (want_sg && !sg) || (want_dot4 && !dot4) {
                eprintln!("{}: {switches} skipped: the device lacks it", c["name"]);
                continue;
            }
            (gpu.subgroups, gpu.packed_dot) = (want_sg, want_dot4);
            run_case(&gpu, c, tol);
            *ran.entry(format!("{kernel}:{}", c["entry"].as_str().unwrap())).or_default() += 1;
        }
    }
    eprintln!("kernel cases run: {ran:?}");
    for c in f["cases"].as_array().unwrap() {
        let key = format!("{}:{}", c["kernel"].as_str().unwrap(), c["entry"].as_str().unwrap());
        assert!(ran.contains_key(&key), "{key} never ran");
    }
}
