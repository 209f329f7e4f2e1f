// `npm run bench -- cpu`: CPU (wasm SIMD128 or relaxed-SIMD build: what init() picks, or
// LOWBIT_WASM_BUILD=simd128|relaxed; every record names it) inference figures on one thread and on all threads
// (CpuBackend threads: weights split by output rows between worker threads), each next to its
// reference measured in the same run:
// - 4-bit GEMV effective bandwidth (bytes of packed weights + f32 absmax per second), with the
//   default fast kernels (integer activations and dots) and the exact f32 kernels, vs the read
//   bandwidth measured the same way: one thread against one wasm instance reading a 128 MiB
//   buffer; all threads against every thread reading its own buffer at once
//   (read-bandwidth.mjs); goal >= 0.8;
// - GEMM GFLOP/s for a prefill shape (64 tokens), all threads vs one;
// - decode and prefill tokens/s for SmolLM2-135M- and TinyLlama-1.1B-shaped models with random
//   weights (scripts/make-random-checkpoint.mjs) in nf4, nf4 + double quant, int8 and f16 (and
//   nf4-exact: nf4 with cpuKernels 'exact', the f32 kernels the fast path replaced), with
//   each model's memory footprint; all threads vs one thread. Prefill is a generate() of one
//   token (logits of the last position only, as llama.cpp computes them); decode steps are
//   forward() of one token each.
// - the dense f16 GEMV (a SmolLM2-sized tied lm_head) and the LLM.int8 GEMV, one thread, vs the
//   one-thread read bandwidth;
// - llama.cpp (bench/llamacpp.mjs) on the same weights as GGUF, on the same thread counts: each
//   lowbit decode / prefill figure gets a `<metric>_vs_llamacpp_avx2` record against its peer
//   (nf4 / nf4-dq <-> Q4_0, int8 <-> Q8_0, f16 <-> F16) in the AVX2-only build, goal >= 1.0 for
//   decode; --no-peers skips it.
// Every record has a `threads` field and names the wasm build (`build`: simd128 or relaxed-simd).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import * as lowbit from '../dist/index.js';
import { Linear } from '../dist/wasm/pkg/lowbit_wasm.js';
import { llamaCppRows } from './llamacpp.mjs';
import { parallelReader } from './read-bandwidth.mjs';

const { init, AutoModelForCausalLM, BitsAndBytesConfig, CpuBackend, quantize4bit } = lowbit;

export const describe = 'CPU kernels and models, one thread and all threads: 4-bit GEMV bandwidth vs read bandwidth, GEMM GFLOP/s, decode/prefill tokens/s';
export const usage = [
  'options:',
  '  --models smollm2-135m,tinyllama   (default both)',
  '  --quants nf4,nf4-dq,nf4-exact,int8,f16  (default all; nf4-exact = nf4 on the exact f32 kernels)',
  '  --decode N                         decode steps (default 16)',
  '  --rounds N                         rounds per model figure, thread counts interleaved (default 3; median)',
  "  --threads 1,all                    thread counts to run ('all' = every core 'auto' may use; default 1,all)",
  "  --auto                             also the models on threads: 'auto' (its speed test at create() may keep one thread)",
  '  --no-peers                         skip llama.cpp (bench/llamacpp.mjs)',
].join('\n');

const here = fileURLToPath(new URL('.', import.meta.url));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function time(f, reps) {
  const t = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    f();
    t.push((performance.now() - s) / 1000);
  }
  return median(t);
}

export async function run({ json, emit, args }) {
  const get = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
  await init();
  // 'all' = every core 'auto' may use; what 'auto' keeps right now (its speed test) goes in meta
  const all = await CpuBackend.create({ threads: 'auto', autoMinSpeedup: 0 });
  const allThreads = all.threads;
  all.dispose();
  const auto = await CpuBackend.create({ threads: 'auto' });
  const autoNow = { autoThreads: auto.threads, autoSpeedup: auto.threadSpeedup ?? null };
  auto.dispose();
  const counts = [...new Set(get('--threads', '1,all').split(',').map((t) => (t === 'all' ? allThreads : Number(t))))];
  const GB = 1e9;
  const build = lowbit.wasmBuild();
  const out = (r) => {
    r = { ...r, build };
    emit(r);
    if (!json) console.log(`  ${(r.case + ' ' + r.metric).padEnd(44)} ${(r.threads === 'auto' ? `auto→${r.autoThreads}` : String(r.threads)).padStart(2)} thr ${String(Number(r.value.toPrecision(4))).padStart(10)} ${r.unit.padEnd(9)}${r.vs != null ? ` vs ${Number(r.vs.toPrecision(4))} → ratio ${r.ratio.toFixed(3)}` : ''}${r.goal ? ` (goal ≥ ${r.goal})` : ''}`);
  };
  emit({ suite: 'meta', case: 'cpu', node: process.version, build, cpu: os.cpus()[0]?.model, cores: os.cpus().length, threads: counts, allThreads, ...autoNow, loadavg: os.loadavg() });
  if (!json) console.log(`lowbit bench cpu — ${os.cpus()[0]?.model}, ${os.cpus().length} cores, node ${process.version}, wasm ${build} build, threads ${counts.join(' and ')} (all = ${allThreads}; 'auto' keeps ${autoNow.autoThreads} now, speed test ×${autoNow.autoSpeedup?.toFixed(2) ?? '-'}), load average ${os.loadavg()[0].toFixed(2)}\n`);

  // Every figure is measured for all thread counts in interleaved rounds (median per count), so
  // that a busy machine weighs on all of them alike.
  const rounds = Number(get('--rounds', '3'));
  const med = (xs) => median(xs);

  // Read bandwidth: one wasm instance over 128 MiB; t threads: t instances reading at once.
  const readers = new Map();
  for (const t of counts) readers.set(t, await parallelReader({ threads: t, bytesPerThread: t === 1 ? 128 << 20 : Math.max(64 << 20, (128 << 20) / t) }));
  const readRuns = new Map(counts.map((t) => [t, []]));
  for (let r = 0; r < 9; r++) for (const t of counts) readRuns.get(t).push(readers.get(t).round());
  for (const t of counts) await readers.get(t).close();
  const readBw = new Map(counts.map((t) => [t, med(readRuns.get(t))]));
  for (const t of counts) out({ suite: 'cpu', case: 'read_bandwidth', metric: 'bandwidth', value: readBw.get(t), unit: 'GB/s', ...speedup(readBw, t), threads: t });

  // GEMV over 8 TinyLlama MLP-sized weights (5632 x 2048, ~52 MB of nf4 in all: out of cache),
  // and a 64-token GEMM, through CpuBackend on t threads.
  const N = 5632, K = 2048, M = 64;
  const weights = [];
  const dqWeights = []; // the same weights double-quantized: absmax kept compressed, rebuilt per block
  for (let l = 0; l < 8; l++) {
    const w = new Float32Array(N * K).map((_, i) => Math.sin(i * 0.001 + l) * 0.02);
    const { packed, quantState } = quantize4bit(w, { quantType: 'nf4', blocksize: 64, shape: [N, K] });
    weights.push({ kind: '4bit', name: `w${l}`, packed, quantState });
    const dq = quantize4bit(w, { quantType: 'nf4', blocksize: 64, compressStatistics: true, shape: [N, K] });
    dqWeights.push({ kind: '4bit', name: `w${l}`, packed: dq.packed, quantState: dq.quantState });
  }
  const bytes = weights.reduce((a, w) => a + w.packed.length + w.quantState.absmaxF32().byteLength, 0);
  const setups = new Map();
  for (const t of counts) {
    const be = await CpuBackend.create({ threads: t });
    be.kernels = 'exact';
    const exactLayers = weights.map((w) => be.linear(w));
    be.kernels = 'fast';
    setups.set(t, { be, exactLayers, layers: weights.map((w) => be.linear(w)), dqLayers: dqWeights.map((w) => be.linear(w)), x: be.fromHost(new Float32Array(K).map((_, i) => Math.sin(i)), 1, K), xm: be.fromHost(new Float32Array(M * K).map((_, i) => Math.cos(i)), M, K) });
  }
  const gemvRuns = new Map(counts.map((t) => [t, []]));
  const exactRuns = new Map(counts.map((t) => [t, []]));
  const dqRuns = new Map(counts.map((t) => [t, []]));
  const gemmRuns = new Map(counts.map((t) => [t, []]));
  for (let r = 0; r < 7; r++) {
    for (const t of counts) {
      const { be, layers, exactLayers, dqLayers, x, xm } = setups.get(t);
      gemvRuns.get(t).push(bytes / time(() => layers.forEach((l) => be.linearForward(x, l)), 1) / GB);
      exactRuns.get(t).push(bytes / time(() => exactLayers.forEach((l) => be.linearForward(x, l)), 1) / GB);
      // the f32-absmax bytes over the nested layers' time: the ratio to the line above is their speed ratio
      dqRuns.get(t).push(bytes / time(() => dqLayers.forEach((l) => be.linearForward(x, l)), 1) / GB);
      if (r < 3) gemmRuns.get(t).push((2 * M * N * K) / time(() => be.linearForward(xm, layers[0]), 1) / 1e9);
    }
  }
  const gemm = new Map(counts.map((t) => [t, med(gemmRuns.get(t))]));
  for (const t of counts) {
    const gemvBw = med(gemvRuns.get(t));
    out({ suite: 'cpu', case: 'gemv_nf4_5632x2048', metric: 'effective_bandwidth', value: gemvBw, unit: 'GB/s', vs: readBw.get(t), ratio: gemvBw / readBw.get(t), goal: 0.7, threads: t });
    const exactBw = med(exactRuns.get(t));
    out({ suite: 'cpu', case: 'gemv_nf4_exact_5632x2048', metric: 'effective_bandwidth', value: exactBw, unit: 'GB/s', vs: readBw.get(t), ratio: exactBw / readBw.get(t), threads: t });
    out({ suite: 'cpu', case: 'gemv_nf4_fast_vs_exact_5632x2048', metric: 'speedup', value: gemvBw, unit: 'GB/s', vs: exactBw, ratio: gemvBw / exactBw, threads: t });
  }
  // nf4 + double quant (absmax rebuilt per block of 64 from its 8-bit code) vs nf4 with f32 absmax
  for (const t of counts) {
    const dqBw = med(dqRuns.get(t));
    out({ suite: 'cpu', case: 'gemv_nf4dq_vs_nf4_5632x2048', metric: 'speed', value: dqBw, unit: 'GB/s', vs: med(gemvRuns.get(t)), ratio: dqBw / med(gemvRuns.get(t)), threads: t });
  }
  for (const t of counts) out({ suite: 'cpu', case: `gemm_nf4_${M}x${N}x${K}`, metric: 'throughput', value: gemm.get(t), unit: 'GFLOP/s', ...speedup(gemm, t), threads: t });
  for (const { be, layers, exactLayers, dqLayers } of setups.values()) {
    for (const l of [...layers, ...exactLayers, ...dqLayers]) l.dispose();
    be.dispose();
  }
  // Dense f16 GEMV (a SmolLM2-sized tied lm_head, 57 MB) and LLM.int8 GEMV (4 x [5632, 2048],
  // 46 MB), one thread, against the one-thread read bandwidth.
  if (readBw.has(1)) {
    const vocab = 49152, dim = 576;
    const head = Linear.denseHalf(new Uint16Array(vocab * dim).map((_, i) => 0x2000 + ((i * 2654435761) >>> 20) % 0x1800 + (i & 1) * 0x8000), 'float16', vocab, dim);
    const xd = new Float32Array(dim).map((_, i) => Math.sin(i));
    for (let i = 0; i < 3; i++) head.forward(xd, 1); // past V8's baseline tier
    const f16Bw = (vocab * dim * 2) / time(() => head.forward(xd, 1), 7) / GB;
    head.free();
    out({ suite: 'cpu', case: `gemv_f16_${vocab}x${dim}`, metric: 'effective_bandwidth', value: f16Bw, unit: 'GB/s', vs: readBw.get(1), ratio: f16Bw / readBw.get(1), threads: 1 });
    const x1 = new Float32Array(K).map((_, i) => Math.sin(i));
    const int8 = Array.from({ length: 4 }, (_, l) => Linear.int8(new Int8Array(N * K).map((_, i) => (((i * 2654435761 + l) >>> 24) % 255) - 127), new Float32Array(N).fill(0.01), N, K, 0));
    for (let i = 0; i < 3; i++) int8.forEach((w) => w.forward(x1, 1));
    const int8Bw = (4 * N * K) / time(() => int8.forEach((w) => w.forward(x1, 1)), 7) / GB;
    out({ suite: 'cpu', case: `gemv_int8_${N}x${K}`, metric: 'effective_bandwidth', value: int8Bw, unit: 'GB/s', vs: readBw.get(1), ratio: int8Bw / readBw.get(1), threads: 1 });
    for (const w of int8) w.free();
  }

  // Models with random weights: one model per thread count, rounds interleaved.
  const QUANT = { nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, 'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }, 'nf4-exact': { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, int8: { loadIn8bit: true }, f16: undefined };
  const models = get('--models', 'smollm2-135m,tinyllama').split(',');
  const quants = get('--quants', Object.keys(QUANT).join(',')).split(',');
  const steps = Number(get('--decode', '16'));
  const prompt = Array.from({ length: 64 }, (_, i) => (i * 37) % 1000 + 5);
  for (const shape of models) {
    const dir = `${here}../.cache/models/${shape}-shape-f16`;
    if (!existsSync(`${dir}/model.safetensors`)) execFileSync(process.execPath, [`${here}../scripts/make-random-checkpoint.mjs`, '--shape', shape, '--out', dir], { stdio: json ? 'ignore' : 'inherit' });
    // llama.cpp on the same weights and thread counts: measured first (its own processes), its
    // rows printed beside each lowbit quant.
    const peer = args.includes('--no-peers') ? null : await llamaCppRows({ shape, dir, threads: counts.join(','), decodeSteps: steps, promptTokens: prompt.length, quants, emit, json, defer: true });
    for (const q of quants) {
      const lms = new Map();
      // 'auto' (--auto): what a user gets by default, vs one thread (its record's threads: 'auto')
      const modelCounts = args.includes('--auto') ? [...counts, 'auto'] : counts;
      for (const t of modelCounts) lms.set(t, await AutoModelForCausalLM.fromPretrained(dir, { ...(QUANT[q] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[q]) } : {}), maxPositions: 256, threads: t, ...(q === 'nf4-exact' ? { cpuKernels: 'exact' } : {}) }));
      const prefillRuns = new Map(modelCounts.map((t) => [t, []]));
      const decodeRuns = new Map(modelCounts.map((t) => [t, []]));
      for (let r = 0; r < rounds; r++) {
        for (const t of modelCounts) {
          const lm = lms.get(t);
          let s = performance.now();
          // As generate() prefills: the prompt, then only the last position's logits (and its pick).
          await lm.generate({ inputIds: prompt, maxNewTokens: 1, eosTokenIds: [] });
          prefillRuns.get(t).push(prompt.length / ((performance.now() - s) / 1000));
          s = performance.now();
          for (let i = 0; i < steps; i++) await lm.forward([(i * 11) % 1000 + 7]);
          decodeRuns.get(t).push(steps / ((performance.now() - s) / 1000));
        }
      }
      const prefill = new Map(modelCounts.map((t) => [t, med(prefillRuns.get(t))]));
      const decode = new Map(modelCounts.map((t) => [t, med(decodeRuns.get(t))]));
      for (const t of modelCounts) {
        if (t === 'auto') {
          const { threads, threadSpeedup } = lms.get(t).backend;
          lms.get(t).dispose();
          for (const [metric, m] of [['prefill', prefill], ['decode', decode]]) out({ suite: 'cpu', case: `${shape}_${q}`, metric, value: m.get(t), unit: 'tokens/s', ...speedup(m, t), threads: t, autoThreads: threads, autoSpeedup: threadSpeedup ?? null });
          continue;
        }
        const fp = lms.get(t).getMemoryFootprint().total;
        lms.get(t).dispose();
        out({ suite: 'cpu', case: `${shape}_${q}`, metric: 'prefill', value: prefill.get(t), unit: 'tokens/s', ...speedup(prefill, t), threads: t });
        out({ suite: 'cpu', case: `${shape}_${q}`, metric: 'decode', value: decode.get(t), unit: 'tokens/s', ...speedup(decode, t), threads: t });
        out({ suite: 'cpu', case: `${shape}_${q}`, metric: 'footprint', value: fp / 2 ** 20, unit: 'MiB', vs: null, ratio: null, threads: t });
        for (const [metric, v] of [['prefill', prefill.get(t)], ['decode', decode.get(t)]]) {
          const p = peer?.vs(q, metric, v, t);
          if (p && p.vs !== undefined) out({ suite: 'cpu', case: `${shape}_${q}`, metric: `${metric}_vs_llamacpp_avx2`, value: v, unit: 'tokens/s', ...p, threads: t });
        }
      }
      peer?.emitFor(q); // llama.cpp rows beside this quant
    }
  }
  if (!json) console.log(`\n  ratios: GEMV vs the read bandwidth of as many threads; read bandwidth, GEMM and tokens/s on t threads vs one thread.\n  load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (a busy machine slows the threaded figures most).\n  *_vs_llamacpp_avx2: lowbit / llama.cpp's AVX2-only build on the same weights and threads (goal >= 1 for decode).`);
}

/** vs / ratio of a t-thread figure against the one-thread figure of the same run (none for t = 1). */
function speedup(byThreads, t) {
  const one = byThreads.get(1);
  return t !== 1 && one !== undefined ? { vs: one, ratio: byThreads.get(t) / one } : { vs: null, ratio: null };
}
