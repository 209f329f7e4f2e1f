/**
 * The per-adapter kernel variant table (ts/backends/webgpu/variants.ts): the adapter's own row is
 * chosen from what it says it is, and every row of the table — forced on this adapter — runs the
 * kernels it selects (dot4I8Packed or not for LLM.int8 and integer activations, f32 or integer
 * activations, subgroup or tree reduction and q / k / v in one dispatch for 4-bit decode) with
 * the CPU's results.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, CpuBackend, WebGpuBackend, VARIANT_TABLE, quantize4bit, dequantize4bit, int8VectorwiseQuant, type LoadedWeight, type Backend } from '../dist/index.js';
import { intActivationBound } from './helpers/int-activations.js';
import { testGpu } from './helpers/webgpu.js';

const env = await testGpu();
const suite = env.skip ? describe.skip : describe;
let cpu: CpuBackend;

beforeAll(async () => {
  if (env.skip) return;
  await init();
  cpu = new CpuBackend();
  cpu.kernels = 'exact';
});

function rand(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

const backends: WebGpuBackend[] = [];
afterAll(() => {
  for (const b of backends) b.dispose();
});

suite(`kernel variants per adapter (${env.adapter ?? 'no adapter'})`, () => {
  it("the adapter's row: the first that matches what it says it is, limited to what it has", async () => {
    const b = await WebGpuBackend.create({ gpu: env.gpu! });
    backends.push(b);
    const row = VARIANT_TABLE.find((r) => r.match(b.adapter))!;
    expect(b.variant.name).toBe(row.name);
    if (b.adapter.software) expect(b.variant.name).toBe('software');
    expect(b.variant.subgroups).toBe(row.prefer.subgroups && b.adapter.features.includes('subgroups'));
    expect(b.packedDot).toBe(row.prefer.packedDot && b.adapter.wgslLanguageFeatures.includes('packed_4x8_integer_dot_product'));
    await expect(WebGpuBackend.create({ gpu: env.gpu!, variant: 'no-such-row' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  for (const row of VARIANT_TABLE) {
    it(`row '${row.name}' forced on this adapter: 4-bit decode (q / k / v, plain) and LLM.int8 agree with the CPU`, async () => {
      const b = await WebGpuBackend.create({ gpu: env.gpu!, variant: row.name });
      backends.push(b);
      expect(b.variant.name).toBe(row.name);
      expect(b.packedDot).toBe(row.prefer.packedDot && b.adapter.wgslLanguageFeatures.includes('packed_4x8_integer_dot_product'));
      expect(b.variant.intActivations).toBe(row.prefer.intActivations);
      const k = 256;
      const ns = [64, 32, 32];
      const ws: LoadedWeight[] = ns.map((n, i) => {
        const q = quantize4bit(rand(n * k, i + 5, 0.3), { quantType: 'nf4', blocksize: 64, shape: [n, k] });
        return { kind: '4bit', name: `w${i}`, packed: q.packed, quantState: q.quantState };
      });
      const iq = int8VectorwiseQuant(rand(48 * k, 9, 0.5), { shape: [48, k] });
      ws.push({ kind: 'int8', name: 'i8', CB: iq.CB, SCB: iq.SCB, shape: [48, k] });
      const x = rand(k, 3, 2);
      let qkvDispatches = 0;
      const run = async (be: Backend) => {
        const ls = ws.map((w) => be.linear(w));
        const xa = be.fromHost(x, 1, k);
        if (be === b) b.resetStats();
        const qkv = be.linearForwardMany(xa, ls.slice(0, 3));
        if (be === b) qkvDispatches = b.stats().dispatches;
        const out = [...qkv, be.linearForward(xa, ls[3]!)];
        const r = await Promise.all(out.map((y) => be.read(y)));
        for (const l of ls) l.dispose();
        return r;
      };
      const got = await run(b);
      // q / k / v: one dispatch when the row fuses them, three otherwise
      expect(qkvDispatches).toBe(b.variant.fuseQkv ? 1 : 3);
      const want = await run(cpu);
      for (const [i, g] of got.entries()) {
        if (i < 3 && b.variant.intActivations) {
          // integer activations: the derived bound of test/helpers/int-activations.ts
          const w4 = ws[i] as Extract<LoadedWeight, { kind: '4bit' }>;
          const deq = dequantize4bit(w4.packed, w4.quantState, { outDtype: 'float32' }) as Float32Array;
          const bound = intActivationBound(x, deq, w4.quantState.absmaxF32(), 64, ns[i]!, k, false);
          for (let j = 0; j < g.length; j++) {
            if (!(Math.abs(g[j]! - want[i]![j]!) <= bound[j]!)) throw new Error(`${row.name} output ${i}[${j}] (integer activations): gpu ${g[j]}, cpu ${want[i]![j]} (bound ${bound[j]})`);
          }
          continue;
        }
        for (let j = 0; j < g.length; j++) {
          const w = want[i]![j]!;
          // the matmul bound with Σ|x w| <= k * 2 * 0.3 (4-bit) or k * 2 * 0.5 (int8)
          if (!(Math.abs(g[j]! - w) <= (k + 2) * 2 ** -22 * k + 1e-4 * Math.abs(w))) throw new Error(`${row.name} output ${i}[${j}]: gpu ${g[j]}, cpu ${w}`);
        }
      }
    });
  }
});

suite(`f16 compute for half weights (${env.adapter ?? 'no adapter'})`, () => {
  it("Dawn's NVIDIA toggle joins the create() flags", async () => {
    const { withF16Toggle } = await import('../dist/backends/webgpu/device.js');
    expect(withF16Toggle([])).toEqual(['enable-dawn-features=vulkan_enable_f16_on_nvidia']);
    expect(withF16Toggle(['enable-dawn-features=allow_unsafe_apis', 'x'])).toEqual(['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia', 'x']);
    expect(withF16Toggle(['enable-dawn-features=vulkan_enable_f16_on_nvidia'])).toEqual(['enable-dawn-features=vulkan_enable_f16_on_nvidia']);
  });

  it('f16 weights: the decode GEMV in f16 (shader-f16) is within f16 rounding of the CPU; f32 elsewhere and when off', async () => {
    const on = await WebGpuBackend.create({ gpu: env.gpu!, f16: true });
    const off = await WebGpuBackend.create({ gpu: env.gpu!, f16: false });
    backends.push(on, off);
    const hasF16 = on.adapter.features.includes('shader-f16');
    expect(on.variant.f16).toBe(hasF16);
    expect(off.variant.f16).toBe(false);
    if (!hasF16) return; // the f32 path is what runs, and the other tests cover it
    const { toHalf, fromHalf } = await import('../dist/index.js');
    for (const [n, k] of [[37, 256], [64, 1024], [5, 64]] as const) {
      const h = toHalf(rand(n * k, n + k, 0.3), 'float16');
      const values = fromHalf(h) as Float32Array;
      const w: LoadedWeight = { kind: 'dense', name: 'w', dtype: 'F16', shape: [n, k], data: new Uint8Array(h.data.buffer, h.data.byteOffset, h.data.byteLength) };
      const x = rand(k, k, 2);
      const run = async (b: Backend) => b.read(b.linearForward(b.fromHost(x, 1, k), b.linear(w)));
      const [got, exact, want] = [await run(on), await run(off), await run(cpu)];
      let differs = false;
      for (let j = 0; j < n; j++) {
        let mag = 0;
        for (let t = 0; t < k; t++) mag += Math.abs(x[t]! * values[j * k + t]!);
        // x rounded to f16 (2^-11 relative), each product rounded to f16 (2^-11), 3 f16 adds in a
        // group of 4 (3 * 2^-11 of the group's magnitude), then f32 sums: 6 * 2^-11 * Σ|x w|, with margin
        const bound = 8 * 2 ** -11 * mag;
        if (!(Math.abs(got[j]! - want[j]!) <= bound)) throw new Error(`[${n}, ${k}] row ${j}: f16 ${got[j]}, cpu ${want[j]} (bound ${bound})`);
        if (!(Math.abs(exact[j]! - want[j]!) <= (k + 2) * 2 ** -22 * mag)) throw new Error(`[${n}, ${k}] row ${j}: f32 path ${exact[j]}, cpu ${want[j]}`);
        if (got[j] !== exact[j]) differs = true;
      }
      // the f16 path really ran: its rounding shows somewhere
      if (k >= 256) expect(differs, `[${n}, ${k}]`).toBe(true);
    }
  });
});
