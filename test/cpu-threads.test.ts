/**
 * The CPU backend on several threads (weights split by output rows between worker threads with
 * their own wasm instances, ts/backends/cpu/threads/) gives bit-identical results to one thread:
 * every output element is computed by the same kernel from the same data. Also: the split
 * itself, errors raised inside a worker, a dead worker, and Node exiting after dispose.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  init, AutoModelForCausalLM, BitsAndBytesConfig, CpuBackend, CpuEmbedding, CpuLinear, LowbitError, int8VectorwiseQuant, quantize4bit, toHalf,
  type DenseWeight, type LoadedWeight,
} from '../dist/index.js';
import { rowStep4bit, splitRows, ROW_ALIGN } from '../dist/backends/cpu/threads/split.js';
import { WorkerPool } from '../dist/backends/cpu/threads/pool.js';
import { wasm, wasmModule } from '../dist/runtime/wasm.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

let one: CpuBackend;
let two: CpuBackend;
let three: CpuBackend;
beforeAll(async () => {
  await init();
  one = await CpuBackend.create({ threads: 1 });
  // minSliceElements: 1 splits even these small test layers
  two = await CpuBackend.create({ threads: 2, minSliceElements: 1 });
  three = await CpuBackend.create({ threads: 3, minSliceElements: 1 });
});
afterAll(() => {
  two?.dispose();
  three?.dispose();
});

function rand(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

function dense(name: string, data: Float32Array, shape: number[], dtype: 'F32' | 'F16' | 'BF16' = 'F32'): DenseWeight {
  if (dtype === 'F32') return { kind: 'dense', name, dtype, shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  const h = toHalf(data, dtype === 'F16' ? 'float16' : 'bfloat16');
  return { kind: 'dense', name, dtype, shape, data: new Uint8Array(h.data.buffer, h.data.byteOffset, h.data.byteLength) };
}

/** Exact equality, bit for bit (-0 vs +0 and NaN payloads included). */
function expectSameBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let bad = -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) {
    bad = i;
    break;
  }
  expect(bad, `${what}: first differing element ${bad} (${got[bad]} vs ${want[bad]})`).toBe(-1);
}

async function forward(be: CpuBackend, w: CpuLinear, x: Float32Array, m: number): Promise<Float32Array> {
  return be.read(be.linearForward(be.fromHost(x, m, w.inFeatures), w));
}

/** Builds `weight` on one, two and three threads and compares outputs for several row counts. */
async function expectLinearParity(what: string, weight: LoadedWeight, k: number, bias?: DenseWeight, opts?: { int8Threshold?: number }, xScale = 1): Promise<void> {
  const ref = one.linear(weight, bias, opts) as CpuLinear;
  for (const be of [two, three]) {
    const l = be.linear(weight, bias, opts) as CpuLinear;
    expect(l.slices, `${what}: split on ${be.threads} threads`).toBe(be.threads);
    if (weight.kind === '4bit' && weight.quantState.nested) {
      // each slice holds the nested absmax entries of its blocks: one straddling a slice
      // boundary is held twice (4 bytes)
      expect(l.bytes, `${what}: footprint`).toBeGreaterThanOrEqual(ref.bytes);
      expect(l.bytes, `${what}: footprint`).toBeLessThanOrEqual(ref.bytes + 4 * (l.slices - 1));
    } else {
      expect(l.bytes, `${what}: footprint`).toBe(ref.bytes);
    }
    expect([l.outFeatures, l.inFeatures, l.format]).toEqual([ref.outFeatures, ref.inFeatures, ref.format]);
    for (const m of [1, 2, 4, 7]) {
      const x = rand(m * k, 100 + m, xScale);
      expectSameBits(await forward(be, l, x, m), await forward(one, ref, x, m), `${what}, ${be.threads} threads, m=${m}`);
    }
    l.dispose();
  }
  ref.dispose();
}

describe('splitRows', () => {
  it('bounds are increasing, start at 0, end at n, and sit on the step', () => {
    for (const [n, k, parts, step] of [[1536, 576, 2, 16], [1000, 101, 3, 64], [49152, 576, 8, 16], [33, 64, 4, 16], [16, 64, 4, 16], [300, 100, 5, 32]] as const) {
      const b = splitRows(n, k, parts, step, 1);
      expect(b[0]).toBe(0);
      expect(b.at(-1)).toBe(n);
      expect(b.length - 1).toBeLessThanOrEqual(parts);
      for (let i = 1; i < b.length; i++) expect(b[i]!).toBeGreaterThan(b[i - 1]!);
      for (let i = 1; i < b.length - 1; i++) expect(b[i]! % step).toBe(0);
    }
    expect(splitRows(1536, 576, 2, 16, 1)).toEqual([0, 768, 1536]);
    expect(splitRows(16, 64, 4, 16, 1)).toEqual([0, 16]); // one step: not split
    expect(splitRows(1536, 576, 4, 16, 1536 * 576)).toEqual([0, 1536]); // too small to pay
  });

  it('4-bit steps put every slice start on a block boundary of the flat weight', () => {
    for (const [k, bs] of [[576, 64], [100, 64], [101, 64], [100, 128], [4097, 4096], [7, 32]] as const) {
      const s = rowStep4bit(k, bs);
      expect(s % ROW_ALIGN).toBe(0);
      expect((s * k) % bs).toBe(0);
      // and it is the smallest such multiple of ROW_ALIGN
      for (let r = ROW_ALIGN; r < s; r += ROW_ALIGN) expect((r * k) % bs).not.toBe(0);
    }
  });
});

describe("which layers are split by default (about 25 µs of one core's work per slice)", () => {
  it('by format: the small layers of SmolLM2-135M stay on the main thread, its MLP is split', async () => {
    const be = await CpuBackend.create({ threads: 2 });
    try {
      const w = (n: number, k: number) => rand(n * k, n + k, 0.05);
      const slices = (l: LoadedWeight) => {
        const h = be.linear(l) as CpuLinear;
        const s = h.slices;
        h.dispose();
        return s;
      };
      const int8 = (n: number, k: number): LoadedWeight => {
        const q = int8VectorwiseQuant(w(n, k), { shape: [n, k] });
        return { kind: 'int8', name: 'i8', shape: [n, k], CB: q.CB, SCB: q.SCB };
      };
      const nf4 = (n: number, k: number): LoadedWeight => ({ kind: '4bit', name: 'q4', ...quantize4bit(w(n, k), { quantType: 'nf4', blocksize: 64, shape: [n, k] }) });
      const cases: [string, LoadedWeight, number][] = [
        ['int8 q_proj 576x576', int8(576, 576), 1],
        ['int8 gate_proj 1536x576', int8(1536, 576), 2],
        ['f16 k_proj 192x576', dense('f16', w(192, 576), [192, 576], 'F16'), 1],
        ['f16 q_proj 576x576', dense('f16', w(576, 576), [576, 576], 'F16'), 2],
        ['f32 256x576', dense('f32', w(256, 576), [256, 576]), 2],
        ['f32 k_proj 192x576', dense('f32', w(192, 576), [192, 576]), 1],
        ['nf4 k_proj 192x576', nf4(192, 576), 1],
        ['nf4 q_proj 576x576', nf4(576, 576), 2],
      ];
      for (const [what, l, want] of cases) expect(slices(l), what).toBe(want);
      // a fixed minSliceElements applies to every format
      const fixed = await CpuBackend.create({ threads: 2, minSliceElements: 1 });
      try {
        const h = fixed.linear(int8(192, 576)) as CpuLinear;
        expect(h.slices).toBe(2);
        h.dispose();
      } finally {
        fixed.dispose();
      }
    } finally {
      be.dispose();
    }
  });
});

describe("threads: 'auto' keeps its threads only where they pay", () => {
  it('a speed test at create(): kept at >= autoMinSpeedup, else one thread with the reason', async () => {
    const cores = (await import('node:os')).availableParallelism();
    if (cores < 2) return; // 'auto' is one thread without a test there
    const always = await CpuBackend.create({ autoMinSpeedup: 0 });
    expect(always.threads).toBe(Math.min(cores, 8));
    expect(always.threadSpeedup).toBeUndefined();
    always.dispose();
    const never = await CpuBackend.create({ threads: 'auto', autoMinSpeedup: 1000 });
    expect(never.threads).toBe(1);
    expect(never.threadSpeedup).toBeGreaterThan(0);
    expect(never.threadsNote).toMatch(/threads ran .*× as fast as one in a test \(needs 1000×\): the cores are busy/);
    const tested = await CpuBackend.create();
    expect(tested.threadSpeedup).toBeGreaterThan(0);
    expect(tested.threads).toBe(tested.threadSpeedup! >= 1.2 ? Math.min(cores, 8) : 1);
    tested.dispose();
    // an explicit count is used as given, without a test
    const two = await CpuBackend.create({ threads: 2 });
    expect([two.threads, two.threadSpeedup]).toEqual([2, undefined]);
    two.dispose();
    await expect(CpuBackend.create({ autoMinSpeedup: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('linear layers: threads give the bits of one thread', () => {
  it('nf4 and fp4, with and without double quant, K a multiple of the blocksize', async () => {
    const [n, k] = [200, 128];
    const W = rand(n * k, 3, 0.05);
    const bias = rand(n, 4);
    for (const [quantType, compressStatistics] of [['nf4', false], ['nf4', true], ['fp4', false], ['fp4', true], ['int4', false]] as const) {
      const { packed, quantState } = quantize4bit(W, { quantType, blocksize: 64, compressStatistics, shape: [n, k] });
      await expectLinearParity(`${quantType}${compressStatistics ? '-dq' : ''}`, { kind: '4bit', name: 'w', packed, quantState }, k, quantType === 'nf4' ? dense('b', bias, [n]) : undefined);
    }
  });

  it('4-bit with K % blocksize != 0 (blocks span rows) and an odd element count, with and without double quant', async () => {
    // [201, 101] in blocks of 64: slices must start at multiples of 64 rows; 20301 elements (odd: half a byte at the end).
    // Double quant: slices start inside nested blocks of 256 ([600, 100] in blocks of 32: 1875 blocks, 8 nested).
    for (const [n, k, bs, compressStatistics] of [[201, 101, 64, false], [260, 100, 128, false], [97, 36, 32, false], [201, 101, 64, true], [600, 100, 32, true], [97, 36, 32, true]] as const) {
      const W = rand(n * k, n + k, 0.05);
      const { packed, quantState } = quantize4bit(W, { quantType: 'fp4', blocksize: bs, compressStatistics, shape: [n, k] });
      const sp = splitRows(n, k, 3, rowStep4bit(k, bs), 1);
      const ref = one.linear({ kind: '4bit', name: 'w', packed, quantState }) as CpuLinear;
      const l = three.linear({ kind: '4bit', name: 'w', packed, quantState }) as CpuLinear;
      expect(l.slices).toBe(sp.length - 1);
      expect(l.slices).toBeGreaterThan(1);
      for (const m of [1, 3, 5]) {
        const x = rand(m * k, m);
        expectSameBits(await forward(three, l, x, m), await forward(one, ref, x, m), `[${n}, ${k}] bs ${bs}${compressStatistics ? ' dq' : ''} m=${m}`);
      }
      l.dispose();
      ref.dispose();
    }
  });

  it('int8 (LLM.int8) with outlier columns and a bias, thresholds 6 and 0', async () => {
    const [n, k] = [160, 96];
    const W = rand(n * k, 21, 0.5);
    const q = int8VectorwiseQuant(toHalf(W, 'float16'), { shape: [n, k] });
    const w: LoadedWeight = { kind: 'int8', name: 'w', CB: q.CB, SCB: q.SCB, shape: [n, k] };
    // xScale 8: many activations above the threshold 6, so outlier columns exist
    for (const threshold of [6, 0]) await expectLinearParity(`int8 t=${threshold}`, w, k, dense('b', rand(n, 22), [n]), { int8Threshold: threshold }, 8);
  });

  it('dense f32, f16 and bf16 weights (f16 bias)', async () => {
    const [n, k] = [96, 80];
    const W = rand(n * k, 31);
    for (const dt of ['F32', 'F16', 'BF16'] as const) await expectLinearParity(`dense ${dt}`, dense('w', W, [n, k], dt), k, dense('b', rand(n, 32), [n], 'F16'));
  });
});

describe('quantize4bit on the threads (quantize-on-load)', () => {
  const sameQuantized = (got: ReturnType<typeof quantize4bit>, want: ReturnType<typeof quantize4bit>, what: string) => {
    expect(Buffer.from(got.packed).equals(Buffer.from(want.packed)), `${what}: packed codes`).toBe(true);
    expect(got.quantState.fields(), `${what}: quant state`).toEqual(want.quantState.fields());
    expectSameBits(got.quantState.absmaxF32(), want.quantState.absmaxF32(), `${what}: absmax`);
  };

  it('gives the bytes and quant state of one thread: nf4 / fp4 / int4, with and without double quant, f32 / f16 / bf16, ragged sizes', async () => {
    // above MIN_SPLIT_QUANTIZE (2^18 elements), odd block counts, a partial last block, one tiny
    const cases: [number, number[], number][] = [[600 * 512, [600, 512], 64], [1000 * 333 + 7, [1000 * 333 + 7], 128], [300 * 1024, [300, 1024], 4096], [513 * 513, [513, 513], 32], [4096, [64, 64], 64]];
    for (const [n, shape, blocksize] of cases) {
      const x = rand(n, n % 97, 0.7);
      for (const input of [x, toHalf(x, 'float16'), toHalf(x, 'bfloat16')]) {
        for (const [quantType, compressStatistics] of [['nf4', true], ['fp4', false], ['int4', true]] as const) {
          const o = { quantType, blocksize, compressStatistics, shape };
          const want = quantize4bit(input, o);
          for (const be of [two, three]) sameQuantized(be.quantize4bit(input, o), want, `${quantType} dq=${compressStatistics} n=${n} bs=${blocksize} ${input instanceof Float32Array ? 'f32' : input.dtype} on ${be.threads} threads`);
        }
      }
    }
  });

  it('errors are those of one thread: NON_FINITE with the tensor\'s index, a bad blocksize, a shape that disagrees; allowNonFinite quantizes as one thread does', async () => {
    const x = rand(700 * 512, 5);
    x[600 * 512 + 3] = Number.NaN; // in the last thread's run
    const one1 = (() => { try { quantize4bit(x, { quantType: 'nf4' }); } catch (e) { return e as LowbitError; } })();
    expect(one1?.code).toBe('NON_FINITE');
    for (const be of [two, three]) {
      let err: LowbitError | undefined;
      try {
        be.quantize4bit(x, { quantType: 'nf4' });
      } catch (e) {
        err = e as LowbitError;
      }
      expect([err?.code, err?.index, err?.message]).toEqual([one1!.code, one1!.index, one1!.message]);
      sameQuantized(be.quantize4bit(x, { quantType: 'nf4', allowNonFinite: true }), quantize4bit(x, { quantType: 'nf4', allowNonFinite: true }), `allowNonFinite on ${be.threads} threads`);
      // a NaN absmax cannot be double-quantized: the same refusal as one thread
      expect(() => be.quantize4bit(x, { quantType: 'nf4', allowNonFinite: true, compressStatistics: true })).toThrow(expect.objectContaining({ code: 'NON_FINITE' }));
      expect(() => be.quantize4bit(x, { blocksize: 48 })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_BLOCKSIZE' }));
      expect(() => be.quantize4bit(x, { shape: [3, 5] })).toThrow(LowbitError);
    }
  });

  it('fromPretrained on threads loads the weights one thread quantizes (nf4 + double quant): the same logits bit for bit', async () => {
    const dir = fileURLToPath(new URL('../.cache/models/smollm2-135m-instruct', import.meta.url));
    const q = new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true });
    const ids = new Uint32Array([1, 504, 3303, 314, 4296, 30]);
    const a = await AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig: q, threads: 1, tokenizer: false });
    // count the tensors the threaded quantizer took (the load must go through it)
    const original = CpuBackend.prototype.quantize4bit;
    let calls = 0;
    CpuBackend.prototype.quantize4bit = function (this: CpuBackend, ...args: Parameters<typeof original>) {
      calls++;
      return original.apply(this, args);
    };
    let b: Awaited<ReturnType<typeof AutoModelForCausalLM.fromPretrained>>;
    try {
      b = await AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig: q, threads: 2, tokenizer: false });
    } finally {
      CpuBackend.prototype.quantize4bit = original;
    }
    try {
      expect((b.backend as CpuBackend).threads).toBe(2);
      expect(calls, 'linear weights quantized on the threads').toBe(30 * 7);
      expectSameBits(await b.forward(ids), await a.forward(ids), 'logits');
    } finally {
      a.dispose();
      b.dispose();
    }
  }, 120_000);
});

describe('linearForwardMany: one dispatch for several layers', () => {
  it('equals linearForward on each, split and unsplit layers mixed (different formats and widths)', async () => {
    const k = 64;
    const { packed, quantState } = quantize4bit(rand(96 * k, 61, 0.05), { quantType: 'nf4', blocksize: 64, shape: [96, k] });
    const weights: LoadedWeight[] = [
      { kind: '4bit', name: 'q', packed, quantState },
      dense('k', rand(32 * k, 62), [32, k]),
      dense('v', rand(16 * k, 63), [16, k], 'F16'), // 16 rows: one step, never split
    ];
    const refs = weights.map((w) => one.linear(w));
    const threaded = await CpuBackend.create({ threads: 3, minSliceElements: 1 });
    try {
      const ls = weights.map((w) => threaded.linear(w) as CpuLinear);
      expect(ls.map((l) => l.slices)).toEqual([3, 2, 1]);
      for (const m of [1, 5]) {
        const x = rand(m * k, 64 + m);
        const got = threaded.linearForwardMany(threaded.fromHost(x, m, k), ls);
        const want = refs.map((r) => one.linearForward(one.fromHost(x, m, k), r));
        for (let i = 0; i < ls.length; i++) {
          expect([got[i]!.rows, got[i]!.cols]).toEqual([m, ls[i]!.outFeatures]);
          expectSameBits(await threaded.read(got[i]!), await one.read(want[i]!), `layer ${i}, m=${m}`);
        }
        // the same on one thread
        const single = one.linearForwardMany(one.fromHost(x, m, k), refs);
        for (let i = 0; i < refs.length; i++) expectSameBits(await one.read(single[i]!), await one.read(want[i]!), `one thread, layer ${i}`);
      }
      expect(() => threaded.linearForwardMany(threaded.fromHost(rand(2 * 63), 2, 63), ls)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    } finally {
      threaded.dispose();
      for (const r of refs) r.dispose();
    }
  });
});

describe('embedding tables split by vocabulary rows', () => {
  const [vocab, dim] = [300, 48];
  const table = rand(vocab * dim, 41);

  it('project and lookup (ids from every slice, repeated) equal one thread, f32 and f16', async () => {
    for (const dt of ['F32', 'F16'] as const) {
      const w = dense('emb', table, [vocab, dim], dt);
      const ref = one.embedding(w) as CpuEmbedding;
      for (const be of [two, three]) {
        const e = be.embedding(w) as CpuEmbedding;
        expect(e.slices).toBe(be.threads);
        expect(e.bytes).toBe(ref.bytes);
        for (const ids of [[0], [299], [5, 299, 150, 5, 16, 200, 0], [100, 101]]) {
          const u = new Uint32Array(ids);
          expectSameBits(await be.read(be.embed(e, u)), await one.read(one.embed(ref, u)), `${dt} lookup ${ids}`);
        }
        for (const m of [1, 3]) {
          const x = rand(m * dim, 7 + m);
          expectSameBits(await be.read(be.project(be.fromHost(x, m, dim), e)), await one.read(one.project(one.fromHost(x, m, dim), ref)), `${dt} project m=${m}`);
        }
        // an id outside the vocabulary: the error one thread gives, with its index
        const err = (f: () => unknown) => {
          try {
            f();
          } catch (e) {
            return e as LowbitError;
          }
          throw new Error('no error');
        };
        const bad = new Uint32Array([3, 250, vocab + 7]);
        const want = err(() => one.embed(ref, bad));
        const got = err(() => be.embed(e, bad));
        expect(got).toBeInstanceOf(LowbitError);
        expect([got.code, got.message, got.index]).toEqual([want.code, want.message, want.index]);
        e.dispose();
      }
      ref.dispose();
    }
  });
});

describe('shared buffers', () => {
  it('grow for an output larger than the initial 1 MiB (the workers get the new buffer)', async () => {
    const [vocab, dim, m] = [8192, 16, 40]; // 40 x 8192 f32 logits = 1.25 MiB
    const w = dense('emb', rand(vocab * dim, 71), [vocab, dim]);
    const ref = one.embedding(w);
    const e = three.embedding(w);
    const x = rand(m * dim, 72);
    for (let rep = 0; rep < 2; rep++) expectSameBits(await three.read(three.project(three.fromHost(x, m, dim), e)), await one.read(one.project(one.fromHost(x, m, dim), ref)), `project m=${m}`);
    // and later, smaller ops still work
    expectSameBits(await three.read(three.project(three.fromHost(x.subarray(0, dim), 1, dim), e)), await one.read(one.project(one.fromHost(x.subarray(0, dim), 1, dim), ref)), 'project m=1');
    e.dispose();
    ref.dispose();
  });
});

describe('models: logits on threads equal one thread exactly', () => {
  const FIX = `${ROOT}test/fixtures/reference-logits/`;
  const VARIANTS = {
    fp32: undefined,
    nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' },
    'fp4-dq': { loadIn4bit: true, bnb4bitQuantType: 'fp4', bnb4bitUseDoubleQuant: true },
    int8: { loadIn8bit: true },
  } as const;
  for (const model of ['llama', 'llama3-rope', 'qwen2', 'gpt2']) {
    it(`${model}: prefill + 4 decode steps, ${Object.keys(VARIANTS).join(', ')}`, async () => {
      const ids = [1, 17, 42, 99, 7, 3, 200, 64, 5, 11];
      for (const [variant, q] of Object.entries(VARIANTS)) {
        const opts = q ? { quantizationConfig: new BitsAndBytesConfig(q) } : {};
        const single = await AutoModelForCausalLM.fromPretrained(`${FIX}${model}`, { ...opts, threads: 1 });
        const multi = await AutoModelForCausalLM.fromPretrained(`${FIX}${model}`, { ...opts, backend: three });
        expect((single.backend as CpuBackend).threads).toBe(1);
        expectSameBits(await multi.forward(ids, 0), await single.forward(ids, 0), `${model} ${variant} prefill`);
        for (const id of [9, 30, 2, 250]) expectSameBits(await multi.forward([id]), await single.forward([id]), `${model} ${variant} decode`);
        if (variant.endsWith('-dq')) {
          // a split double-quantized layer holds a nested absmax entry straddling a slice
          // boundary on both sides (4 bytes per boundary, at most 2 on three threads)
          const [a, b] = [multi.getMemoryFootprint().byModule, single.getMemoryFootprint().byModule];
          for (const [name, bytes] of Object.entries(b)) {
            const d = a[name]! - bytes;
            expect(d >= 0 && d <= 8, `${variant} ${name}: ${d} more bytes on threads`).toBe(true);
          }
        } else {
          expect(multi.getMemoryFootprint().total).toBe(single.getMemoryFootprint().total);
        }
        single.dispose();
        multi.dispose(); // does not dispose `three`: the caller passed it
      }
    });
  }

  it('fromPretrained({ threads }) owns its backend: threads as asked, disposed with the model', async () => {
    const m = await AutoModelForCausalLM.fromPretrained(`${FIX}llama`, { threads: 2 });
    const be = m.backend as CpuBackend;
    expect(be.threads).toBe(2);
    expect(m.ownedBackend).toBe(be);
    await m.forward([1, 2, 3], 0);
    m.dispose();
    expect(() => be.linear(dense('w', rand(64 * 64), [64, 64]))).toThrow(/disposed/);
  });
});

describe('failures', () => {
  it("a wasm error inside a worker comes back as the LowbitError one thread throws", async () => {
    const pool = await WorkerPool.start({ threads: 2, module: wasmModule() });
    try {
      const [n, k] = [64, 64];
      const { packed, quantState } = quantize4bit(rand(n * k, 5), { quantType: 'nf4', blocksize: 64, shape: [n, k] });
      const absmax = quantState.absmaxF32();
      const w = wasm();
      const expectSame = (f: () => unknown, single: () => unknown) => {
        let want: LowbitError | undefined;
        try {
          single();
        } catch (e) {
          want = e as LowbitError;
        }
        expect(want).toBeDefined();
        expect(f).toThrow(LowbitError);
        try {
          f();
        } catch (e) {
          const got = e as LowbitError;
          expect([got.code, got.message]).toEqual([want!.code, want!.message]);
        }
      };
      // building: packed bytes that do not fit the shape
      const short = packed.slice(0, packed.length - 2);
      expectSame(
        () => pool.build(pool.newId(), [{ kind: 'linear4', rows: [0, n], n, k, packed: short.slice(), scales: { absmax: absmax.slice() }, quantType: 'nf4', blocksize: 64 }]),
        () => w.Linear.fourBit(short, absmax, 'nf4', 64, n, k),
      );
      // building: a double-quantized slice whose nested absmax does not cover its codes
      const dq = quantize4bit(rand(n * k, 6), { quantType: 'nf4', blocksize: 64, compressStatistics: true, shape: [n, k] }).quantState;
      const s2 = dq.state2!;
      const codes = dq.absmax as Uint8Array;
      expectSame(
        () => pool.build(pool.newId(), [{ kind: 'linear4', rows: [0, n], n, k, packed: packed.slice(), scales: { nested: { codes: codes.slice(), code: s2.code.slice(), absmax: new Float32Array(0), blocksize: 256, phase: 0, offset: dq.offset!, dtype: s2.dtype } }, quantType: 'nf4', blocksize: 64 }]),
        () => w.Linear.fourBitNested(packed, codes, s2.code, new Float32Array(0), 256, 0, dq.offset!, s2.dtype, 'nf4', 64, n, k),
      );
      // running: a forward with zero rows fails in the worker only (the main thread's share succeeds)
      const id = pool.newId();
      pool.build(id, [{ kind: 'linear4', rows: [0, n], n, k, packed: packed.slice(), scales: { absmax: absmax.slice() }, quantType: 'nf4', blocksize: 64 }]);
      const single = w.Linear.fourBit(packed, absmax, 'nf4', 64, n, k);
      expectSame(() => pool.matmul(2 /* Forward */, id, new Float32Array(0), 0, k, n, 0, () => new Float32Array(0)), () => single.forward(new Float32Array(0), 0));
      single.free();
      // the pool still works after an error
      const x = rand(k, 9);
      const got = pool.matmul(2, id, x, 1, k, n, 0, () => new Float32Array(0));
      const want = w.Linear.fourBit(packed, absmax, 'nf4', 64, n, k);
      expectSameBits(got, want.forward(x, 1), 'after an error');
      want.free();
    } finally {
      pool.terminate();
    }
  });

  it('a dead worker fails the op with WORKER_FAILED after the timeout instead of hanging', async () => {
    const be = await CpuBackend.create({ threads: 2, minSliceElements: 1, workerTimeoutMs: 300 });
    const l = be.linear(dense('w', rand(64 * 32), [64, 32]));
    const x = be.fromHost(rand(32), 1, 32);
    be.linearForward(x, l);
    // kill the worker behind the pool's back
    (be as unknown as { pool: { workers: { terminate(): void }[] } }).pool.workers[0]!.terminate();
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    expect(() => be.linearForward(x, l)).toThrow(expect.objectContaining({ code: 'WORKER_FAILED' }));
    expect(performance.now() - t0).toBeLessThan(5000);
    // and from then on at once
    expect(() => be.linearForward(x, l)).toThrow(expect.objectContaining({ code: 'WORKER_FAILED' }));
    be.dispose();
  });

  it('rejects bad thread counts', async () => {
    for (const threads of [0, 1.5, -2, 1000, 'many']) {
      await expect(CpuBackend.create({ threads: threads as number })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });
});

describe('Node process lifetime', () => {
  function runNode(code: string): Promise<{ code: number | null; stdout: string; ms: number }> {
    const t0 = performance.now();
    return new Promise((ok) => {
      const p = execFile(process.execPath, ['--input-type=module', '-e', code], { cwd: ROOT, timeout: 60_000 }, (err, stdout) => ok({ code: err ? (p.exitCode ?? -1) : 0, stdout, ms: performance.now() - t0 }));
    });
  }

  it('exits after model.dispose(), and also when a threaded backend is never disposed', async () => {
    const load = `import { init, AutoModelForCausalLM, CpuBackend } from './dist/index.js';
      await init();
      const m = await AutoModelForCausalLM.fromPretrained('./test/fixtures/reference-logits/llama', { threads: 2 });
      const be = await CpuBackend.create({ threads: 2 });
      const logits = await m.forward([1, 2, 3], 0);
      console.log(m.backend.threads, be.threads, logits.length);`;
    const disposed = await runNode(`${load}\nm.dispose(); be.dispose();`);
    expect(disposed.code).toBe(0);
    expect(disposed.stdout.trim()).toBe('2 2 768');
    const leaked = await runNode(load);
    expect(leaked.code).toBe(0);
    expect(leaked.stdout.trim()).toBe('2 2 768');
  });
});
