#!/usr/bin/env node
// Does wasm-opt pay? Compares wasm files (e.g. the build's output before and after wasm-opt) on
// one thread, each in its own Node process (init() loads one module per process), the files
// alternating round by round so a busy machine hits them alike; medians per file:
//   - NF4 GEMV, 8 x [5632, 2048] (bench/cpu.mjs's gemv_nf4_5632x2048), fast and exact kernels;
//   - quantize4bit + dequantize4bit of 4 M weights (nf4, double quant).
//   npm exec --package=binaryen@132.0.0 -- wasm-opt -O3 ts/wasm/pkg/lowbit_wasm_bg.wasm -o /tmp/o3.wasm
//   node bench/wasm-opt.mjs [--rounds N] ts/wasm/pkg/lowbit_wasm_bg.wasm /tmp/o3.wasm   (needs dist/)
// Its result on 2026-12-06 is why build.sh does not run wasm-opt (README, Development).
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);

if (args[0] === '--child') {
  const { init, CpuBackend, quantize4bit, dequantize4bit, wasmBuild } = await import('../dist/index.js');
  await init(readFileSync(args[1]));
  const N = 5632, K = 2048;
  const be = await CpuBackend.create({ threads: 1 });
  const weights = Array.from({ length: 8 }, (_, l) => {
    const w = new Float32Array(N * K).map((_, i) => Math.sin(i * 0.001 + l) * 0.02);
    return { kind: '4bit', name: `w${l}`, ...quantize4bit(w, { quantType: 'nf4', blocksize: 64, shape: [N, K] }) };
  });
  const bytes = weights.reduce((a, w) => a + w.packed.length + w.quantState.absmaxF32().byteLength, 0);
  const x = be.fromHost(new Float32Array(K).map((_, i) => Math.sin(i)), 1, K);
  const gbps = (kernels) => {
    be.kernels = kernels;
    const layers = weights.map((w) => be.linear(w));
    const t = [];
    for (let r = 0; r < 7; r++) {
      const s = performance.now();
      for (const l of layers) be.linearForward(x, l);
      t.push(performance.now() - s);
    }
    layers.forEach((l) => l.dispose());
    return bytes / (t.sort((a, b) => a - b)[3] / 1000) / 1e9;
  };
  const fast = gbps('fast');
  const exact = gbps('exact');
  const src = new Float32Array(4 << 20).map((_, i) => Math.cos(i * 0.01) * 0.02);
  const q = [];
  for (let r = 0; r < 5; r++) {
    const s = performance.now();
    const { packed, quantState } = quantize4bit(src, { quantType: 'nf4', compressStatistics: true });
    dequantize4bit(packed, quantState, { outDtype: 'float32' });
    q.push(performance.now() - s);
  }
  be.dispose();
  console.log(JSON.stringify({ build: wasmBuild(), fast, exact, quantMs: q.sort((a, b) => a - b)[2] }));
} else {
  const roundsAt = args.indexOf('--rounds');
  const rounds = roundsAt >= 0 ? Number(args.splice(roundsAt, 2)[1]) : 3;
  const files = args;
  const runs = new Map(files.map((f) => [f, []]));
  for (let r = 0; r < rounds; r++) {
    for (const f of files) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', f], { encoding: 'utf8' });
      runs.get(f).push(JSON.parse(out.trim().split('\n').pop()));
    }
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`${rounds} rounds, one thread, node ${process.version}, medians`);
  console.log('file'.padEnd(48), 'bytes'.padStart(9), 'build'.padStart(13), 'GEMV fast GB/s', 'GEMV exact GB/s', 'quant+dequant 4M ms');
  for (const f of files) {
    const rs = runs.get(f);
    console.log(f.padEnd(48), String(statSync(f).size).padStart(9), rs[0].build.padStart(13),
      med(rs.map((x) => x.fast)).toFixed(3).padStart(14), med(rs.map((x) => x.exact)).toFixed(3).padStart(15),
      med(rs.map((x) => x.quantMs)).toFixed(1).padStart(19));
  }
}
