// The 4-bit decode GEMV on f16 activations (matmul4.wgsl F16_COMPUTE) next to the CPU's exact
// kernel, shared by the Deno (deno-webgpu-check.ts) and Chromium (browser-webgpu/main.js) runs.
// Returns { skip } when the adapter has no shader-f16, otherwise the largest |gpu - exact| over
// the bound of test/webgpu-activation-precision.test.ts (x and the code rounded to f16, products
// and 3 sums of 4 in f16: 7 roundings of 2^-11 per term; 5·2^-25·absmax per term below f16's
// normal range; the f32 sums of both sides) — <= 1 passes — and whether any output differs from
// the exact one (the f16 path really ran).
export async function f16ActivationCheck(lowbit) {
  const half = await lowbit.WebGpuBackend.create({ f16Activations: true });
  try {
    if (!half.variant.f16Activations) return { skip: 'the adapter has no shader-f16' };
    const cpu = new lowbit.CpuBackend();
    cpu.kernels = 'exact';
    let seed = 11;
    const rand = (n, scale) => Float32Array.from({ length: n }, () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32 * 2 - 1) * scale);
    const [n, k, bs] = [45, 576, 64];
    const { packed, quantState } = lowbit.quantize4bit(rand(n * k, 0.2), { quantType: 'nf4', blocksize: bs, shape: [n, k] });
    const w = { kind: '4bit', name: 'w', packed, quantState };
    const x = rand(k, 2);
    const run = async (b) => b.read(b.linearForward(b.fromHost(x, 1, k), b.linear(w)));
    const [want, got] = [await run(cpu), await run(half)];
    const deq = lowbit.dequantize4bit(packed, quantState, { outDtype: 'float32' });
    const absmax = quantState.absmaxF32();
    let worstRatio = 0;
    let differsFromExact = false;
    for (let j = 0; j < n; j++) {
      let mag = 0;
      let sub = 0;
      for (let t = 0; t < k; t++) {
        mag += Math.abs(x[t] * deq[j * k + t]);
        sub += 5 * 2 ** -25 * absmax[Math.floor((j * k + t) / bs)];
      }
      worstRatio = Math.max(worstRatio, Math.abs(got[j] - want[j]) / (7 * 2 ** -11 * mag + sub + (k + 2) * 2 ** -22 * mag));
      if (got[j] !== want[j]) differsFromExact = true;
    }
    return { worstRatio, differsFromExact, rows: got.length };
  } finally {
    half.dispose();
  }
}
