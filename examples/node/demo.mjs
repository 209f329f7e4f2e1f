#!/usr/bin/env node
// lowbit's main job until models can run: quantize a model's weights and show what each
// format costs and loses.
//
// The weights are SYNTHETIC (no model hub is reachable from here): every linear layer of a
// SmolLM2-135M-shaped decoder (30 layers; q/k/v/o, gate/up/down) filled with Gaussian values
// (std 0.02, as Llama initializes them) plus 0.1% outliers ten times larger. The shapes, and so
// the footprint figures, are the real model's; the error figures depend on this distribution.
//
//   npm run demo                 # whole model (about 106 M weights, a few seconds per format)
//   npm run demo -- --layers 2   # fewer layers
import { init, quantize4bit, dequantize4bit, int8VectorwiseQuant, int8VectorwiseDequant, toHalf, fromHalf } from '../../dist/index.js';

const args = process.argv.slice(2);
const layersArg = args.indexOf('--layers');
const LAYERS = layersArg >= 0 ? Number(args[layersArg + 1]) : 30;
if (!Number.isInteger(LAYERS) || LAYERS < 1 || LAYERS > 30) {
  console.error('--layers must be an integer from 1 to 30');
  process.exit(2);
}

// SmolLM2-135M: hidden 576, 9 heads / 3 KV heads of 64, intermediate 1536.
const H = 576, KV = 192, I = 1536;
const LINEARS = [['q_proj', H, H], ['k_proj', KV, H], ['v_proj', KV, H], ['o_proj', H, H], ['gate_proj', I, H], ['up_proj', I, H], ['down_proj', H, I]];

function weights(rows, cols, seed) {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i += 2) {
    // Box-Muller
    const r = Math.sqrt(-2 * Math.log(u())) * 0.02, t = 2 * Math.PI * u();
    w[i] = r * Math.cos(t);
    if (i + 1 < w.length) w[i + 1] = r * Math.sin(t);
  }
  for (let k = 0; k < w.length / 1000; k++) w[Math.floor(u() * w.length)] *= 10;
  return w;
}

// Each format: bytes it stores for a [rows, cols] weight, and its reconstruction as f32.
const FORMATS = [
  { name: 'fp32', run: (w) => ({ bytes: w.byteLength, back: w }) },
  { name: 'fp16', run: (w) => { const h = toHalf(w, 'float16'); return { bytes: h.data.byteLength, back: fromHalf(h) }; } },
  { name: 'int8 (LLM.int8 rows)', run: (w, rows, cols) => {
      const r = int8VectorwiseQuant(toHalf(w, 'float16'), { shape: [rows, cols] });
      return { bytes: r.CB.byteLength + r.SCB.byteLength, back: int8VectorwiseDequant(r.CB, r.SCB, cols) };
  } },
  ...[['fp4', false], ['nf4', false], ['nf4', true], ['int4', false]].map(([qt, dq]) => ({
    name: `${qt}${dq ? ' + double quant' : ''}`,
    run: (w, rows, cols) => {
      const { packed, quantState: st } = quantize4bit(w, { quantType: qt, blocksize: 64, compressStatistics: dq, shape: [rows, cols] });
      const stateBytes = Object.values(st.toDict()).reduce((a, t) => a + t.data.byteLength, 0);
      return { bytes: packed.byteLength + stateBytes, back: dequantize4bit(packed, st, { outDtype: 'float32' }) };
    },
  })),
];

await init();
const total = { n: 0, sumsq: 0 };
const stats = FORMATS.map(() => ({ bytes: 0, errsq: 0, maxerr: 0, ms: 0 }));
const t0 = performance.now();
for (let layer = 0; layer < LAYERS; layer++) {
  for (const [name, rows, cols] of LINEARS) {
    const w = weights(rows, cols, layer * 16 + LINEARS.findIndex((l) => l[0] === name) + 1);
    total.n += w.length;
    for (const v of w) total.sumsq += v * v;
    FORMATS.forEach((f, i) => {
      const t = performance.now();
      const { bytes, back } = f.run(w, rows, cols);
      stats[i].ms += performance.now() - t;
      stats[i].bytes += bytes;
      for (let k = 0; k < w.length; k++) {
        const e = Math.abs(w[k] - back[k]);
        stats[i].errsq += e * e;
        if (e > stats[i].maxerr) stats[i].maxerr = e;
      }
    });
  }
  if (process.stderr.isTTY) process.stderr.write(`\rquantized layer ${layer + 1}/${LAYERS}`);
}
if (process.stderr.isTTY) process.stderr.write(`\r${' '.repeat(30)}\r`);

const mib = (b) => (b / 2 ** 20).toFixed(1).padStart(8);
console.log(`SmolLM2-135M-shaped linear weights, ${LAYERS} layer(s), ${(total.n / 1e6).toFixed(1)} M synthetic weights (N(0, 0.02) + 0.1% x10 outliers), blocksize 64\n`);
console.log('format                  MiB    bits/weight   rel. RMS error   max abs error   time');
FORMATS.forEach((f, i) => {
  const s = stats[i];
  const rel = Math.sqrt(s.errsq / total.sumsq);
  console.log(`${f.name.padEnd(20)} ${mib(s.bytes)}   ${((8 * s.bytes) / total.n).toFixed(3).padStart(8)}      ${rel.toExponential(2).padStart(9)}       ${s.maxerr.toExponential(2).padStart(9)}   ${(s.ms / 1000).toFixed(2).padStart(5)} s`);
});
console.log(`\n(time = quantize + dequantize in one thread of wasm SIMD128; total ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
