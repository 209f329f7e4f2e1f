#!/usr/bin/env node
// Where a decode step's time goes on one thread and on worker threads (a diagnostic, not a
// suite of bench/run.mjs): backend variants side by side in one process, rounds interleaved,
// medians per token of
//   ms      the whole forward()            linMs   linear layers + tied head (all variants)
//   runs    ops sent to the workers        ownMs   the main thread's own share of those ops
//   waitMs  waiting for the workers after the main thread's share (wake-up, late workers)
//
//   node bench/cpu-threads-profile.mjs [int8|f16|nf4|nf4-dq] ['[{"threads":1},{"threads":"auto"}]'] [steps] [rounds]
//
// Needs a build (scripts/build.sh) and the random SmolLM2-135M-shaped checkpoint that
// `npm run bench -- cpu` makes (.cache/models/smollm2-135m-shape-f16). Variants are
// CpuBackend.create() options; it patches WorkerPool.prototype.run to time the ops.
import { fileURLToPath } from 'node:url';
import { init, wasmBuild, AutoModelForCausalLM, BitsAndBytesConfig, CpuBackend } from '../dist/index.js';
import { WorkerPool } from '../dist/backends/cpu/threads/pool.js';

const QUANT = { nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, 'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }, int8: { loadIn8bit: true }, f16: undefined };
const [q = 'int8', variantsJson = '[{"threads":1},{"threads":2},{"threads":"auto"}]', stepsArg = '16', roundsArg = '5'] = process.argv.slice(2);
if (!(q in QUANT)) throw new Error(`quant must be one of ${Object.keys(QUANT).join(', ')}`);
const variants = JSON.parse(variantsJson);
const [steps, rounds] = [Number(stepsArg), Number(roundsArg)];
const dir = fileURLToPath(new URL('../.cache/models/smollm2-135m-shape-f16', import.meta.url));
await init();

const st = { runs: 0, ownMs: 0, waitMs: 0, linMs: 0 };
const run = WorkerPool.prototype.run;
WorkerPool.prototype.run = function (cmd, id, m, out, own) {
  const t0 = performance.now();
  let ownMs = 0;
  const r = run.call(this, cmd, id, m, out, () => {
    const a = performance.now();
    own();
    ownMs = performance.now() - a;
  });
  st.runs++;
  st.ownMs += ownMs;
  st.waitMs += performance.now() - t0 - ownMs;
  return r;
};
for (const name of ['linearForward', 'linearForwardMany', 'project']) {
  const f = CpuBackend.prototype[name];
  CpuBackend.prototype[name] = function (...a) {
    const t = performance.now();
    const r = f.apply(this, a);
    st.linMs += performance.now() - t;
    return r;
  };
}

const models = [];
for (const v of variants) {
  const backend = await CpuBackend.create(v);
  const lm = await AutoModelForCausalLM.fromPretrained(dir, { ...(QUANT[q] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[q]) } : {}), maxPositions: 256, backend });
  models.push({ v, backend, lm, res: [] });
}
for (let r = 0; r < rounds; r++) {
  for (const mo of models) {
    mo.lm.reset();
    await mo.lm.generate({ inputIds: [5, 6, 7, 8], maxNewTokens: 1, eosTokenIds: [] });
    for (const k in st) st[k] = 0;
    const s = performance.now();
    for (let i = 0; i < steps; i++) await mo.lm.forward([((i * 11) % 1000) + 7]);
    mo.res.push({ ms: (performance.now() - s) / steps, ...Object.fromEntries(Object.entries(st).map(([k, v]) => [k, v / steps])) });
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`smollm2-135m ${q}, wasm ${wasmBuild()}, node ${process.version}, ${steps} decode steps x ${rounds} rounds (medians per token)`);
for (const mo of models) {
  const m = Object.fromEntries(Object.keys(mo.res[0]).map((k) => [k, median(mo.res.map((x) => x[k]))]));
  const fields = Object.entries(m).map(([k, v]) => `${k} ${k === 'runs' ? v : v.toFixed(2)}`).join('  ');
  console.log(`${JSON.stringify(mo.v).padEnd(44)} threads ${mo.backend.threads}${mo.backend.threadSpeedup ? ` (test x${mo.backend.threadSpeedup.toFixed(2)})` : ''}  ${(1000 / m.ms).toFixed(1)} tok/s  ${fields}`);
  mo.lm.dispose();
  mo.backend.dispose();
}
