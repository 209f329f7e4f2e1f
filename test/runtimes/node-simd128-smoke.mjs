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

// y = x Wᵀ with the dequantized weights as the reference, on one and on two threads, with the
// exact f32 kernels and the default fast (integer activation) kernels, each within its bound
// (crates/lowbit-core/src/kernels/matmul4_int.rs; test/cpu-backend.test.ts derives the same).
const m = 3;
const x = rand(m * k, 11);
const absmax = quantState.absmaxF32();
const want = new Float64Array(m * n);
const bound = { exact: new Float64Array(m * n), fast: new Float64Array(m * n) };
for (let i = 0; i < m; i++)
  for (let j = 0; j < n; j++) {
    let mag = 0;
    let q = 0;
    for (let t = 0; t < k; t++) {
      want[i * n + j] += x[i * k + t] * back[j * k + t];
      mag += Math.abs(x[i * k + t] * back[j * k + t]);
      let amaxX = 0;
      for (let u = t - (t % 32); u < t - (t % 32) + 32; u++) amaxX = Math.max(amaxX, Math.abs(x[i * k + u]));
      q += (amaxX / 8191 / 2) * Math.abs(back[j * k + t]) + (Math.abs(x[i * k + t]) * 1.001 * absmax[Math.floor((j * k + t) / 64)]) / (2 * 127);
    }
    bound.exact[i * n + j] = (k + 8) * 2 ** -22 * mag;
    bound.fast[i * n + j] = bound.exact[i * n + j] + q;
  }
const outputs = { exact: [], fast: [] };
for (const kernels of ['exact', 'fast']) {
  for (const threads of [1, 2]) {
    const be = await CpuBackend.create({ threads, minSliceElements: 1, kernels });
    try {
      assert.equal(be.threads, threads);
      assert.equal(be.name, `wasm-${wasmBuild()}`);
      const lin = be.linear({ kind: '4bit', name: 'w', packed, quantState });
      const y = await be.read(be.linearForward(be.fromHost(x, m, k), lin));
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(y[i] - want[i]) <= bound[kernels][i], `${kernels}, threads ${threads}: y[${i}] = ${y[i]}, want ${want[i]} ± ${bound[kernels][i]}`);
      outputs[kernels].push(y);
    } finally {
      be.dispose();
    }
  }
  assert.deepEqual(outputs[kernels][1], outputs[kernels][0], `${kernels}: two threads give the bits of one`);
}
assert.notDeepEqual(outputs.fast[0], outputs.exact[0], 'the fast kernels ran (other bits than the exact ones)');
console.log(`node ${process.version}: ${wasmBuild()} build, NF4 round trip max error ${maxErr.toFixed(3)}, 4-bit matmul (exact and fast kernels) on 1 and 2 threads: ok`);
