#!/usr/bin/env node
// Two (or more) builds side by side in one process, rounds interleaved (a diagnostic, not a suite
// of bench/run.mjs): read bandwidth, the f16 head GEMV, the NF4 GEMV and GEMM, and SmolLM2-shaped
// nf4 prefill / decode, each build loaded from its own checkout's dist/ (e.g. a worktree of the
// previous commit). Run it in both orders: the instance loaded second tends to measure faster.
//   node bench/ab.mjs <checkoutA> <checkoutB> ...   (each needs a build and .cache/models/smollm2-135m-shape-f16)
import { pathToFileURL } from 'node:url';
const repos = process.argv.slice(2);
const GB = 1e9;
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const time = (f, reps) => { const t = []; for (let i = 0; i < reps; i++) { const s = performance.now(); f(); t.push((performance.now() - s) / 1000); } return med(t); };
const setups = [];
for (const repo of repos) {
  const L = await import(pathToFileURL(`${repo}/dist/index.js`));
  const W = await import(pathToFileURL(`${repo}/dist/wasm/pkg/lowbit_wasm.js`));
  await L.init();
  const vocab = 49152, dim = 576;
  const bits = new Uint16Array(vocab * dim).map((_, i) => 0x2000 + ((i * 2654435761) >>> 20) % 0x1800 + (i & 1) * 0x8000);
  const head = W.Linear ? W.Linear.denseHalf(bits, 'float16', vocab, dim) : W.LinearDense.fromHalf(bits, 'float16', vocab, dim);
  const xd = new Float32Array(dim).map((_, i) => Math.sin(i));
  const N = 5632, K = 2048, M = 64;
  const be = await L.CpuBackend.create({ threads: 1 });
  const layers = [];
  let bytes = 0;
  for (let l = 0; l < 4; l++) {
    const w = new Float32Array(N * K).map((_, i) => Math.sin(i * 0.001 + l) * 0.02);
    const { packed, quantState } = L.quantize4bit(w, { quantType: 'nf4', blocksize: 64, shape: [N, K] });
    bytes += packed.length + quantState.absmaxF32().byteLength;
    layers.push(be.linear({ kind: '4bit', name: `w${l}`, packed, quantState }));
  }
  const x = be.fromHost(new Float32Array(K).map((_, i) => Math.sin(i)), 1, K);
  const xm = be.fromHost(new Float32Array(M * K).map((_, i) => Math.cos(i)), M, K);
  const qb = new W.QuantBench(64 << 20, 64, 'nf4');
  const model = await L.AutoModelForCausalLM.fromPretrained(`${repo}/.cache/models/smollm2-135m-shape-f16`, { quantizationConfig: new L.BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }), threads: 1, tokenizer: false });
  setups.push({ repo, build: L.wasmBuild(), head, xd, be, layers, x, xm, bytes, qb, model, res: { head: [], nf4: [], gemm: [], read: [], decode: [], prefill: [] } });
}
const prompt = new Uint32Array(64).map((_, i) => (i * 37) % 1000 + 5);
for (let r = 0; r < 11; r++) for (const s of setups) {
  s.res.read.push((128 << 20) / time(() => s.qb.read_pass(), 3) / GB);
  s.res.head.push(49152 * 576 * 2 / time(() => s.head.forward(s.xd, 1), 3) / GB);
  s.res.nf4.push(s.bytes / time(() => s.layers.forEach((l) => s.be.linearForward(s.x, l)), 3) / GB);
  s.res.gemm.push(2 * 64 * 5632 * 2048 / time(() => s.be.linearForward(s.xm, s.layers[0]), 2) / 1e9);
  let t = performance.now();
  await s.model.forward(prompt, 0);
  s.res.prefill.push(64 / ((performance.now() - t) / 1000));
  t = performance.now();
  for (let i = 0; i < 16; i++) await s.model.forward([7 + i], 64 + i);
  s.res.decode.push(16 / ((performance.now() - t) / 1000));
}
for (const s of setups) {
  const m = (k) => med(s.res[k]);
  console.log(`${s.repo} (${s.build}): read ${m('read').toFixed(2)} GB/s | f16 head GEMV ${m('head').toFixed(2)} GB/s (${(m('head') / m('read')).toFixed(3)}) | nf4 GEMV ${m('nf4').toFixed(2)} GB/s (${(m('nf4') / m('read')).toFixed(3)}) | nf4 GEMM 64 rows ${m('gemm').toFixed(1)} GFLOP/s | SmolLM2-shape nf4 prefill ${m('prefill').toFixed(1)} tok/s, decode ${m('decode').toFixed(1)} tok/s`);
}
