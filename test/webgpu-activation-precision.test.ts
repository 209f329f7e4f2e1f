/**
 * The 4-bit decode GEMV on integer or f16 activations.
 *
 * Integer activations (matmul4.wgsl INT_ACT: 14-bit activations per
 * block of 32, a 13-bit code table, exact i32 sums; dot4I8Packed on int8 limbs with DOT4, the same
 * integers unpacked without): within the derived bound of test/helpers/int-activations.ts of the
 * CPU's exact f32 product for every 4-bit format, plain and double-quantized absmax, whole and
 * split weights; with and without dot4I8Packed bit for bit the same; and its fusions (gate / up,
 * residual, q / k / v) the same as the separate integer GEMVs.
 *
 * f16 activations (matmul4.wgsl F16_COMPUTE, devices with `shader-f16`): within 6 f16 roundings
 * per term of the exact product, for every format; the fusions the same as the separate GEMVs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, CpuBackend, WebGpuBackend, quantize4bit, dequantize4bit, quantMap, type LoadedWeight, type Backend } from '../dist/index.js';
import { intActivationBound } from './helpers/int-activations.js';
import { testGpu } from './helpers/webgpu.js';

const env = await testGpu();
const suite = env.skip ? describe.skip : describe;
let cpu: CpuBackend;
let dot: WebGpuBackend; // INT_ACT with dot4I8Packed where the adapter has it
let unpacked: WebGpuBackend; // INT_ACT, integer sums unpacked
let f32: WebGpuBackend; // the f32 decode GEMV
let split: WebGpuBackend; // INT_ACT, weights split in parts of at most 1 KiB
let half: WebGpuBackend; // F16_COMPUTE where the device has shader-f16

beforeAll(async () => {
  if (env.skip) return;
  await init();
  cpu = new CpuBackend();
  cpu.kernels = 'exact';
  dot = await WebGpuBackend.create({ gpu: env.gpu!, intActivations: true, packedDot: true });
  unpacked = await WebGpuBackend.create({ gpu: env.gpu!, intActivations: true, packedDot: false });
  f32 = await WebGpuBackend.create({ gpu: env.gpu!, intActivations: false });
  split = await WebGpuBackend.create({ gpu: env.gpu!, intActivations: true, maxBindingSize: 1024 });
  half = await WebGpuBackend.create({ gpu: env.gpu!, intActivations: false, f16Activations: true });
});
afterAll(() => {
  for (const b of [dot, unpacked, f32, split, half]) b?.dispose();
});

function rand(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

/** x with outlier channels, as hidden states have: a few values 30x the rest. */
function withOutliers(k: number, seed: number): Float32Array {
  const x = rand(k, seed, 1);
  for (let i = 5; i < k; i += 97) x[i] = 30 * Math.sign(x[i]! || 1);
  return x;
}

/**
 * x whose 14-bit quantization is known exactly: x = q · 2^-10 with integer q in [-8191, 8191] and
 * one ±8191 per block of 32, so that the kernel's scale is 2^-10 and its codes are q.
 */
function onGrid(k: number, seed: number): { x: Float32Array; q: Int32Array } {
  const q = new Int32Array(k).map((_, i) => Math.round(rand(1, seed * 7919 + i, 1)[0]! * 8191));
  for (let c = 0; c < k; c += 32) q[c + ((seed + c) % 32)] = c % 64 ? 8191 : -8191;
  return { x: Float32Array.from(q, (v) => v * 2 ** -10), q };
}

const roundEven = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

/**
 * What the integer kernel computes for onGrid activations, in f64: Σ_c I_c · d · absmax_b / T with
 * the exact integer sums I_c = Σ q · round(code · T), and the bound of its f32 roundings (the
 * conversion of I, the scaling, the sum over k / 32 words and the reduction).
 */
function integerModel(q: Int32Array, packed: Uint8Array, absmax: Float32Array, code: Float32Array, bs: number, n: number, k: number, int4: boolean): { y: Float64Array; bound: Float64Array } {
  const T = int4 ? 7168 : 8191;
  const t = Array.from(code, (v) => roundEven(v * T));
  const y = new Float64Array(n);
  const bound = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let mag = 0;
    for (let c = 0; c < k; c += 32) {
      let I = 0;
      for (let i = c; i < c + 32; i++) {
        const flat = j * k + i;
        const byte = packed[flat >> 1]!;
        I += q[i]! * t[flat & 1 ? byte & 15 : byte >> 4]!;
      }
      const v = (I * 2 ** -10 * absmax[Math.floor((j * k + c) / bs)]!) / T;
      y[j] += v;
      mag += Math.abs(v);
    }
    bound[j] = (k / 32 + 8) * 2 ** -22 * mag + 1e-30;
  }
  return { y, bound };
}

async function forward(b: Backend, w: LoadedWeight, x: Float32Array, k: number, bias?: Float32Array): Promise<Float32Array> {
  const l = b.linear(w, bias ? { kind: 'dense', name: 'b', dtype: 'F32', shape: [bias.length], data: new Uint8Array(bias.buffer, bias.byteOffset, bias.byteLength) } : undefined);
  try {
    return await b.read(b.linearForward(b.fromHost(x, 1, k), l));
  } finally {
    l.dispose();
  }
}

suite(`4-bit decode GEMV on integer activations (${env.adapter ?? 'no adapter'})`, () => {
  it('the backends chose what the tests ask for', () => {
    expect(dot.variant.intActivations).toBe(true);
    expect(unpacked.variant.intActivations).toBe(true);
    expect(unpacked.packedDot).toBe(false);
    expect(f32.variant.intActivations).toBe(false);
    // Dawn reports packed_4x8_integer_dot_product on lavapipe; where it does not, both run unpacked
    expect(dot.packedDot).toBe(dot.adapter.wgslLanguageFeatures.includes('packed_4x8_integer_dot_product'));
  });

  // (n, k, blocksize): row groups of 8 (k = 128, 64), 64 (2112) and 32 (576) threads; blocks of
  // 32 to 256; n not a multiple of the rows per workgroup
  const SHAPES: [number, number, number][] = [[40, 128, 64], [13, 2112, 256], [6, 64, 32], [45, 576, 128]];
  for (const qt of ['nf4', 'fp4', 'int4'] as const) {
    for (const dq of [false, true]) {
      it(`${qt}${dq ? ' + double quant' : ''}: within the derived bound of the exact product, ± dot4I8Packed the same bits, split the same`, async () => {
        let differsFromF32 = false;
        for (const [n, k, bs] of SHAPES) {
          const { packed, quantState } = quantize4bit(rand(n * k, n * 31 + k, 0.2), { quantType: qt, blocksize: bs, compressStatistics: dq, shape: [n, k] });
          const w: LoadedWeight = { kind: '4bit', name: `w${n}x${k}`, packed, quantState };
          const deq = dequantize4bit(packed, quantState, { outDtype: 'float32' }) as Float32Array;
          const absmax = quantState.absmaxF32();
          for (const [xi, x] of [rand(k, k + 1, 2), withOutliers(k, k + 2)].entries()) {
            const bias = xi === 0 ? rand(n, 77, 0.1) : undefined;
            const what = `${qt}${dq ? '-dq' : ''} [${n}, ${k}] bs ${bs} x${xi}`;
            const want = await forward(cpu, w, x, k, bias);
            const got = await forward(dot, w, x, k, bias);
            const bound = intActivationBound(x, deq, absmax, bs, n, k, qt === 'int4', bias);
            for (let j = 0; j < n; j++) {
              if (!(Math.abs(got[j]! - want[j]!) <= bound[j]!)) throw new Error(`${what} row ${j}: gpu ${got[j]}, cpu ${want[j]} (bound ${bound[j]})`);
            }
            expect(Array.from(await forward(unpacked, w, x, k, bias)), `${what}: without dot4I8Packed`).toEqual(Array.from(got));
            if (k <= 2048 && (n * k) / 2 > 1024) {
              // parts start mid-weight (flat_base, block_base, nested codes from a later block)
              const s = await forward(split, w, x, k, bias);
              for (let j = 0; j < n; j++) if (!(Math.abs(s[j]! - want[j]!) <= bound[j]!)) throw new Error(`${what} split row ${j}: gpu ${s[j]}, cpu ${want[j]} (bound ${bound[j]})`);
            }
            const exact = await forward(f32, w, x, k, bias);
            if (exact.some((v, j) => v !== got[j])) differsFromF32 = true;
          }
          // the integers themselves: activations on the quantization grid give the exact I per word
          const { x, q } = onGrid(k, n + k);
          const model = integerModel(q, packed, absmax, quantMap(qt), bs, n, k, qt === 'int4');
          const got = await forward(dot, w, x, k);
          for (let j = 0; j < n; j++) {
            if (!(Math.abs(got[j]! - model.y[j]!) <= model.bound[j]!)) throw new Error(`${qt}${dq ? '-dq' : ''} [${n}, ${k}] on the grid, row ${j}: gpu ${got[j]}, integer model ${model.y[j]} (bound ${model.bound[j]})`);
          }
          expect(Array.from(await forward(unpacked, w, x, k))).toEqual(Array.from(got));
        }
        // the integer path really ran: its rounding shows somewhere
        expect(differsFromF32).toBe(true);
      });
    }
  }

  for (const which of ['integer', 'f16'] as const)
  it(`the fusions on ${which} activations: gate / up with SwiGLU, residual add and q / k / v equal the separate GEMVs`, async () => {
    const b = which === 'integer' ? dot : half;
    if (which === 'f16' && !b.variant.f16Activations) return; // no shader-f16: the f32 path runs, tested elsewhere
    const k = 320;
    const mk = (n: number, seed: number, dq: boolean) => {
      const { packed, quantState } = quantize4bit(rand(n * k, seed, 0.3), { quantType: 'nf4', blocksize: 64, compressStatistics: dq, shape: [n, k] });
      return { kind: '4bit', name: `w${seed}`, packed, quantState } as LoadedWeight;
    };
    for (const dq of [false, true]) {
      const x = withOutliers(k, 5);
      const [g, u, o] = [mk(36, 1, dq), mk(36, 2, dq), mk(k, 3, dq)];
      const [q, kk, v] = [mk(64, 4, dq), mk(32, 5, dq), mk(32, 6, dq)];
      const r = rand(k, 9, 1);
      const ls = [g, u, o, q, kk, v].map((w) => b.linear(w));
      const xa = b.fromHost(x, 1, k);
      const ra = b.fromHost(r, 1, k);
      b.resetStats();
      const fusedSwiglu = await b.read(b.linearSwiglu(xa, ls[0]!, ls[1]!));
      const fusedResidual = await b.read(b.linearResidual(xa, ls[2]!, ra));
      const qkv = b.linearForwardMany(xa, ls.slice(3));
      const fusedQkv = await Promise.all(qkv.map((y) => b.read(y)));
      const sep = await Promise.all(ls.map((l) => b.read(b.linearForward(xa, l))));
      const swiglu = sep[0]!.map((gv, i) => (gv / (1 + Math.exp(-gv))) * sep[1]![i]!);
      // (WGSL exp is not correctly rounded: 1e-5 relative, as test/webgpu.test.ts allows)
      for (let i = 0; i < swiglu.length; i++) expect(Math.abs(fusedSwiglu[i]! - swiglu[i]!), `swiglu ${i}`).toBeLessThanOrEqual(1e-5 * Math.abs(swiglu[i]!) + 1e-30);
      // the residual is added to the same f32 sum: one rounding
      for (let i = 0; i < k; i++) expect(fusedResidual[i], `residual ${i}`).toBe(Math.fround(sep[2]![i]! + r[i]!));
      for (const t of [0, 1, 2]) expect(Array.from(fusedQkv[t]!), `qkv ${t}`).toEqual(Array.from(sep[3 + t]!));
      for (const l of ls) l.dispose();
    }
  }, 600_000); // lavapipe compiles each f16 pipeline slowly on first use
});

suite(`4-bit decode GEMV on f16 activations (${env.adapter ?? 'no adapter'})`, () => {
  it('f16Activations follows shader-f16; off in the software row; integer activations win over it', async () => {
    const hasF16 = half.adapter.features.includes('shader-f16');
    expect(half.variant.f16Activations).toBe(hasF16);
    expect(f32.variant.f16Activations).toBe(false);
    const both = await WebGpuBackend.create({ gpu: env.gpu!, intActivations: true, f16Activations: true });
    try {
      // INT_ACT and F16_COMPUTE are alternatives: with both asked for, the integer path runs (bit
      // for bit the integer backend's result)
      const k = 128;
      const { packed, quantState } = quantize4bit(rand(8 * k, 4, 0.2), { quantType: 'nf4', blocksize: 64, shape: [8, k] });
      const w: LoadedWeight = { kind: '4bit', name: 'w', packed, quantState };
      const x = withOutliers(k, 3);
      expect(Array.from(await forward(both, w, x, k))).toEqual(Array.from(await forward(dot, w, x, k)));
    } finally {
      both.dispose();
    }
  });

  const SHAPES: [number, number, number][] = [[40, 128, 64], [13, 2112, 256], [45, 576, 128]];
  for (const qt of ['nf4', 'fp4', 'int4'] as const) {
    for (const dq of [false, true]) {
      it(`${qt}${dq ? ' + double quant' : ''}: within 7 f16 roundings per term of the exact product`, async () => {
        if (!half.variant.f16Activations) return; // no shader-f16: the f32 path runs, tested elsewhere
        let differsFromF32 = false;
        for (const [n, k, bs] of SHAPES) {
          const { packed, quantState } = quantize4bit(rand(n * k, n * 13 + k, 0.2), { quantType: qt, blocksize: bs, compressStatistics: dq, shape: [n, k] });
          const w: LoadedWeight = { kind: '4bit', name: `w${n}x${k}`, packed, quantState };
          const deq = dequantize4bit(packed, quantState, { outDtype: 'float32' }) as Float32Array;
          const absmax = quantState.absmaxF32();
          for (const [xi, x] of [rand(k, k + 3, 2), withOutliers(k, k + 4)].entries()) {
            const want = await forward(cpu, w, x, k);
            const got = await forward(half, w, x, k);
            for (let j = 0; j < n; j++) {
              // per term: x and the code rounded to f16, the product and 3 sums of 4 in f16 (6
              // roundings of 2^-11, and 7 for second-order terms), or below f16's normal range
              // an absolute 2^-25 each (times absmax); then the f32 sums of both sides
              let mag = 0;
              let sub = 0;
              for (let t = 0; t < k; t++) {
                mag += Math.abs(x[t]! * deq[j * k + t]!);
                sub += 5 * 2 ** -25 * absmax[Math.floor((j * k + t) / bs)]!;
              }
              const bound = 7 * 2 ** -11 * mag + sub + (k + 2) * 2 ** -22 * mag;
              if (!(Math.abs(got[j]! - want[j]!) <= bound)) throw new Error(`${qt}${dq ? '-dq' : ''} [${n}, ${k}] x${xi} row ${j}: f16 ${got[j]}, cpu ${want[j]} (bound ${bound})`);
            }
            const exact = await forward(f32, w, x, k);
            if (exact.some((v, j) => v !== got[j])) differsFromF32 = true;
          }
        }
        expect(differsFromF32).toBe(true);
      }, 600_000); // lavapipe compiles each f16 pipeline slowly on first use
    }
  }
});
