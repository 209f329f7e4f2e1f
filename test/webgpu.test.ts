/**
 * WebGPU backend (Dawn in Node, via the optional `webgpu` package; on CPU-only machines Mesa's
 * lavapipe prepared by scripts/setup-webgpu.sh) against the CPU backend on random inputs, then
 * the transformers parity fixtures on the GPU.
 *
 * Tolerances. Both backends form the same f32 products; they differ in the order of f32 sums
 * (tree reductions, tiles), in FMA contraction and in WGSL's exp / division / sqrt (a few ulp,
 * not correctly rounded). For a sum of K products p_k the two orders differ by at most about
 * K·2^-23·Σ|p_k| (recursive summation bound γ_K·Σ|p_k|, γ_K ≈ K·2^-24, for each of them), so
 * matmuls check |gpu - cpu| <= (K + 2)·2^-22·(Σ|p_k| + |bias|), as the Rust kernel tests do.
 * Element-wise ops and norms: relative 2e-6…1e-5 (WGSL exp within 3 + 2|x| ulp, division
 * 2.5 ulp). Lookups, copies, rows and argmax must be exact; LLM.int8 sums are exact integers,
 * so only the final float steps may differ (an ulp or two).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  init, AutoModelForCausalLM, BitsAndBytesConfig, CpuBackend, WebGpuBackend, LowbitError, ropeInvFreq, quantize4bit, dequantize4bit,
  int8VectorwiseQuant, int8VectorwiseDequant, toHalf, fromHalf, quantizeBlockwise, dequantizeBlockwise, blockwise8FromQuantized, int8Code,
  type Activation, type Backend, type DenseWeight, type LoadedWeight,
} from '../dist/index.js';
import { testGpu } from './helpers/webgpu.js';
import { expectParity, PARITY_MODELS, PARITY_VARIANTS, REFERENCE_ROOT } from './helpers/parity.js';

const env = await testGpu();
const suite = env.skip ? describe.skip : describe;

let gpu: WebGpuBackend;
let small: WebGpuBackend; // storage bindings capped at 1 KiB: every weight is split into parts; no subgroups (the tree reduction)
let cpu: CpuBackend;

beforeAll(async () => {
  if (env.skip) return;
  await init();
  cpu = new CpuBackend();
  cpu.kernels = 'exact'; // the reference: the WGSL kernels compute in f32
  gpu = await WebGpuBackend.create({ gpu: env.gpu! });
  small = await WebGpuBackend.create({ gpu: env.gpu!, maxBindingSize: 1024, subgroups: false });
});

afterAll(() => {
  gpu?.dispose();
  small?.dispose();
});

function rand(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function dense(name: string, v: Float32Array, shape: number[], dtype: 'F32' | 'F16' | 'BF16' = 'F32'): { w: DenseWeight; values: Float32Array } {
  if (dtype === 'F32') return { w: { kind: 'dense', name, dtype, shape, data: bytesOf(v) }, values: v };
  const h = toHalf(v, dtype === 'F16' ? 'float16' : 'bfloat16');
  return { w: { kind: 'dense', name, dtype, shape, data: bytesOf(h.data) }, values: fromHalf(h) };
}

/** Σ|x_k w_k| + |b| per output, in f64. */
function magnitudes(x: Float32Array, m: number, w: Float32Array, n: number, k: number, bias?: Float32Array): Float64Array {
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let a = 0;
      for (let t = 0; t < k; t++) a += Math.abs(x[i * k + t]! * w[j * k + t]!);
      mag[i * n + j] = a + (bias ? Math.abs(bias[j]!) : 0);
    }
  return mag;
}

function expectSumBound(got: Float32Array, want: Float32Array, mag: Float64Array, k: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const bound = (k + 2) * 2 ** -22 * mag[i]! + 1e-30;
    if (!(Math.abs(got[i]! - want[i]!) <= bound)) throw new Error(`${what}, element ${i}: gpu ${got[i]}, cpu ${want[i]} (bound ${bound})`);
  }
}

function expectClose(got: Float32Array, want: Float32Array, rel: number, abs: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i]! - want[i]!) <= abs + rel * Math.abs(want[i]!))) throw new Error(`${what}, element ${i}: gpu ${got[i]}, cpu ${want[i]}`);
  }
}

/** Runs `op` on both backends with the same host inputs; returns [gpu, cpu] results. */
async function both(inputs: { data: Float32Array; rows: number; cols: number }[], op: (b: Backend, xs: Activation[]) => Activation): Promise<[Float32Array, Float32Array]> {
  const run = async (b: Backend) => {
    const xs = inputs.map((i) => b.fromHost(i.data, i.rows, i.cols));
    const y = op(b, xs);
    const r = await b.read(y);
    for (const a of [...xs, y]) b.release(a);
    return r;
  };
  return [await run(gpu), await run(cpu)];
}

suite(`WebGPU backend (${env.adapter ?? 'no adapter'}) vs the CPU backend`, () => {
  it('reports the adapter and compiles every kernel', async () => {
    expect(gpu.device).toBe('webgpu');
    // subgroupAdd in the 4-bit GEMV exactly when the device has the feature; `small` never
    expect(gpu.subgroups).toBe(gpu.adapter.features.includes('subgroups'));
    expect(small.subgroups).toBe(false);
    expect(gpu.name).toMatch(/^webgpu \(/);
    const defs = ['WEIGHT_F32', 'WEIGHT_F16', 'WEIGHT_BF16'];
    await gpu.ctx.compileCheck([
      // each 4-bit variant with f32 and with double-quantized (NESTED_ABSMAX) absmax
      ...[[], ['NESTED_ABSMAX']].flatMap((nested) => [
        ['matmul4.wgsl', 'gemv', nested], ['matmul4.wgsl', 'gemm', nested], ['matmul4.wgsl', 'gemv4', nested], ['matmul4.wgsl', 'gemv4', ['GATE_UP', ...nested]], ['matmul4.wgsl', 'gemv4', ['RESIDUAL', ...nested]], ['matmul4.wgsl', 'gemv4', ['QKV', ...nested]],
        ...(gpu.subgroups ? [['matmul4.wgsl', 'gemv4', ['SUBGROUPS', ...nested]], ['matmul4.wgsl', 'gemv4', ['GATE_UP', 'SUBGROUPS', ...nested]], ['matmul4.wgsl', 'gemv4', ['RESIDUAL', 'SUBGROUPS', ...nested]], ['matmul4.wgsl', 'gemv4', ['QKV', 'SUBGROUPS', ...nested]]] : []),
      ] as [string, string, string[]][]),
      ...defs.flatMap((d) => [['matmul_dense.wgsl', 'gemv', [d]], ['matmul_dense.wgsl', 'gemm', [d]], ['matmul_dense.wgsl', 'gemv_rows', [d]], ['embedding.wgsl', 'gather', [d]], ...(gpu.subgroups ? [['matmul_dense.wgsl', 'gemv_rows', [d, 'SUBGROUPS']]] : [])] as [string, string, string[]][]),
      ...['int8_flags', 'int8_compact', 'int8_quant', 'int8_matmul', 'int8_gemv'].map((e) => ['matmul_int8.wgsl', e, []] as [string, string, string[]]),
      ...(gpu.subgroups ? [['matmul_int8.wgsl', 'int8_gemv', ['SUBGROUPS']] as [string, string, string[]]] : []),
      ...(gpu.adapter.features.includes('shader-f16') ? [['matmul_dense.wgsl', 'gemv_rows', ['WEIGHT_F16', 'F16_COMPUTE']], ['matmul_dense.wgsl', 'gemv_rows', ['WEIGHT_F16', 'F16_COMPUTE', 'SUBGROUPS']]] as [string, string, string[]][] : []),
      ['norm.wgsl', 'rms_norm', []], ['norm.wgsl', 'layer_norm', []], ['rope.wgsl', 'rope', []], ['attention.wgsl', 'attention', []], ['attention.wgsl', 'attention_split', []], ['attention.wgsl', 'attention_combine', []],
      ...['add', 'swiglu', 'silu_op', 'gelu', 'gelu_tanh', 'geglu', 'scale_op', 'softcap'].map((e) => ['elementwise.wgsl', e, []] as [string, string, string[]]),
      ['sample.wgsl', 'argmax', []], ['sample.wgsl', 'topk', []],
      ...['penalize', 'draw_sorted', 'draw_full'].map((e) => ['sample_draw.wgsl', e, []] as [string, string, string[]]),
    ]);
  });

  it('stats() counts dispatches, copies, submits, uploads and readbacks; resetStats() zeroes them', async () => {
    const n = 12;
    const k = 64;
    const { packed, quantState } = quantize4bit(rand(n * k, 5, 0.3), { quantType: 'nf4', blocksize: 64, shape: [n, k] });
    const l = gpu.linear({ kind: '4bit', name: 'w', packed, quantState });
    await gpu.synchronize();
    gpu.resetStats();
    expect(gpu.stats()).toMatchObject({ dispatches: 0, copies: 0, submits: 0, readbacks: 0, bytesRead: 0, bytesUploaded: 0 });
    const x = gpu.fromHost(rand(k, 6), 1, k); // one staged upload + one copy
    const y = gpu.linearForward(x, l); // one dispatch (gemv4, one part) + its uniform
    expect(gpu.stats()).toMatchObject({ dispatches: 1, copies: 1, submits: 0, readbacks: 0 });
    await gpu.read(y); // a copy to the staging buffer, one submit, one mapped readback of n floats
    const s = gpu.stats();
    expect(s).toMatchObject({ dispatches: 1, copies: 2, submits: 1, readbacks: 1, bytesRead: n * 4 });
    expect(s.bytesUploaded).toBeGreaterThanOrEqual(k * 4 + 48 + 64); // x, then the uniform block (params + 16 code values)
    expect(s.encodeMs).toBeGreaterThan(0);
    expect(s.submitMs).toBeGreaterThan(0);
    gpu.resetStats();
    expect(gpu.stats()).toMatchObject({ dispatches: 0, copies: 0, submits: 0, readbacks: 0, bytesRead: 0, bytesUploaded: 0, encodeMs: 0, submitMs: 0 });
    for (const a of [x, y]) gpu.release(a);
    l.dispose();
  });

  it('uniform blocks that recur are written once: a repeated decode op uploads nothing; the oldest are dropped past 4096', async () => {
    const [n, k] = [16, 64];
    const { packed, quantState } = quantize4bit(rand(n * k, 9, 0.3), { quantType: 'nf4', blocksize: 64, shape: [n, k] });
    const l = gpu.linear({ kind: '4bit', name: 'w', packed, quantState });
    const x = gpu.fromHost(rand(k, 2), 1, k);
    const first = await gpu.read(gpu.linearForward(x, l));
    gpu.resetStats();
    const again = await gpu.read(gpu.linearForward(x, l));
    expect(gpu.stats().bytesUploaded).toBe(0);
    expect(again).toEqual(first);
    l.dispose();
    // 4200 distinct blocks (RMSNorm eps values): the first ones are evicted, then asked for again
    const cols = 8;
    const xs = rand(cols, 3);
    const w = gpu.vector(new Float32Array(cols).fill(1));
    const a = gpu.fromHost(xs, 1, cols);
    const epsOf = (i: number) => 1e-6 * (1 + i);
    for (let i = 0; i < 4200; i++) gpu.release(gpu.rmsNorm(a, w, epsOf(i)));
    for (const i of [0, 1, 4199]) {
      const got = await gpu.read(gpu.rmsNorm(a, w, epsOf(i)));
      const c = cpu.vector(new Float32Array(cols).fill(1));
      const want = await cpu.read(cpu.rmsNorm(cpu.fromHost(xs, 1, cols), c, epsOf(i)));
      expectClose(got, want, 1e-5, 1e-7, `rmsNorm eps ${epsOf(i)}`);
    }
  });

  it('fromHost / read / rows / transfer are exact', async () => {
    const v = rand(7 * 5, 3);
    const a = gpu.fromHost(v, 7, 5);
    expect(await gpu.read(a)).toEqual(v);
    expect(await gpu.read(gpu.rows(a, 2, 5))).toEqual(v.slice(10, 25));
    const c = await cpu.transfer(a, gpu);
    expect(c.device).toBe('cpu');
    expect(await cpu.read(c)).toEqual(v);
    const back = await gpu.transfer(c, cpu);
    expect(await gpu.read(back)).toEqual(v);
    gpu.release(a);
    await expect(gpu.read(a)).rejects.toThrow(/released/);
  });

  for (const [dtype, storage] of [['F32', 'f32'], ['F16', 'f16'], ['BF16', 'bf16']] as const) {
    it(`embedding lookup and tied projection, ${storage} table, whole and split by rows`, async () => {
      const vocab = 37;
      const dim = 24;
      const { w } = dense('emb', rand(vocab * dim, 5, 0.5), [vocab, dim], dtype);
      const ids = Uint32Array.from([0, 36, 5, 5, 17, 1]);
      const ce = cpu.embedding(w);
      const want = await cpu.read(cpu.embed(ce, ids));
      for (const b of [gpu, small]) {
        const ge = b.embedding(w);
        expect(await b.read(b.embed(ge, ids))).toEqual(want);
        for (const m of [1, 3]) {
          const x = rand(m * dim, 9 + m);
          const got = await b.read(b.project(b.fromHost(x, m, dim), ge));
          const ref = await cpu.read(cpu.project(cpu.fromHost(x, m, dim), ce));
          const values = fromHalfOrSelf(w);
          expectSumBound(got, ref, magnitudes(x, m, values, vocab, dim), dim, `project ${storage} m=${m}`);
        }
        ge.dispose();
      }
      const ge = gpu.embedding(w);
      expect(() => gpu.embed(ge, Uint32Array.from([1, 37]))).toThrow(LowbitError);
    });
  }

  // (n, k, blocksize): k a multiple of 32 (gemv4: row groups of 8, 64, 8, 32 and 16 threads, 4
  // rows each; n not a multiple of the rows per workgroup, more 32-weight words per row than
  // threads, blocks spanning rows), k a multiple of 8 (the word-wise GEMV), ragged k (blocks
  // span rows, rows start mid-byte), k not a multiple of the blocksize
  const SHAPES4: [number, number, number][] = [[40, 128, 64], [13, 2112, 256], [6, 64, 128], [45, 576, 64], [19, 320, 64], [33, 100, 64], [24, 72, 32], [17, 257, 128]];
  for (const qt of ['nf4', 'fp4', 'int4'] as const) {
    for (const dq of [false, true]) {
      it(`4-bit ${qt}${dq ? ' + double quant' : ''} linear: GEMV and GEMM, ragged K, with bias, whole and split`, async () => {
        for (const [n, k, bs] of SHAPES4) {
          const wv = rand(n * k, n * 31 + k, 0.2);
          const { packed, quantState } = quantize4bit(wv, { quantType: qt, blocksize: bs, compressStatistics: dq, shape: [n, k] });
          const weight: LoadedWeight = { kind: '4bit', name: `w${n}x${k}`, packed, quantState };
          const deq = dequantize4bit(packed, quantState, { outDtype: 'float32' }) as Float32Array;
          const bias = rand(n, 77, 0.1);
          const bw = dense('b', bias, [n]).w;
          const cl = cpu.linear(weight, bw);
          // `small` splits rows up to 1 KiB (k <= 2048)
          for (const b of k <= 2048 ? [gpu, small] : [gpu]) {
            const gl = b.linear(weight, bw);
            expect(gl.format).toBe(`4bit-${qt}`);
            for (const m of [1, 3, 70]) {
              const x = rand(m * k, m + 11);
              const got = await b.read(b.linearForward(b.fromHost(x, m, k), gl));
              const ref = await cpu.read(cpu.linearForward(cpu.fromHost(x, m, k), cl));
              expectSumBound(got, ref, magnitudes(x, m, deq, n, k, bias), k, `${qt} [${n}, ${k}] bs ${bs} m=${m}${b === small ? ' (split)' : ''}`);
            }
            gl.dispose();
          }
        }
      });
    }
  }

  it('linearSwiglu: gate / up / SwiGLU in one dispatch for 4-bit decode (both reductions, split), the three ops otherwise', async () => {
    // (n, k, blocksize, quant type, rows of x, fused on `gpu`)
    const cases: [number, number, number, 'nf4' | 'fp4', number, boolean][] = [[37, 128, 64, 'nf4', 1, true], [10, 2112, 128, 'fp4', 1, true], [20, 72, 32, 'nf4', 1, false], [9, 64, 64, 'nf4', 3, false]];
    for (const [n, k, bs, qt, m, fused] of cases) {
      const mk = (seed: number) => {
        const { packed, quantState } = quantize4bit(rand(n * k, seed, 0.3), { quantType: qt, blocksize: bs, shape: [n, k] });
        const w: LoadedWeight = { kind: '4bit', name: `w${seed}`, packed, quantState };
        return { w, deq: dequantize4bit(packed, quantState, { outDtype: 'float32' }) as Float32Array };
      };
      const gate = mk(n + 1);
      const up = mk(n + 2);
      const x = rand(m * k, k, 2);
      // the CPU's gate and up outputs, and the matmul bound of each (see expectSumBound)
      const [cg, cu] = cpu.linearForwardMany(cpu.fromHost(x, m, k), [cpu.linear(gate.w), cpu.linear(up.w)]);
      const g = await cpu.read(cg!);
      const u = await cpu.read(cu!);
      const bg = magnitudes(x, m, gate.deq, n, k);
      const bu = magnitudes(x, m, up.deq, n, k);
      for (const b of k <= 2048 ? [gpu, small] : [gpu]) {
        const [gl, ul] = [b.linear(gate.w), b.linear(up.w)];
        const xa = b.fromHost(x, m, k);
        await b.synchronize();
        b.resetStats();
        const y = b.linearSwiglu(xa, gl, ul);
        const dispatches = b.stats().dispatches;
        if (b === gpu) expect(dispatches, `[${n}, ${k}] m=${m}`).toBe(fused ? 1 : 3);
        const got = await b.read(y);
        for (let i = 0; i < got.length; i++) {
          // silu' lies in (-0.1, 1.1): |Δ| <= 1.1 |u| Δg + |silu(g)| Δu, plus the elementwise ulps
          const s = g[i]! / (1 + Math.exp(-g[i]!));
          const want = s * u[i]!;
          const eg = (k + 2) * 2 ** -22 * bg[i]!;
          const eu = (k + 2) * 2 ** -22 * bu[i]!;
          const bound = 1.1 * (Math.abs(u[i]!) + eu) * eg + (Math.abs(s) + 1.1 * eg) * eu + 1e-5 * Math.abs(want) + 1e-30;
          if (!(Math.abs(got[i]! - want) <= bound)) throw new Error(`[${n}, ${k}] ${qt} m=${m}${b === small ? ' (split, tree)' : ''}, element ${i}: gpu ${got[i]}, cpu ${want} (bound ${bound})`);
        }
        for (const a of [xa, y]) b.release(a);
        gl.dispose();
        ul.dispose();
      }
    }
  });

  it('linearResidual: the residual add in the 4-bit decode GEMV (both reductions, split), linearForward + add otherwise', async () => {
    // (n, k, blocksize, rows of x, 4-bit (else dense), fused on `gpu`)
    const cases: [number, number, number, number, boolean, boolean][] = [[37, 128, 64, 1, true, true], [11, 2112, 64, 1, true, true], [20, 72, 32, 1, true, false], [9, 64, 64, 3, true, false], [7, 64, 64, 1, false, false]];
    for (const [n, k, bs, m, fourBit, fused] of cases) {
      const wv = rand(n * k, n + k, 0.3);
      const q = quantize4bit(wv, { quantType: 'nf4', blocksize: bs, shape: [n, k] });
      const weight: LoadedWeight = fourBit ? { kind: '4bit', name: 'w', packed: q.packed, quantState: q.quantState } : dense('w', wv, [n, k]).w;
      const wf = fourBit ? (dequantize4bit(q.packed, q.quantState, { outDtype: 'float32' }) as Float32Array) : wv;
      const bias = rand(n, 3, 0.5);
      const x = rand(m * k, k + 1, 2);
      const res = rand(m * n, n + 5, 4);
      const cl = cpu.linear(weight, dense('b', bias, [n]).w);
      const want = await cpu.read(cpu.add(cpu.fromHost(res, m, n), cpu.linearForward(cpu.fromHost(x, m, k), cl)));
      const mag = magnitudes(x, m, wf, n, k, bias);
      for (const b of k <= 2048 ? [gpu, small] : [gpu]) {
        const l = b.linear(weight, dense('b', bias, [n]).w);
        const xa = b.fromHost(x, m, k);
        const ra = b.fromHost(res, m, n);
        await b.synchronize();
        b.resetStats();
        const y = b.linearResidual(xa, l, ra);
        if (b === gpu) expect(b.stats().dispatches, `[${n}, ${k}] m=${m}`).toBe(fused ? 1 : 2);
        const got = await b.read(y);
        for (let i = 0; i < got.length; i++) {
          // the matmul bound, plus the rounding of the add
          const bound = (k + 2) * 2 ** -22 * mag[i]! + 2 ** -23 * (Math.abs(want[i]!) + Math.abs(res[i]!)) + 1e-30;
          if (!(Math.abs(got[i]! - want[i]!) <= bound)) throw new Error(`[${n}, ${k}] m=${m}${b === small ? ' (split, tree)' : ''}, element ${i}: gpu ${got[i]}, cpu ${want[i]} (bound ${bound})`);
        }
        expect(() => b.linearResidual(xa, l, b.fromHost(new Float32Array(m * (n + 1)), m, n + 1))).toThrow(LowbitError);
        for (const a of [xa, ra, y]) b.release(a);
        l.dispose();
      }
    }
  });

  it('linearForwardMany: q / k / v in one dispatch for 4-bit decode (both reductions, f32 and nested absmax), one per weight otherwise', async () => {
    // (k, [n_q, n_k, n_v], blocksize, rows of x, double quant, bias, fused on `gpu`)
    const cases: [number, [number, number, number], number, number, boolean, boolean, boolean][] = [
      [128, [64, 32, 32], 64, 1, false, false, true], [576, [576, 192, 192], 64, 1, true, false, true], [256, [36, 12, 13], 32, 1, false, false, true],
      [128, [64, 32, 32], 64, 1, false, true, false], [128, [62, 32, 32], 64, 1, false, false, false], [128, [64, 32, 32], 64, 3, false, false, false], [72, [24, 8, 8], 32, 1, false, false, false],
    ];
    for (const [k, ns, bs, m, dq, withBias, fused] of cases) {
      const ws = ns.map((n, i) => {
        const wv = rand(n * k, n + k + i, 0.3);
        const q = quantize4bit(wv, { quantType: 'nf4', blocksize: bs, compressStatistics: dq, shape: [n, k] });
        const w: LoadedWeight = { kind: '4bit', name: `w${i}`, packed: q.packed, quantState: q.quantState };
        const bias = withBias ? dense(`b${i}`, rand(n, i + 1, 0.2), [n]) : undefined;
        return { w, n, bias, deq: dequantize4bit(q.packed, q.quantState, { outDtype: 'float32' }) as Float32Array };
      });
      const x = rand(m * k, k + 3, 2);
      const cls = ws.map((w) => cpu.linear(w.w, w.bias?.w));
      const want = await Promise.all(cpu.linearForwardMany(cpu.fromHost(x, m, k), cls).map((y) => cpu.read(y)));
      for (const b of k <= 256 ? [gpu, small] : [gpu]) {
        const ls = ws.map((w) => b.linear(w.w, w.bias?.w));
        const xa = b.fromHost(x, m, k);
        await b.synchronize();
        b.resetStats();
        const ys = b.linearForwardMany(xa, ls);
        // `small` splits the weights into parts: one dispatch per part
        if (b === gpu) expect(b.stats().dispatches, `k ${k} [${ns}] m=${m}`).toBe(fused ? 1 : 3);
        for (const [i, y] of ys.entries()) {
          expectSumBound(await b.read(y), want[i]!, magnitudes(x, m, ws[i]!.deq, ws[i]!.n, k, ws[i]!.bias?.values), k, `k ${k} [${ns}] weight ${i} m=${m}${dq ? ' dq' : ''}${b === small ? ' (split, tree)' : ''}`);
        }
        for (const a of [xa, ...ys]) b.release(a);
        for (const l of ls) l.dispose();
      }
    }
  });

  it('gemv4: false keeps the generic GEMV and separate ops (same results within the matmul bound)', async () => {
    const generic = await WebGpuBackend.create({ gpu: env.gpu!, gemv4: false });
    try {
      expect(generic.gemv4).toBe(false);
      const [n, k] = [24, 128];
      const mk = (seed: number) => {
        const { packed, quantState } = quantize4bit(rand(n * k, seed, 0.3), { quantType: 'nf4', blocksize: 64, shape: [n, k] });
        return { w: { kind: '4bit', name: 'w', packed, quantState } as LoadedWeight, deq: dequantize4bit(packed, quantState, { outDtype: 'float32' }) as Float32Array };
      };
      const [gate, up] = [mk(1), mk(2)];
      const x = rand(k, 3);
      const run = async (b: WebGpuBackend) => {
        const [gl, ul] = [b.linear(gate.w), b.linear(up.w)];
        const xa = b.fromHost(x, 1, k);
        await b.synchronize();
        b.resetStats();
        const y = b.linearForward(xa, gl);
        const s = b.linearSwiglu(xa, gl, ul);
        const r = b.linearResidual(xa, gl, y);
        const dispatches = b.stats().dispatches;
        const out = [await b.read(y), await b.read(s), await b.read(r)];
        for (const a of [xa, y, s, r]) b.release(a);
        gl.dispose();
        ul.dispose();
        return { dispatches, out };
      };
      const fast = await run(gpu);
      const slow = await run(generic);
      expect(fast.dispatches).toBe(3); // gemv4, gemv4 GATE_UP, gemv4 RESIDUAL
      expect(slow.dispatches).toBe(1 + 3 + 2); // gemv; gemv, gemv, swiglu; gemv, add
      expectSumBound(slow.out[0]!, fast.out[0]!, magnitudes(x, 1, gate.deq, n, k), k, 'generic vs gemv4');
    } finally {
      generic.dispose();
    }
  });

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`dense ${dtype} linear, odd K, with and without bias, whole and split (decode: gemv_rows where K % 4 == 0)`, async () => {
      // [64, 64], [37, 256], [5, 1000]: the decode GEMV gemv_rows (16, 64 and 64 threads a row group)
      for (const [n, k] of [[19, 33], [64, 64], [37, 256], [5, 1000]] as const) {
        const { w, values } = dense('w', rand(n * k, k, 0.3), [n, k], dtype);
        const bias = rand(n, 4);
        for (const withBias of [false, true]) {
          const bw = withBias ? dense('b', bias, [n]).w : undefined;
          const cl = cpu.linear(w, bw);
          // `small` splits rows up to 1 KiB
          for (const b of k * (dtype === 'F32' ? 4 : 2) < 1000 ? [gpu, small] : [gpu]) {
            const gl = b.linear(w, bw);
            for (const m of [1, 5]) {
              const x = rand(m * k, m);
              const got = await b.read(b.linearForward(b.fromHost(x, m, k), gl));
              const ref = await cpu.read(cpu.linearForward(cpu.fromHost(x, m, k), cl));
              expectSumBound(got, ref, magnitudes(x, m, values, n, k, withBias ? bias : undefined), k, `${dtype} [${n}, ${k}] m=${m} bias=${withBias}`);
            }
          }
        }
      }
    });
  }

  for (const threshold of [6, 0]) {
    it(`LLM.int8 linear, threshold ${threshold}: outlier columns, K not a multiple of 4, whole and split`, async () => {
      for (const [n, k] of [[21, 50], [32, 96]] as const) {
        const wv = rand(n * k, k + 1, 0.5);
        const { CB, SCB } = int8VectorwiseQuant(toHalf(wv, 'float16'), { shape: [n, k] });
        const weight: LoadedWeight = { kind: 'int8', name: 'w8', CB, SCB, shape: [n, k] };
        const deq = int8VectorwiseDequant(CB, SCB, k) as Float32Array;
        const bias = rand(n, 8, 0.2);
        const bw = dense('b', bias, [n]).w;
        const cl = cpu.linear(weight, bw, { int8Threshold: threshold });
        for (const b of [gpu, small]) {
          const gl = b.linear(weight, bw, { int8Threshold: threshold });
          for (const m of [1, 4]) {
            const x = rand(m * k, 100 + m, 2);
            x[3] = 9.5; // outliers (|x| >= 6) in two columns of row 0, one of them in every row
            for (let i = 0; i < m; i++) x[i * k + 7] = -7 - i;
            const got = await b.read(b.linearForward(b.fromHost(x, m, k), gl));
            const ref = await cpu.read(cpu.linearForward(cpu.fromHost(x, m, k), cl));
            // exact integer sums; the float tail (a few roundings, FMA contraction) may differ by ulps
            expectSumBound(got, ref, magnitudes(x, m, deq, n, k, bias), 4, `int8 [${n}, ${k}] m=${m}`);
          }
        }
      }
    });
  }

  it('LLM.int8 decode GEMV (int8_gemv: row groups, both reductions, split) gives int8_matmul\'s outputs bit for bit', async () => {
    const generic = await WebGpuBackend.create({ gpu: env.gpu!, gemv4: false });
    try {
      for (const [n, k, threshold] of [[70, 1000, 6], [33, 100, 0], [9, 30, 6], [130, 2048, 6]] as const) {
        const wv = rand(n * k, n + k, 0.5);
        const { CB, SCB } = int8VectorwiseQuant(toHalf(wv, 'float16'), { shape: [n, k] });
        const weight: LoadedWeight = { kind: 'int8', name: 'w8', CB, SCB, shape: [n, k] };
        const bw = dense('b', rand(n, 4, 0.2), [n]).w;
        const x = rand(k, k + 7, 2);
        x[1] = 8; // an outlier column
        const want = await generic.read(generic.linearForward(generic.fromHost(x, 1, k), generic.linear(weight, bw, { int8Threshold: threshold })));
        // `small` splits rows up to 1 KiB
        for (const b of k <= 1024 ? [gpu, small] : [gpu]) {
          const l = b.linear(weight, bw, { int8Threshold: threshold });
          const got = await b.read(b.linearForward(b.fromHost(x, 1, k), l));
          for (let i = 0; i < n; i++) if (!Object.is(got[i], want[i])) throw new Error(`[${n}, ${k}]${b === small ? ' (split, tree)' : ''} row ${i}: ${got[i]} vs int8_matmul ${want[i]}`);
          l.dispose();
        }
      }
    } finally {
      generic.dispose();
    }
  });

  it('RMSNorm and LayerNorm', async () => {
    const rows = 5;
    const cols = 300;
    const x = rand(rows * cols, 21, 3);
    const w = rand(cols, 22);
    const bv = rand(cols, 23);
    const [g1, c1] = await both([{ data: x, rows, cols }], (b, [a]) => b.rmsNorm(a!, b.vector(w), 1e-5));
    expectClose(g1, c1, 1e-5, 1e-6, 'rmsNorm');
    const [g2, c2] = await both([{ data: x, rows, cols }], (b, [a]) => b.layerNorm(a!, b.vector(w), b.vector(bv), 1e-5));
    expectClose(g2, c2, 1e-5, 1e-5, 'layerNorm');
    const [g3, c3] = await both([{ data: x, rows, cols }], (b, [a]) => b.layerNorm(a!, b.vector(w), undefined, 1e-5));
    expectClose(g3, c3, 1e-5, 1e-5, 'layerNorm without bias');
  });

  it('RMSNorm per head (Qwen3 q/k norm): the GPU and the CPU agree, and each head equals rmsNorm of that head alone', async () => {
    const [rows, heads, headDim] = [3, 4, 16];
    const x = rand(rows * heads * headDim, 24, 3);
    const w = rand(headDim, 25);
    const [g, c] = await both([{ data: x, rows, cols: heads * headDim }], (b, [a]) => b.rmsNormHeads(a!, b.vector(w), 1e-6));
    expectClose(g, c, 1e-5, 1e-6, 'rmsNormHeads');
    const alone = await cpu.read(cpu.rmsNorm(cpu.fromHost(x, rows * heads, headDim), cpu.vector(w), 1e-6));
    expect(Array.from(c)).toEqual(Array.from(alone));
    await expect(async () => gpu.rmsNormHeads(gpu.fromHost(x, rows, heads * headDim), gpu.vector(rand(15, 26)), 1e-6)).rejects.toThrow(/do not divide/);
  });

  it('add, SiLU, SwiGLU, GELU (exact and tanh)', async () => {
    const rows = 3;
    const cols = 701;
    const a = rand(rows * cols, 31, 8);
    const c = rand(rows * cols, 32, 8);
    a[0] = 80; // large |x|: tanh / exp must not overflow to NaN
    a[1] = -80;
    const ins = [{ data: a, rows, cols }, { data: c, rows, cols }];
    const [ga, ca] = await both(ins, (b, [x, y]) => b.add(x!, y!));
    expect(ga).toEqual(ca);
    for (const [name, op, rel] of [
      ['silu', (b: Backend, x: Activation) => b.silu(x), 1e-5],
      ['gelu', (b: Backend, x: Activation) => b.gelu(x), 2e-5],
      ['geluTanh', (b: Backend, x: Activation) => b.geluTanh(x), 1e-5],
    ] as const) {
      const [g, cc] = await both(ins, (b, [x]) => op(b, x!));
      expectClose(g, cc, rel, 1e-6, name);
    }
    const [gs, cs] = await both(ins, (b, [x, y]) => b.swiglu(x!, y!));
    expectClose(gs, cs, 1e-5, 1e-6, 'swiglu');
  });

  it('RoPE (default and Llama 3 inverse frequencies, positions up to 5000)', async () => {
    const headDim = 64;
    for (const invFreq of [ropeInvFreq(headDim, 10000), ropeInvFreq(headDim, 500000, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 })]) {
      const nHeads = 3;
      const positions = Uint32Array.from([0, 1, 17, 255, 256, 4999]);
      const rows = positions.length;
      const x = rand(rows * nHeads * headDim, 41, 2);
      const [g, c] = await both([{ data: x, rows, cols: nHeads * headDim }], (b, [a]) => b.rope(a!, nHeads, positions, { headDim, invFreq }));
      // the same cos / sin and the same two products per value: FMA contraction at most
      expectClose(g, c, 2e-6, 2e-6, 'rope');
    }
    // partial rotary (12 of 16 values, Phi-4-mini) with LongRoPE's attention factor on cos / sin
    const [nHeads, hd, rot] = [3, 16, 12];
    const positions = Uint32Array.from([0, 1, 23, 24, 300]);
    const x = rand(positions.length * nHeads * hd, 43, 2);
    const spec = { headDim: hd, invFreq: ropeInvFreq(rot, 10000), rotaryDim: rot, attentionScaling: 1.2302 };
    const [g, c] = await both([{ data: x, rows: positions.length, cols: nHeads * hd }], (b, [a]) => b.rope(a!, nHeads, positions, spec));
    expectClose(g, c, 2e-6, 2e-6, 'partial rope');
    for (let r = 0; r < positions.length * nHeads; r++) expect(Array.from(g.subarray(r * hd + rot, (r + 1) * hd))).toEqual(Array.from(x.subarray(r * hd + rot, (r + 1) * hd)));
  });

  it('attention: GQA prefill then decode into the cache, head_dim 16 and 80, a context longer than one chunk', async () => {
    for (const [nHeads, nKv, hd, chunks] of [[4, 2, 16, [5, 1, 1, 3]], [3, 3, 80, [2, 1]], [2, 1, 8, [600, 1, 7]]] as const) {
      const maxPos = 640;
      const caches = [gpu.kvCache(maxPos, nKv, hd), cpu.kvCache(maxPos, nKv, hd)] as const;
      let start = 0;
      for (const [ci, n] of chunks.entries()) {
        const q = rand(n * nHeads * hd, 50 + ci);
        const k = rand(n * nKv * hd, 60 + ci);
        const v = rand(n * nKv * hd, 70 + ci);
        const res: Float32Array[] = [];
        for (const [bi, b] of ([gpu, cpu] as const).entries()) {
          const y = b.attention(b.fromHost(q, n, nHeads * hd), b.fromHost(k, n, nKv * hd), b.fromHost(v, n, nKv * hd), caches[bi]!, start, nHeads);
          res.push(await b.read(y));
        }
        expectClose(res[0]!, res[1]!, 1e-5, 2e-6, `attention ${nHeads}/${nKv}x${hd} chunk ${ci} (start ${start}, n ${n})`);
        start += n;
      }
      expect(() => gpu.attention(gpu.fromHost(new Float32Array(nHeads * hd), 1, nHeads * hd), gpu.fromHost(new Float32Array(nKv * hd), 1, nKv * hd), gpu.fromHost(new Float32Array(nKv * hd), 1, nKv * hd), caches[0], maxPos, nHeads)).toThrow(/capacity/);
    }
  });

  it('attention with soft-capping and a sliding window (Gemma 2 / 3): prefill past the window, then decode', async () => {
    const [nHeads, nKv, hd, maxPos] = [4, 2, 16, 64];
    for (const extras of [{ softcap: 1.5 }, { window: 5 }, { softcap: 2, window: 3 }, { window: 1 }]) {
      const caches = [gpu.kvCache(maxPos, nKv, hd), cpu.kvCache(maxPos, nKv, hd)] as const;
      const plain = cpu.kvCache(maxPos, nKv, hd);
      let start = 0;
      for (const [ci, n] of [12, 1, 1, 7].entries()) {
        // scores well above the caps: scale 0.9 on values of size ~3
        const q = rand(n * nHeads * hd, 80 + ci, 3);
        const k = rand(n * nKv * hd, 90 + ci, 3);
        const v = rand(n * nKv * hd, 100 + ci);
        const res: Float32Array[] = [];
        for (const [bi, b] of ([gpu, cpu] as const).entries()) {
          res.push(await b.read(b.attention(b.fromHost(q, n, nHeads * hd), b.fromHost(k, n, nKv * hd), b.fromHost(v, n, nKv * hd), caches[bi]!, start, nHeads, 0.9, extras)));
        }
        expectClose(res[0]!, res[1]!, 1e-5, 2e-6, `attention ${JSON.stringify(extras)} chunk ${ci}`);
        // and the extras change the result (the window / cap are in effect)
        const without = await cpu.read(cpu.attention(cpu.fromHost(q, n, nHeads * hd), cpu.fromHost(k, n, nKv * hd), cpu.fromHost(v, n, nKv * hd), plain, start, nHeads, 0.9));
        if (start + n > (extras.window ?? Infinity) || extras.softcap !== undefined) expect(maxDiff(without, res[1]!)).toBeGreaterThan(1e-3);
        start += n;
      }
    }
    const c = cpu.kvCache(8, 1, 4);
    const x = () => cpu.fromHost(new Float32Array(4), 1, 4);
    for (const bad of [{ softcap: 0 }, { softcap: -1 }, { window: 0 }, { window: 1.5 }]) {
      expect(() => cpu.attention(x(), x(), x(), c, 0, 1, undefined, bad)).toThrow(/softcap|window/);
      expect(() => gpu.attention(gpu.fromHost(new Float32Array(4), 1, 4), gpu.fromHost(new Float32Array(4), 1, 4), gpu.fromHost(new Float32Array(4), 1, 4), gpu.kvCache(8, 1, 4), 0, 1, undefined, bad)).toThrow(/softcap|window/);
    }
  });

  it('attention split over the context (flash decoding): decode against long contexts by the rule, splits forced on and off, GQA, window, softcap, head_dim 256', async () => {
    // [nHeads, nKv, hd, calls (new tokens per call), forced splits (undefined: the rule), extras, decode calls split by the rule]
    const cases = [
      // SmolLM2-135M's heads: 9 query, 3 kv, 64 wide; a 700-position prefill (not split), then decode of 1 and 3 tokens (split)
      [9, 3, 64, [700, 1, 3, 1], undefined, {}, true],
      // the same forced off: the ordinary kernel on the whole context
      [9, 3, 64, [700, 1], 1, {}, false],
      // forced splits that do not divide the span, on prefill and decode; head_dim 256 (4 outputs per lane)
      [4, 2, 256, [300, 1, 2], 7, {}, true],
      [6, 2, 80, [13, 1, 5], 3, { softcap: 1.5 }, true],
      // a sliding window: whole splits outside some tokens' window (forced), and by the rule over a window of 300
      [4, 2, 16, [12, 1, 7], 4, { softcap: 2, window: 5 }, true],
      [4, 1, 32, [640, 1, 2], undefined, { window: 300 }, true],
    ] as const;
    for (const [nHeads, nKv, hd, calls, force, extras, decodeSplits] of cases) {
      const maxPos = calls.reduce((a, b) => a + b, 0);
      const caches = [gpu.kvCache(maxPos, nKv, hd), cpu.kvCache(maxPos, nKv, hd)] as const;
      let start = 0;
      try {
        gpu.attentionSplits = force;
        for (const [ci, n] of calls.entries()) {
          const q = rand(n * nHeads * hd, 120 + ci, 2);
          const k = rand(n * nKv * hd, 130 + ci, 2);
          const v = rand(n * nKv * hd, 140 + ci);
          const res: Float32Array[] = [];
          for (const [bi, b] of ([gpu, cpu] as const).entries()) {
            gpu.resetStats();
            const y = b.attention(b.fromHost(q, n, nHeads * hd), b.fromHost(k, n, nKv * hd), b.fromHost(v, n, nKv * hd), caches[bi]!, start, nHeads, undefined, extras);
            // the split path is two dispatches (attention_split, attention_combine), the ordinary one
            if (bi === 0) expect(gpu.stats().dispatches, `dispatches of call ${ci}`).toBe(ci === 0 && force === undefined ? 1 : decodeSplits ? 2 : 1);
            res.push(await b.read(y));
          }
          expectClose(res[0]!, res[1]!, 1e-5, 2e-6, `split attention ${nHeads}/${nKv}x${hd} splits ${force ?? 'rule'} ${JSON.stringify(extras)} call ${ci} (start ${start}, n ${n})`);
          start += n;
        }
      } finally {
        gpu.attentionSplits = undefined;
      }
    }
    for (const bad of [0, 1.5, 5000]) await expect(WebGpuBackend.create({ gpu: env.gpu!, attentionSplits: bad })).rejects.toThrow(/attentionSplits/);
  });

  it('geglu, scale and softcap (Gemma) agree with the CPU, and the CPU with their definitions', async () => {
    const gate = rand(3 * 70, 110, 4);
    const up = rand(3 * 70, 111, 2);
    const [g1, c1] = await both([{ data: gate, rows: 3, cols: 70 }, { data: up, rows: 3, cols: 70 }], (b, [a, u]) => b.geglu(a!, u!));
    expectClose(g1, c1, 1e-5, 1e-6, 'geglu');
    const [g2, c2] = await both([{ data: gate, rows: 3, cols: 70 }], (b, [a]) => b.scale(a!, Math.sqrt(2304)));
    expectClose(g2, c2, 0, 0, 'scale');
    const [g3, c3] = await both([{ data: gate, rows: 3, cols: 70 }], (b, [a]) => b.softcap(a!, 2.5));
    expectClose(g3, c3, 1e-5, 1e-6, 'softcap');
    for (let i = 0; i < gate.length; i++) {
      const t = 0.5 * gate[i]! * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (gate[i]! + 0.044715 * gate[i]! ** 3)));
      expect(Math.abs(c1[i]! - t * up[i]!)).toBeLessThanOrEqual(1e-5 * Math.abs(t * up[i]!) + 1e-6);
      expect(c2[i]).toBe(Math.fround(gate[i]! * Math.fround(48)));
      expect(Math.abs(c3[i]! - 2.5 * Math.tanh(gate[i]! / 2.5))).toBeLessThanOrEqual(1e-6);
    }
    expect(() => cpu.softcap(cpu.fromHost(gate, 3, 70), 0)).toThrow(/positive/);
    expect(() => gpu.scale(gpu.fromHost(gate, 3, 70), NaN)).toThrow(/finite/);
  });

  it('4-bit quantization on the GPU gives the CPU quantizer\'s bytes: ties, zero blocks, partial blocks, odd n, chunks', async () => {
    const cases: [string, Float32Array][] = [];
    const r = rand(3 * 4096 + 37, 5, 3);
    r.fill(0, 64, 4096 + 64); // all-zero full blocks at every blocksize up to 4096
    cases.push(['random + zero blocks + partial block (odd n)', r]);
    const z = rand(200, 6);
    z.fill(0, 192); // an all-zero final partial block (absmax stored as 1e-38)
    cases.push(['zero partial block', z]);
    // values on and one ulp around every midpoint of every code table, with absmax 1 (ties)
    for (const qt of ['nf4', 'fp4', 'int4'] as const) {
      const code = Array.from(quantize4bit(new Float32Array([1]), { quantType: qt }).quantState.code).sort((a, b) => a - b);
      const v: number[] = [1, -1];
      for (let i = 0; i < 15; i++) {
        const m = Math.fround((code[i]! + code[i + 1]!) / 2);
        if (m === 0) {
          // FP4's midpoint between -0 and +0: both zeros and the smallest normals (subnormal y
          // is the documented exception)
          v.push(-0, 0, 2 ** -126, -(2 ** -126));
          continue;
        }
        const u = new Float32Array([m]);
        const bits = new Uint32Array(u.buffer);
        for (const d of [-1, 0, 1]) {
          const b = new Uint32Array([bits[0]! + d]);
          v.push(new Float32Array(b.buffer)[0]!);
        }
      }
      cases.push([`${qt} midpoints ±1 ulp`, Float32Array.from(v)]);
    }
    // full blocks where x * f32(1/absmax) and x / absmax fall on different sides of a midpoint
    // (so reciprocal-then-multiply and true division give different codes), then the same
    // values again in the final partial block, where division is the rule
    for (const qt of ['nf4', 'fp4'] as const) {
      const code = Array.from(quantize4bit(new Float32Array([1]), { quantType: qt }).quantState.code).sort((a, b) => a - b);
      const mids = Array.from({ length: 15 }, (_, i) => Math.fround((code[i]! + code[i + 1]!) / 2));
      const enc = (y: number) => mids.filter((m) => y > m).length;
      const split: number[] = [];
      for (const a of [3, 0.7, 1.9, 5.3, 0.37, 2.2]) {
        const af = Math.fround(a);
        const r = Math.fround(1 / af);
        for (const m of mids) {
          const c = new Float32Array([m * af]);
          const bits = new Uint32Array(c.buffer);
          const b0 = bits[0]!;
          for (let d = -8; d <= 8; d++) {
            bits[0] = b0 + d;
            const x = c[0]!;
            if (Math.abs(x) <= af && enc(Math.fround(x * r)) !== enc(Math.fround(x / af))) split.push(af, x); // each block holds its absmax
          }
        }
      }
      expect(split.length, `${qt}: found values that tell reciprocal from division`).toBeGreaterThan(4);
      // blocks of 32: [a, x, a, x, ...] has absmax = max a of the block; keep one absmax per block
      const blocks: number[] = [];
      for (let i = 0; i < split.length; i += 2) blocks.push(split[i]!, ...new Array(30).fill(0), split[i + 1]!);
      const partial = split.slice(0, 2);
      cases.push([`${qt} reciprocal vs division`, Float32Array.from([...blocks, ...partial])]);
    }
    const half = toHalf(rand(1000, 7), 'bfloat16');
    for (const b of [gpu, small]) {
      for (const qt of ['nf4', 'fp4', 'int4'] as const) {
        for (const bs of [32, 64, 256, 4096]) {
          for (const [name, x] of cases) {
            const want = quantize4bit(x, { quantType: qt, blocksize: bs });
            const got = await b.quantize4bit(x, { quantType: qt, blocksize: bs });
            const what = `${name}, ${qt}, blocksize ${bs}${b === small ? ' (small bindings)' : ''}`;
            expect(Buffer.from(got.packed).toString('hex'), what).toBe(Buffer.from(want.packed).toString('hex'));
            expect(Buffer.from(new Uint8Array((got.quantState.absmax as Float32Array).buffer)).toString('hex'), what).toBe(Buffer.from(new Uint8Array((want.quantState.absmax as Float32Array).buffer)).toString('hex'));
            expect(got.quantState.toJSONString(), what).toBe(want.quantState.toJSONString());
          }
        }
      }
      const hw = quantize4bit(half, { quantType: 'nf4', blocksize: 64, shape: [10, 100] });
      const hg = await b.quantize4bit(half, { quantType: 'nf4', blocksize: 64, shape: [10, 100] });
      expect(hg.packed).toEqual(hw.packed);
      expect(hg.quantState.toJSONString()).toBe(hw.quantState.toJSONString());
    }
    const bad = rand(100, 1);
    bad[42] = NaN;
    await expect(gpu.quantize4bit(bad)).rejects.toMatchObject({ code: 'NON_FINITE', index: 42 });
  });

  it('argmax on the device: first index on ties, same as the CPU', async () => {
    const x = rand(4 * 1000, 91);
    x[17] = 5;
    x[400] = 5; // tie in row 0: 17 wins
    x[1000 + 999] = 7;
    x[3000] = 9;
    const a = gpu.fromHost(x, 4, 1000);
    const g = await gpu.argmax(a);
    const c = await cpu.argmax(cpu.fromHost(x, 4, 1000));
    expect(Array.from(g)).toEqual(Array.from(c));
    expect(g[0]).toBe(17);
    expect(g[1]).toBe(999);
    expect(g[3]).toBe(0);
  });

  it('topK on the device: the k largest in stable descending order, same as the CPU', async () => {
    const x = rand(5000, 92);
    x[10] = 3;
    x[20] = 3; // a tie: 10 before 20
    x[4000] = 3;
    x[7] = 4;
    for (const k of [1, 3, 5, 64]) {
      const g = await gpu.topK(gpu.fromHost(x, 1, 5000), k);
      const c = await cpu.topK(cpu.fromHost(x, 1, 5000), k);
      expect(Array.from(g.indices), `k=${k}`).toEqual(Array.from(c.indices));
      expect(Array.from(g.values), `k=${k}`).toEqual(Array.from(c.values));
    }
    const c = await cpu.topK(cpu.fromHost(x, 1, 5000), 4);
    expect(Array.from(c.indices)).toEqual([7, 10, 20, 4000]);
    await expect(gpu.topK(gpu.fromHost(x, 1, 5000), 0)).rejects.toThrow(LowbitError);
  });

  it('topK with NaN and k past the non-NaN values: NaN last in index order, as on the CPU', async () => {
    const rows: Float32Array[] = [Float32Array.of(NaN, 1, NaN, 2), Float32Array.of(NaN, NaN, NaN), Float32Array.from({ length: 600 }, (_, i) => (i % 7 === 0 ? i % 5 : NaN))];
    for (const x of rows) {
      for (const k of new Set([x.length, Math.ceil(x.length / 2), 1])) {
        const g = await gpu.topK(gpu.fromHost(x, 1, x.length), k);
        const c = await cpu.topK(cpu.fromHost(x, 1, x.length), k);
        expect(Array.from(g.indices), `${x.length} k=${k}`).toEqual(Array.from(c.indices));
        expect(Array.from(g.values), `${x.length} k=${k}`).toEqual(Array.from(c.values));
      }
    }
    expect(Array.from((await gpu.topK(gpu.fromHost(rows[0]!, 1, 4), 4)).indices)).toEqual([3, 1, 0, 2]);
  });

  it('tidy releases what a step made, except its result; buffers are reused', async () => {
    const x = gpu.fromHost(rand(64, 1), 8, 8);
    let inner: Activation | undefined;
    const out = gpu.tidy(() => {
      inner = gpu.add(x, x);
      return gpu.add(inner, x);
    });
    await expect(gpu.read(inner!)).rejects.toThrow(/released/);
    const v = await gpu.read(out);
    expect(v[0]).toBeCloseTo(3 * (await gpu.read(x))[0]!, 6);
    const before = gpu.ctx.pooledBytes;
    gpu.release(out);
    expect(gpu.ctx.pooledBytes).toBeGreaterThan(before);
  });

  it('rejects bad shapes, foreign activations and released handles with LowbitError', async () => {
    const a = gpu.fromHost(new Float32Array(6), 2, 3);
    const b = gpu.fromHost(new Float32Array(4), 2, 2);
    expect(() => gpu.add(a, b)).toThrow(/differ/);
    expect(() => gpu.add(a, cpu.fromHost(new Float32Array(6), 2, 3))).toThrow(/transfer it first/);
    const v = gpu.vector(new Float32Array(3));
    expect(() => gpu.rmsNorm(b, v, 1e-5)).toThrow(LowbitError);
    const l = gpu.linear(dense('w', rand(6, 1), [2, 3]).w);
    expect(() => gpu.linearForward(b, l)).toThrow(/columns/);
    l.dispose();
    expect(() => gpu.linearForward(a, l)).toThrow(/disposed/);
    // one row of 600 f32 does not fit in a 1 KiB binding: rows are the unit of splitting
    expect(() => small.linear(dense('w', rand(600, 1), [1, 600]).w)).toThrow(/binding limit/);
  });
});

function fromHalfOrSelf(w: DenseWeight): Float32Array {
  if (w.dtype === 'F32') return new Float32Array(w.data.buffer, w.data.byteOffset, w.data.byteLength / 4);
  const u = new Uint16Array(w.data.slice().buffer);
  return fromHalf({ dtype: w.dtype === 'F16' ? 'float16' : 'bfloat16', data: u });
}

// --- parity with transformers on the GPU (the fixtures and tolerances of parity.test.ts) -------

const FIXTURES = REFERENCE_ROOT;
const MODELS = PARITY_MODELS;
const VARIANTS = PARITY_VARIANTS;

suite('WebGPU parity with transformers (deviceMap "gpu")', () => {
  for (const model of MODELS) {
    const ref = JSON.parse(readFileSync(`${FIXTURES}${model}/reference.json`, 'utf8'));
    for (const [variant, q] of Object.entries(VARIANTS)) {
      it(`${model} ${variant}`, async () => {
        const m = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${model}`, { deviceMap: 'gpu', gpu: env.gpu!, ...(q ? { quantizationConfig: new BitsAndBytesConfig(q) } : {}) });
        expect(m.backend.device).toBe('webgpu');
        const ours = await m.forward(ref.input_ids, 0);
        expectParity(model, variant, ours);
        if (variant === 'fp32') {
          // 32 greedy tokens (argmax on the device): transformers' and the CPU backend's
          const tokens = await m.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] });
          expect(tokens).toEqual(ref.fp32.greedy_tokens);
          const c = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${model}`, { deviceMap: 'cpu' });
          expect(await c.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] })).toEqual(tokens);
          c.dispose();
        }
        m.dispose();
      });
    }
  }

  it('top-k sampling picks on the device: every token is among the top k of the CPU\'s logits', async () => {
    const ref = JSON.parse(readFileSync(`${FIXTURES}llama/reference.json`, 'utf8'));
    const g = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'gpu', gpu: env.gpu! });
    const c = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'cpu' });
    const k = 5;
    const runs: number[][] = [];
    for (const seed of [1, 2, 3]) {
      const tokens = await g.generate({ inputIds: ref.input_ids, maxNewTokens: 16, eosTokenIds: [], doSample: true, topK: k, temperature: 1.5, seed });
      expect(tokens).toHaveLength(16);
      // teacher-forced on the CPU: the logits before each sampled token
      const logits = await c.forward([...ref.input_ids, ...tokens.slice(0, -1)], 0);
      const vocab = g.config.vocabSize;
      for (const [t, id] of tokens.entries()) {
        const row = logits.subarray((ref.input_ids.length - 1 + t) * vocab, (ref.input_ids.length + t) * vocab);
        const kth = [...row].sort((a, b) => b - a)[k - 1]!;
        expect(row[id]!, `seed ${seed}, token ${t}`).toBeGreaterThanOrEqual(kth - 1e-4);
      }
      runs.push(tokens);
    }
    // it samples: different seeds, different sequences
    expect(new Set(runs.map((r) => r.join(','))).size).toBeGreaterThan(1);
    g.dispose();
    c.dispose();
  });

  it('4-bit decode through the fused kernels (q / k / v, gate / up / SwiGLU, residual; nested absmax) gives the CPU\'s greedy tokens', async () => {
    const ref = JSON.parse(readFileSync(`${FIXTURES}llama/reference.json`, 'utf8'));
    const q = { quantizationConfig: new BitsAndBytesConfig(PARITY_VARIANTS['nf4-dq']!) };
    const g = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'gpu', gpu: env.gpu!, ...q });
    // the CPU's exact kernels (f32, as the WGSL ones); its default fast kernels round activations
    const c = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'cpu', cpuKernels: 'exact', ...q });
    const b = g.backend as WebGpuBackend;
    await g.generate({ inputIds: ref.input_ids, maxNewTokens: 1, eosTokenIds: [] });
    b.resetStats();
    const tokens = await g.generate({ inputIds: ref.input_ids, maxNewTokens: 17, eosTokenIds: [] });
    const perToken = b.stats().dispatches;
    expect(tokens).toEqual(await c.generate({ inputIds: ref.input_ids, maxNewTokens: 17, eosTokenIds: [] }));
    // the same decode without the fusions takes more dispatches
    const plain = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'gpu', gpu: env.gpu!, webgpu: { gemv4: false }, ...q });
    const pb = plain.backend as WebGpuBackend;
    expect(pb.gemv4).toBe(false);
    pb.resetStats();
    expect(await plain.generate({ inputIds: ref.input_ids, maxNewTokens: 17, eosTokenIds: [] })).toEqual(tokens);
    expect(perToken).toBeLessThan(pb.stats().dispatches);
    for (const m of [g, c, plain]) m.dispose();
  });

  it('the model owns the backend it made: dispose() destroys the device', async () => {
    const m = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: { '': 'gpu' }, gpu: env.gpu! });
    const b = m.backend as WebGpuBackend;
    m.dispose();
    expect(() => b.fromHost(new Float32Array(1), 1, 1)).toThrow(/disposed/);
  });

});

// --- device maps: modules split between the GPU and the CPU; CPU fallback on device loss ------

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

suite('deviceMap: models split between WebGPU and the CPU', () => {
  const ALTERNATING: Record<string, Record<string, 'cpu' | 'gpu'>> = {
    llama: { 'model.embed_tokens': 'cpu', 'model.layers.0': 'gpu', 'model.layers.1': 'cpu', 'model.norm': 'gpu', lm_head: 'cpu' },
    // tied lm_head away from wte: a copy of the table on the GPU
    gpt2: { 'transformer.wte': 'cpu', 'transformer.wpe': 'gpu', 'transformer.h.0': 'cpu', 'transformer.h.1': 'gpu', 'transformer.ln_f': 'cpu', lm_head: 'gpu' },
    qwen2: { '': 'gpu', 'model.layers.1': 'cpu', 'model.layers.1.mlp': 'gpu' },
    // Gemma 2's tied head away from its (scaled) embedding, soft-capped on the GPU; sliding layer 0 on the GPU
    gemma2: { 'model.embed_tokens': 'cpu', 'model.layers.0': 'gpu', 'model.layers.1': 'cpu', 'model.norm': 'cpu', lm_head: 'gpu' },
    // tied head away from the embedding; generation crosses LongRoPE's original length (24), so
    // the cache of both devices is recomputed with the long factors
    'phi4-mini': { 'model.embed_tokens': 'cpu', 'model.layers.0': 'gpu', 'model.layers.1': 'cpu', 'model.norm': 'gpu', lm_head: 'gpu' },
    olmo2: { 'model.embed_tokens': 'gpu', 'model.layers.0': 'cpu', 'model.layers.1': 'gpu', 'model.norm': 'cpu', lm_head: 'gpu' },
  };
  for (const [name, map] of Object.entries(ALTERNATING)) {
    it(`${name}: a per-module map gives the CPU model's greedy tokens and logits`, async () => {
      const ref = JSON.parse(readFileSync(`${FIXTURES}${name}/reference.json`, 'utf8'));
      if (name === 'qwen2') {
        // a key under a module (model.layers.1.mlp) names no module of its own: refused
        await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`, { deviceMap: map, gpu: env.gpu! })).rejects.toThrow(/model\.layers\.1\.mlp/);
        return;
      }
      const m = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`, { deviceMap: map, gpu: env.gpu! });
      const c = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`, { deviceMap: 'cpu' });
      for (const [mod, d] of Object.entries(map)) expect(m.deviceMap[mod], mod).toBe(d === 'gpu' ? 'webgpu' : 'cpu');
      expect(maxDiff(await m.forward(ref.input_ids, 0), await c.forward(ref.input_ids, 0))).toBeLessThanOrEqual(1e-4);
      const want = await c.generate({ inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [] });
      expect(await m.generate({ inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [] })).toEqual(want);
      // byDevice: each device's modules, the same total as the CPU model plus the tied copy
      const fp = m.getMemoryFootprint();
      const onGpu = Object.entries(fp.byModule).filter(([k]) => Object.entries(map).some(([mod, d]) => d === 'gpu' && (k === mod || k.startsWith(mod + '.'))));
      expect(fp.byDevice.webgpu).toBe(onGpu.reduce((a, [, v]) => a + v, 0));
      expect(fp.byDevice.cpu).toBe(fp.total - fp.byDevice.webgpu!);
      const tiedCopy = name === 'gpt2' ? fp.byModule['transformer.wte']! : name === 'gemma2' || name === 'phi4-mini' ? fp.byModule['model.embed_tokens']! : 0;
      expect(fp.total).toBe(c.getMemoryFootprint().total + tiedCopy);
      m.dispose();
      c.dispose();
    });
  }

  it("'auto' with a small maxMemory.gpu: the first modules on the GPU, the rest on the CPU, same tokens", async () => {
    const ref = JSON.parse(readFileSync(`${FIXTURES}llama/reference.json`, 'utf8'));
    const whole = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'gpu', gpu: env.gpu! });
    const by = whole.getMemoryFootprint().byModule;
    const sizeOf = (mod: string) => Object.entries(by).filter(([k]) => k === mod || k.startsWith(mod + '.')).reduce((a, [, v]) => a + v, 0);
    whole.dispose();
    // embeddings + layer 0 fit (the estimate of f32 weights is exact); layer 1 does not
    const budget = sizeOf('model.embed_tokens') + sizeOf('model.layers.0') + 64;
    expect(budget).toBeLessThan(budget - 64 + sizeOf('model.layers.1'));
    const m = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'auto', maxMemory: { gpu: budget }, gpu: env.gpu! });
    expect(m.deviceMap).toEqual({ 'model.embed_tokens': 'webgpu', 'model.layers.0': 'webgpu', 'model.layers.1': 'cpu', 'model.norm': 'cpu', lm_head: 'cpu' });
    const fp = m.getMemoryFootprint();
    expect(fp.byDevice.webgpu).toBe(budget - 64);
    expect(fp.byDevice.webgpu).toBeLessThanOrEqual(budget);
    const c = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'cpu' });
    expect(maxDiff(await m.forward(ref.input_ids, 0), await c.forward(ref.input_ids, 0))).toBeLessThanOrEqual(1e-4);
    expect(await m.generate({ inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [] })).toEqual(await c.generate({ inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [] }));
    m.dispose();
    c.dispose();
    // a '2GiB'-style budget takes everything
    const all = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'auto', maxMemory: { gpu: '1GiB' }, gpu: env.gpu! });
    expect(new Set(Object.values(all.deviceMap))).toEqual(new Set(['webgpu']));
    all.dispose();
  });

  it('refuses what does not fit or is not covered, before loading', async () => {
    const e1 = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'auto', maxMemory: { gpu: 0, cpu: 1000 }, gpu: env.gpu! }).catch((e) => e);
    expect(e1).toBeInstanceOf(LowbitError);
    expect(e1.code).toBe('OUT_OF_MEMORY');
    const e2 = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: { 'model.layers': 'gpu', lm_head: 'cpu', 'model.norm': 'cpu' }, gpu: env.gpu! }).catch((e) => e);
    expect(e2.code).toBe('INVALID_ARGUMENT');
    expect(e2.message).toMatch(/model\.embed_tokens/);
    const e3 = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'gpu', maxMemory: { gpu: '1KiB' }, gpu: env.gpu! }).catch((e) => e);
    expect(e3.code).toBe('OUT_OF_MEMORY');
  });

  for (const map of ['gpu', { '': 'gpu', 'model.layers.1': 'cpu' }] as const) {
    it(`device loss mid-generation (${JSON.stringify(map)}): the event fires once and generation ends as on the CPU`, async () => {
      const ref = JSON.parse(readFileSync(`${FIXTURES}llama/reference.json`, 'utf8'));
      const c = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'cpu' });
      const want = await c.generate({ inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [] });
      c.dispose();
      const m = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: map, gpu: env.gpu! });
      const g = m.backendOf('model.embed_tokens') as WebGpuBackend;
      const events: string[] = [];
      g.onDeviceLost((i) => events.push(`backend ${i.reason}`));
      let n = 0;
      const tokens = await m.generate({
        inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [],
        onToken: () => {
          if (++n === 4) g.ctx.device.destroy(); // the real device goes away after 4 tokens
        },
        onDeviceLost: (i) => events.push(`generate ${i.modules.length}`),
      });
      expect(tokens).toEqual(want);
      expect(events).toEqual(['backend destroyed', `generate ${map === 'gpu' ? 5 : 4}`]);
      expect(new Set(Object.values(m.deviceMap))).toEqual(new Set(['cpu']));
      expect(m.getMemoryFootprint().byDevice.webgpu ?? 0).toBe(0);
      m.dispose();
    });
  }
});

suite('weight formats on WebGPU: the format × backend table', () => {
  const GGUF = fileURLToPath(new URL('./fixtures/gguf-model/', import.meta.url));

  for (const arch of ['llama', 'qwen2', 'qwen3']) {
    it(`${arch} Q8_0 GGUF with deviceMap 'gpu' and no quantization config: the block-wise 8-bit linears run natively (matmul_blockwise8.wgsl, 1.125 bytes per weight, no conversion), same logits and greedy tokens as the CPU`, async () => {
      const ref = JSON.parse(readFileSync(`${FIXTURES}${arch}/reference.json`, 'utf8'));
      const c = await AutoModelForCausalLM.fromPretrained(`${GGUF}${arch}-q8_0.gguf`, { tokenizer: false });
      const m = await AutoModelForCausalLM.fromPretrained(`${GGUF}${arch}-q8_0.gguf`, { tokenizer: false, deviceMap: 'gpu', gpu: env.gpu! });
      expect(new Set(Object.values(m.deviceMap))).toEqual(new Set(['webgpu']));
      expect(c.formatConversions).toEqual([]);
      expect(m.formatConversions).toEqual([]);
      const fp = m.getMemoryFootprint().byModule;
      // 8-bit on both (o_proj: no bias in any of them): codes + an f32 scale per 32 weights; the int8 code is not uploaded
      expect(fp['model.layers.0.self_attn.o_proj']).toBe(64 * 64 * 1.125);
      expect(c.getMemoryFootprint().byModule['model.layers.0.self_attn.o_proj']).toBe(64 * 64 * 1.125);
      for (const [mod, bytes] of Object.entries(fp)) if (/_proj$/.test(mod)) expect(bytes, mod).toBeLessThan(1.2 * (c.getMemoryFootprint().byModule[mod] ?? 0) + 1);
      expect(maxDiff(await m.forward(ref.input_ids, 0), await c.forward(ref.input_ids, 0))).toBeLessThanOrEqual(1e-4);
      const want = await c.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] });
      expect(await m.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] })).toEqual(want);
      m.dispose();
      c.dispose();
    });
  }

  for (const name of ['phi3', 'phi4-mini', 'olmo2']) {
    it(`${name} GGUF on the GPU: F32 within 1e-4 of transformers and the same 32 greedy tokens; Q8_0 (native 8-bit) within 1e-4 of gguf-py's reading of that file`, async () => {
      const ref = JSON.parse(readFileSync(`${FIXTURES}${name}/reference.json`, 'utf8'));
      const m = await AutoModelForCausalLM.fromPretrained(`${GGUF}${name}-f32.gguf`, { tokenizer: false, deviceMap: 'gpu', gpu: env.gpu! });
      expect(new Set(Object.values(m.deviceMap))).toEqual(new Set(['webgpu']));
      const f32 = (path: string) => {
        const b = readFileSync(path);
        return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      };
      expect(maxDiff(await m.forward(ref.input_ids, 0), f32(`${FIXTURES}${name}/logits-fp32.f32`))).toBeLessThanOrEqual(1e-4);
      expect(await m.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] })).toEqual(ref.fp32.greedy_tokens);
      m.dispose();
      const q = await AutoModelForCausalLM.fromPretrained(`${GGUF}${name}-q8_0.gguf`, { tokenizer: false, deviceMap: 'gpu', gpu: env.gpu! });
      expect(q.formatConversions).toEqual([]);
      expect(maxDiff(await q.forward(ref.input_ids, 0), f32(`${GGUF}logits-${name}-q8_0.f32`))).toBeLessThanOrEqual(1e-4);
      q.dispose();
    });
  }

  for (const arch of ['gemma2', 'gemma3']) {
    it(`${arch} GGUF on the GPU (norms stored as 1 + w, soft-caps and sliding window from the metadata): F32 logits within 1e-4 of transformers and its greedy tokens; Q8_0 within 1e-4 of transformers loading that file`, async () => {
      const ref = JSON.parse(readFileSync(`${FIXTURES}${arch}/reference.json`, 'utf8'));
      const m = await AutoModelForCausalLM.fromPretrained(`${GGUF}${arch}-f32.gguf`, { tokenizer: false, deviceMap: 'gpu', gpu: env.gpu! });
      expect(new Set(Object.values(m.deviceMap))).toEqual(new Set(['webgpu']));
      expect(maxDiff(await m.forward(ref.input_ids, 0), readF32(`${FIXTURES}${arch}/logits-fp32.f32`))).toBeLessThanOrEqual(1e-4);
      expect(await m.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] })).toEqual(ref.fp32.greedy_tokens);
      m.dispose();
      const q = await AutoModelForCausalLM.fromPretrained(`${GGUF}${arch}-q8_0.gguf`, { tokenizer: false, deviceMap: 'gpu', gpu: env.gpu! });
      expect(maxDiff(await q.forward(ref.input_ids, 0), readF32(`${GGUF}logits-${arch}-q8_0.f32`))).toBeLessThanOrEqual(1e-4);
      q.dispose();
    });
  }

  it("'auto' counts a Q8_0 layer at its 8-bit size on the GPU: a budget that holds layers 0 and 1 8-bit places both there, one byte less does not", async () => {
    const c = await AutoModelForCausalLM.fromPretrained(`${GGUF}llama-q8_0.gguf`, { tokenizer: false, deviceMap: 'gpu', gpu: env.gpu! });
    const by = c.getMemoryFootprint().byModule;
    const sizeOf = (mod: string) => Object.entries(by).filter(([k]) => k === mod || k.startsWith(mod + '.')).reduce((a, [, v]) => a + v, 0);
    c.dispose();
    // the linears of a layer at 1.125 bytes per weight (q, o; k, v; gate, up, down)
    const linearWeights = 64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3;
    expect(Object.entries(by).filter(([k]) => k.startsWith('model.layers.1.') && k.endsWith('_proj')).reduce((a, [, v]) => a + v, 0)).toBe(linearWeights * 1.125);
    const budget = sizeOf('model.embed_tokens') + sizeOf('model.layers.0') + sizeOf('model.layers.1');
    const m = await AutoModelForCausalLM.fromPretrained(`${GGUF}llama-q8_0.gguf`, { tokenizer: false, deviceMap: 'auto', maxMemory: { gpu: budget }, gpu: env.gpu! });
    expect(m.deviceMap).toMatchObject({ 'model.embed_tokens': 'webgpu', 'model.layers.0': 'webgpu', 'model.layers.1': 'webgpu', lm_head: 'cpu' });
    expect(m.formatConversions).toEqual([]);
    m.dispose();
    const less = await AutoModelForCausalLM.fromPretrained(`${GGUF}llama-q8_0.gguf`, { tokenizer: false, deviceMap: 'auto', maxMemory: { gpu: budget - 1 }, gpu: env.gpu! });
    expect(less.deviceMap).toMatchObject({ 'model.embed_tokens': 'webgpu', 'model.layers.0': 'webgpu', 'model.layers.1': 'cpu', lm_head: 'cpu' });
    less.dispose();
  });

  it('backend.linear runs a block-wise 8-bit weight natively (bitsandbytes dynamic code and the int8 code, blocks spanning rows, split into parts under a 1 KiB binding), and refuses an unknown format with a message naming it', async () => {
    const { q, state } = quantizeBlockwise(rand(48 * 64, 7), { blocksize: 64 });
    const w = blockwise8FromQuantized('w', [48, 64], q, state);
    const int8 = { ...w, code: int8Code(), blocksize: 32, absmax: Float32Array.from({ length: (48 * 64) / 32 }, (_, i) => 1 / 256 + (i % 7) / 1024) };
    // rows of 56 and 144 in blocks of 64: blocks span rows, and under the 1 KiB binding the parts
    // start inside a block (rows 17 · 56 = 952, 6 · 144 = 864) and, for 56, inside a 16-byte word
    // (the generic GEMV; 144 takes gemv8)
    const spanning = (k: number) => {
      const r = quantizeBlockwise(rand(37 * k, 9), { blocksize: 64 });
      return blockwise8FromQuantized('s', [37, k], r.q, r.state);
    };
    for (const [name, wt] of [['dynamic', w], ['int8', int8], ['spanning rows of 56', spanning(56)], ['spanning rows of 144', spanning(144)]] as const) {
      const [n, k] = wt.shape;
      const hc = cpu.linear(wt);
      const want = new Map<number, Float32Array>();
      for (const m of [1, 3]) want.set(m, await cpu.read(cpu.linearForward(cpu.fromHost(rand(m * k, 8 + m), m, k), hc)));
      for (const b of [gpu, small]) {
        const hg = b.linear(wt);
        expect(hg.format).toBe(name === 'int8' ? 'q8_0' : 'blockwise8');
        // codes (padded to 16 bytes) + f32 absmax (+ the 1 KiB dynamic code; the int8 code is converted in the kernel), per part
        if (b === gpu) expect(hg.bytes).toBe(Math.ceil((n * k) / 16) * 16 + wt.absmax.byteLength + (name === 'int8' ? 0 : 1024));
        else expect((hg as unknown as { parts: unknown[] }).parts.length).toBeGreaterThan(1);
        for (const m of [1, 3]) {
          const got = await b.read(b.linearForward(b.fromHost(rand(m * k, 8 + m), m, k), hg));
          const deq = dequantizeBlockwise(wt.q, { absmax: wt.absmax, code: wt.code, blocksize: wt.blocksize });
          expectSumBound(got, want.get(m)!, magnitudes(rand(m * k, 8 + m), m, deq, n, k), k, `blockwise8 ${name} m=${m} on the GPU`);
        }
        hg.dispose();
      }
      hc.dispose();
    }
    const mystery = { kind: 'q3_k', name: 'blk.0.ffn_up.weight' } as unknown as LoadedWeight;
    for (const b of [gpu, cpu] as Backend[]) {
      const e = (() => {
        try {
          b.linear(mystery);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(LowbitError);
      expect((e as LowbitError).code).toBe('UNSUPPORTED_QUANT_TYPE');
      expect((e as LowbitError).message).toMatch(/blk\.0\.ffn_up\.weight \(q3_k\) cannot run on the (webgpu|cpu) backend/);
    }
  });
});

// These need no adapter: they run everywhere.
describe('WebGPU backend: errors without an adapter', () => {
  it('no adapter is a LowbitError WEBGPU_UNAVAILABLE, from the backend and from fromPretrained', async () => {
    await init();
    const none = { requestAdapter: async () => null } as unknown as GPU;
    await expect(WebGpuBackend.create({ gpu: none })).rejects.toMatchObject({ name: 'LowbitError', code: 'WEBGPU_UNAVAILABLE' });
    const failing = { requestAdapter: async () => { throw new Error('driver exploded'); } } as unknown as GPU;
    await expect(WebGpuBackend.create({ gpu: failing })).rejects.toMatchObject({ code: 'WEBGPU_UNAVAILABLE', message: expect.stringMatching(/driver exploded/) });
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'gpu', gpu: none })).rejects.toMatchObject({ code: 'WEBGPU_UNAVAILABLE' });
  });

  it("bad deviceMaps are refused; 'auto' without an adapter runs on the CPU", async () => {
    const none = { requestAdapter: async () => null } as unknown as GPU;
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: { 'model.layers.0': 'cpu', lm_head: 'cpu' } })).rejects.toThrow(/does not place module 'model\.embed_tokens'/);
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: { '': 'cpu', 'model.layer': 'cpu' } })).rejects.toThrow(/'model\.layer' names no module/);
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'cpu', maxMemory: { cpu: '2 TB', disk: 1 } as never })).rejects.toThrow(/maxMemory\.disk/);
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'cpu', maxMemory: { cpu: '2 parsecs' } })).rejects.toThrow(/maxMemory\.cpu/);
    const m = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'auto', gpu: none, threads: 1 });
    expect(new Set(Object.values(m.deviceMap))).toEqual(new Set(['cpu']));
    m.dispose();
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'auto', gpu: none, maxMemory: { cpu: '1KiB' } })).rejects.toMatchObject({ code: 'OUT_OF_MEMORY' });
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'tpu' as never })).rejects.toThrow(LowbitError);
    await expect(AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { deviceMap: 'gpu', backend: new CpuBackend() })).rejects.toThrow(/runs on 'cpu'/);
  });
});
