// Decode attention against a long context on a WebGPU backend next to the CPU backend, shared
// by the Deno (deno-webgpu-check.ts) and Chromium (browser-webgpu/main.js) runs: SmolLM2-135M's
// heads (9 query, 3 kv, head_dim 64), a 600-position prefill (the ordinary kernel), then two
// decode steps that the split rule cuts into splits (attention_split + attention_combine).
// Returns the largest |gpu - cpu| / (2e-6 + 1e-5·|cpu|) (test/webgpu.test.ts's attention
// tolerance: <= 1 passes) and the dispatches of each call (1: ordinary, 2: split).
export async function splitAttentionCheck(lowbit, gpu) {
  const cpu = new lowbit.CpuBackend();
  cpu.kernels = 'exact';
  const [nHeads, nKv, hd] = [9, 3, 64];
  const calls = [600, 1, 1];
  const maxPos = 602;
  const caches = [gpu.kvCache(maxPos, nKv, hd), cpu.kvCache(maxPos, nKv, hd)];
  let seed = 7;
  const rand = (n, scale) => Float32Array.from({ length: n }, () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32 * 2 - 1) * scale);
  let worst = 0;
  const dispatches = [];
  let start = 0;
  for (const n of calls) {
    const q = rand(n * nHeads * hd, 2);
    const k = rand(n * nKv * hd, 2);
    const v = rand(n * nKv * hd, 1);
    const out = [];
    for (const [i, b] of [gpu, cpu].entries()) {
      if (i === 0) gpu.resetStats();
      const y = b.attention(b.fromHost(q, n, nHeads * hd), b.fromHost(k, n, nKv * hd), b.fromHost(v, n, nKv * hd), caches[i], start, nHeads);
      if (i === 0) dispatches.push(gpu.stats().dispatches);
      out.push(await b.read(y));
    }
    for (let j = 0; j < out[1].length; j++) worst = Math.max(worst, Math.abs(out[0][j] - out[1][j]) / (2e-6 + 1e-5 * Math.abs(out[1][j])));
    start += n;
  }
  for (const c of caches) c.dispose();
  return { worst, dispatches };
}
