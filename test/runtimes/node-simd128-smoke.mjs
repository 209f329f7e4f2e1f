// The SIMD128 build on an older engine (scripts/test.sh runs this on the system's Node 20 when
// there is one; the test suite itself runs on Node 24): init() must fall back to the SIMD128
// build, and quantize / dequantize and a matmul through the CPU backend, on one thread and on
// two, must work there. Exits non-zero with a message on the first failure.
//   node test/runtimes/node-simd128-smoke.mjs
import assert from 'node:assert/strict';
import { init, wasmBuild, relaxedSimdSupported, quantize4bit, dequantize4bit, CpuBackend, LowbitError } from '../../dist/index.js';

const major = Number(process.versions.node.split('.')[0]);
// Node 20 has relaxed SIMD only behind --experimental-wasm-relaxed-simd; 21+ by default.
const relaxedExpected = major >= 21 || process.execArgv.includes('--experimental-wasm-relaxed-simd');
assert.equal(relaxedSimdSupported(), relaxedExpected, `relaxed SIMD feature test on Node ${process.version}`);

// Forcing the relaxed build where it cannot run is a typed error, and init() can still go on.
if (!relaxedExpected) {
  await assert.rejects(init({ simd: 'relaxed' }), (e) => e instanceof LowbitError && e.code === 'WASM_LOAD_FAILED');
}
await init();
assert.equal(wasmBuild(), relaxedExpected ? 'relaxed-simd' : 'simd128');

function rand(n, seed) {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1);
}

// quantize / dequantize: NF4 of uniform values in [-1, 1] is within half a code step (<= 0.16).
const [n, k] = [64, 128];
const w = rand(n * k, 7);
const { packed, quantState } = quantize4bit(w, { quantType: 'nf4', blocksize: 64, shape: [n, k] });
const back = dequantize4bit(packed, quantState);
let maxErr = 0;
for (let i = 0; i < w.length; i++) maxErr = Math.max(maxErr, Math.abs(back[i] - w[i]));
assert.ok(maxErr > 0 && maxErr < 0.17, `NF4 round trip error ${maxErr}`);

// y = x Wᵀ with the dequantized weights as the reference, on one and on two threads.
const m = 3;
const x = rand(m * k, 11);
const want = new Float64Array(m * n);
for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let t = 0; t < k; t++) want[i * n + j] += x[i * k + t] * back[j * k + t];
const outputs = [];
for (const threads of [1, 2]) {
  const be = await CpuBackend.create({ threads, minSliceElements: 1 });
  try {
    assert.equal(be.threads, threads);
    assert.equal(be.name, `wasm-${wasmBuild()}`);
    const lin = be.linear({ kind: '4bit', name: 'w', packed, quantState });
    const y = await be.read(be.linearForward(be.fromHost(x, m, k), lin));
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(y[i] - want[i]) < 1e-4 * (1 + Math.abs(want[i])), `threads ${threads}: y[${i}] = ${y[i]}, want ${want[i]}`);
    outputs.push(y);
  } finally {
    be.dispose();
  }
}
assert.deepEqual(outputs[1], outputs[0], 'two threads give the bits of one');
console.log(`node ${process.version}: ${wasmBuild()} build, NF4 round trip max error ${maxErr.toFixed(3)}, 4-bit matmul on 1 and 2 threads: ok`);
