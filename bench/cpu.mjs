// `npm run bench -- cpu`: CPU (wasm SIMD128, one thread) inference figures, each next to its
// reference measured in the same run:
// - 4-bit GEMV effective bandwidth (bytes of packed weights + f32 absmax per second) vs the read
//   bandwidth of the same wasm instance over a 128 MiB buffer; goal >= 0.8; likewise the dense
//   f16 and LLM.int8 GEMVs (bytes of weights per second);
// - GEMM GFLOP/s for a prefill shape (64 tokens);
// - decode and prefill tokens/s for SmolLM2-135M- and TinyLlama-1.1B-shaped models with random
//   weights (scripts/make-random-checkpoint.mjs) in nf4, nf4 + double quant, int8 and f16, with
//   each model's memory footprint.
// - llama.cpp (bench/llamacpp.mjs) on the same weights as GGUF: each lowbit quant's decode and
//   prefill ratio against its peer (nf4 / nf4-dq <-> Q4_0, int8 <-> Q8_0, f16 <-> F16) in the
//   AVX2-only build, goal >= 1.0 for decode; --no-peers skips it.
// Not here yet: multi-threading.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { init, AutoModelForCausalLM, BitsAndBytesConfig, quantize4bit } from '../dist/index.js';
import { Linear4, LinearDense, LinearInt8, QuantBench } from '../dist/wasm/pkg/lowbit_wasm.js';
import { llamaCppRows } from './llamacpp.mjs'; // llama.cpp peer

export const describe = 'CPU kernels and models: 4-bit GEMV bandwidth vs read bandwidth, GEMM GFLOP/s, decode/prefill tokens/s';
export const usage = ['options:', '  --models smollm2-135m,tinyllama   (default both)', '  --quants nf4,nf4-dq,int8,f16       (default all)', '  --decode N                         decode steps (default 16)', '  --no-peers                         skip llama.cpp (bench/llamacpp.mjs)', '  --peer-threads 1,2|all             llama.cpp thread counts (default 1, as lowbit)'].join('\n');

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
  const GB = 1e9;
  const out = (r) => {
    emit(r);
    if (!json) console.log(`  ${(r.case + ' ' + r.metric).padEnd(44)} ${String(Number(r.value.toPrecision(4))).padStart(10)} ${r.unit.padEnd(9)}${r.vs != null ? ` vs ${Number(r.vs.toPrecision(4))} → ratio ${r.ratio.toFixed(3)}` : ''}${r.goal ? ` (goal ≥ ${r.goal})` : ''}`);
  };
  emit({ suite: 'meta', case: 'cpu', node: process.version, cpu: os.cpus()[0]?.model, cores: os.cpus().length, threads: 1 });
  if (!json) console.log(`lowbit bench cpu — ${os.cpus()[0]?.model}, ${os.cpus().length} cores, node ${process.version}, one thread (wasm SIMD128)\n`);

  // Read bandwidth of this wasm instance (128 MiB buffer).
  const qb = new QuantBench(64 << 20, 64, 'nf4');
  qb.read_pass();
  const readBw = qb.input_bytes() / time(() => qb.read_pass(), 9) / GB;
  qb.free();
  out({ suite: 'cpu', case: 'read_bandwidth', metric: 'bandwidth', value: readBw, unit: 'GB/s', vs: null, ratio: null });

  // GEMV over 8 TinyLlama MLP-sized weights (5632 x 2048, ~52 MB of nf4 in all: out of cache).
  const N = 5632, K = 2048;
  const x = new Float32Array(K).map((_, i) => Math.sin(i));
  const layers = [];
  for (let l = 0; l < 8; l++) {
    const w = new Float32Array(N * K).map((_, i) => Math.sin(i * 0.001 + l) * 0.02);
    const { packed, quantState } = quantize4bit(w, { quantType: 'nf4', blocksize: 64, shape: [N, K] });
    layers.push({ lin: new Linear4(packed, quantState.absmaxF32(), 'nf4', 64, N, K), bytes: packed.length + quantState.absmaxF32().byteLength });
  }
  const bytes = layers.reduce((a, l) => a + l.bytes, 0);
  const gemvT = time(() => layers.forEach((l) => l.lin.forward(x, 1)), 7);
  const gemvBw = bytes / gemvT / GB;
  out({ suite: 'cpu', case: 'gemv_nf4_5632x2048', metric: 'effective_bandwidth', value: gemvBw, unit: 'GB/s', vs: readBw, ratio: gemvBw / readBw, goal: 0.8 });
  const M = 64;
  const xm = new Float32Array(M * K).map((_, i) => Math.cos(i));
  const gemmT = time(() => layers[0].lin.forward(xm, M), 3);
  out({ suite: 'cpu', case: `gemm_nf4_${M}x${N}x${K}`, metric: 'throughput', value: (2 * M * N * K) / gemmT / 1e9, unit: 'GFLOP/s', vs: null, ratio: null });
  for (const l of layers) l.lin.free();
  // Dense f16 GEMV (a SmolLM2-sized tied lm_head, 57 MB) and LLM.int8 GEMV (4 x [5632, 2048], 46 MB).
  const vocab = 49152, dim = 576;
  const head = LinearDense.fromHalf(new Uint16Array(vocab * dim).map((_, i) => 0x2000 + ((i * 2654435761) >>> 20) % 0x1800 + (i & 1) * 0x8000), 'float16', vocab, dim);
  const xd = new Float32Array(dim).map((_, i) => Math.sin(i));
  for (let i = 0; i < 3; i++) head.forward(xd, 1); // past V8's baseline tier
  const f16Bw = (vocab * dim * 2) / time(() => head.forward(xd, 1), 7) / GB;
  head.free();
  out({ suite: 'cpu', case: `gemv_f16_${vocab}x${dim}`, metric: 'effective_bandwidth', value: f16Bw, unit: 'GB/s', vs: readBw, ratio: f16Bw / readBw });
  const int8 = Array.from({ length: 4 }, (_, l) => new LinearInt8(new Int8Array(N * K).map((_, i) => (((i * 2654435761 + l) >>> 24) % 255) - 127), new Float32Array(N).fill(0.01), N, K, 0));
  for (let i = 0; i < 3; i++) int8.forEach((w) => w.forward(x, 1));
  const int8Bw = (4 * N * K) / time(() => int8.forEach((w) => w.forward(x, 1)), 7) / GB;
  out({ suite: 'cpu', case: `gemv_int8_${N}x${K}`, metric: 'effective_bandwidth', value: int8Bw, unit: 'GB/s', vs: readBw, ratio: int8Bw / readBw });
  for (const w of int8) w.free();

  // Models with random weights.
  const QUANT = { nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, 'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }, int8: { loadIn8bit: true }, f16: undefined };
  const models = get('--models', 'smollm2-135m,tinyllama').split(',');
  const quants = get('--quants', Object.keys(QUANT).join(',')).split(',');
  const steps = Number(get('--decode', '16'));
  for (const shape of models) {
    const dir = `${here}../.cache/models/${shape}-shape-f16`;
    if (!existsSync(`${dir}/model.safetensors`)) execFileSync(process.execPath, [`${here}../scripts/make-random-checkpoint.mjs`, '--shape', shape, '--out', dir], { stdio: json ? 'ignore' : 'inherit' });
    // llama.cpp peer: measured first, its rows printed beside each lowbit quant, lowbit's ratios against it.
    const peer = args.includes('--no-peers') ? null : await llamaCppRows({ shape, dir, threads: get('--peer-threads', '1'), decodeSteps: steps, promptTokens: 64, quants, emit, json, defer: true });
    for (const q of quants) {
      const lm = await AutoModelForCausalLM.fromPretrained(dir, { ...(QUANT[q] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[q]) } : {}), maxPositions: 256 });
      const prompt = Array.from({ length: 64 }, (_, i) => (i * 37) % 1000 + 5);
      let s = performance.now();
      await lm.forward(prompt, 0);
      const prefill = (performance.now() - s) / 1000;
      s = performance.now();
      for (let i = 0; i < steps; i++) await lm.forward([(i * 11) % 1000 + 7]);
      const decode = (performance.now() - s) / 1000;
      const fp = lm.getMemoryFootprint().total;
      lm.dispose();
      out({ suite: 'cpu', case: `${shape}_${q}`, metric: 'prefill', value: prompt.length / prefill, unit: 'tokens/s', vs: null, ratio: null, ...peer?.vs(q, 'prefill', prompt.length / prefill) });
      out({ suite: 'cpu', case: `${shape}_${q}`, metric: 'decode', value: steps / decode, unit: 'tokens/s', vs: null, ratio: null, ...peer?.vs(q, 'decode', steps / decode) });
      out({ suite: 'cpu', case: `${shape}_${q}`, metric: 'footprint', value: fp / 2 ** 20, unit: 'MiB', vs: null, ratio: null });
      peer?.emitFor(q); // llama.cpp peer rows
    }
  }
  if (!json) console.log('\n  multi-threading is not measured yet.');
}
