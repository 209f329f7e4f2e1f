/** CPU backend (wasm SIMD128 kernels) against plain JS references. */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  init, wasmBuild, CpuBackend, CpuActivation, ropeInvFreq, quantize4bit, dequantize4bit, int8VectorwiseQuant, toHalf, fromHalf, LowbitError, type DenseWeight,
  quantizeBlockwise, dequantizeBlockwise, dynamicMap, blockwise8FromQuantized, q8_0ToBlockwise8, int8Code, type Blockwise8Weight, QuantState,
} from '../dist/index.js';

let be: CpuBackend;
beforeAll(async () => {
  await init();
  be = new CpuBackend();
});

function rand(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

function f32Weight(name: string, data: Float32Array, shape: number[]): DenseWeight {
  return { kind: 'dense', name, dtype: 'F32', shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function halfWeight(name: string, data: Float32Array, shape: number[], dtype: 'float16' | 'bfloat16'): { w: DenseWeight; values: Float32Array } {
  const h = toHalf(data, dtype);
  return { w: { kind: 'dense', name, dtype: dtype === 'float16' ? 'F16' : 'BF16', shape, data: new Uint8Array(h.data.buffer, h.data.byteOffset, h.data.byteLength) }, values: fromHalf(h) };
}

/** y = x Wᵀ + b in f64, plus Σ|x w| + |b| per output (for float-sum bounds). */
function naiveMatmul(x: Float32Array, m: number, w: Float32Array, n: number, k: number, bias?: Float32Array): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      let a = 0;
      for (let t = 0; t < k; t++) {
        const p = x[i * k + t]! * w[j * k + t]!;
        s += p;
        a += Math.abs(p);
      }
      const b = bias ? bias[j]! : 0;
      y[i * n + j] = s + b;
      mag[i * n + j] = a + Math.abs(b);
    }
  return { y, mag };
}

/** |got - want| <= (k + 2)·2^-22·mag for every element. */
function expectSumBound(got: Float32Array, ref: { y: Float64Array; mag: Float64Array }, k: number): void {
  expect(got.length).toBe(ref.y.length);
  for (let i = 0; i < got.length; i++) {
    const bound = (k + 2) * 2 ** -22 * ref.mag[i]! + 1e-30;
    if (!(Math.abs(got[i]! - ref.y[i]!) <= bound)) throw new Error(`element ${i}: got ${got[i]}, want ${ref.y[i]} (bound ${bound})`);
  }
}

function expectClose(got: Float32Array, want: ArrayLike<number>, rel = 1e-5, abs = 1e-6): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const w = want[i]!;
    if (!(Math.abs(got[i]! - w) <= abs + rel * Math.abs(w))) throw new Error(`element ${i}: got ${got[i]}, want ${w}`);
  }
}

/** A Q8_0 tensor's bytes ([rows, cols], blocks of 32 along rows: f16 scale, 32 int8) from a seed. */
function q8_0Bytes(rows: number, cols: number, seed: number): Uint8Array {
  const blocks = (rows * cols) / 32;
  const bytes = new Uint8Array(blocks * 34);
  const r = rand(blocks * 33, seed);
  const d = toHalf(r.subarray(0, blocks).map((v) => v * 0.01), 'float16').data;
  for (let b = 0; b < blocks; b++) {
    bytes[b * 34] = d[b]! & 0xff;
    bytes[b * 34 + 1] = d[b]! >> 8;
    for (let j = 0; j < 32; j++) bytes[b * 34 + 2 + j] = Math.floor((r[blocks + b * 32 + j]! + 1) * 128) & 0xff;
  }
  return bytes;
}

async function expectCode(f: () => unknown, code: string): Promise<void> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(LowbitError);
  expect((err as LowbitError).code).toBe(code);
}

describe('CpuBackend basics', () => {
  it('names itself, copies on fromHost / read, transfers to itself as identity', async () => {
    expect(be.device).toBe('cpu');
    expect(be.name).toBe(`wasm-${wasmBuild()}`);
    const src = rand(6, 3);
    const x = be.fromHost(src, 2, 3);
    src[0] = 42;
    const r = await be.read(x);
    expect(r[0]).not.toBe(42);
    r[1] = 7;
    expect((await be.read(x))[1]).not.toBe(7);
    expect(await be.transfer(x, be)).toBe(x);
    be.release(x);
  });

  it('rows and add', async () => {
    const a = rand(12, 5);
    const b = rand(12, 6);
    const x = be.fromHost(a, 4, 3);
    const r = be.rows(x, 1, 3);
    expect([r.rows, r.cols]).toEqual([2, 3]);
    expect(Array.from(await be.read(r))).toEqual(Array.from(a.subarray(3, 9)));
    const s = await be.read(be.add(x, be.fromHost(b, 4, 3)));
    expect(Array.from(s)).toEqual(Array.from(a, (v, i) => Math.fround(v + b[i]!)));
  });
});

describe('linear layers', () => {
  const [m, n, k] = [3, 7, 96];
  const x = rand(m * k, 11);
  const W = rand(n * k, 12, 0.5);
  const bias = rand(n, 13);

  it('dense f32 (with and without bias, misaligned bytes) matches a naive matmul', async () => {
    const xa = be.fromHost(x, m, k);
    const l = be.linear(f32Weight('w', W, [n, k]), f32Weight('b', bias, [n]));
    expect([l.outFeatures, l.inFeatures, l.format, l.bytes]).toEqual([n, k, 'float32', (n * k + n) * 4]);
    const y = be.linearForward(xa, l);
    expect([y.rows, y.cols]).toEqual([m, n]);
    expectSumBound(await be.read(y), naiveMatmul(x, m, W, n, k, bias), k);
    // misaligned F32 bytes are copied, not misread
    const buf = new Uint8Array(W.byteLength + 1);
    buf.set(new Uint8Array(W.buffer), 1);
    const l2 = be.linear({ kind: 'dense', name: 'w', dtype: 'F32', shape: [n, k], data: buf.subarray(1) });
    expectSumBound(await be.read(be.linearForward(xa, l2)), naiveMatmul(x, m, W, n, k), k);
    l.dispose();
    l2.dispose();
  });

  it('dense f16 / bf16 weights with an f16 bias', async () => {
    for (const dt of ['float16', 'bfloat16'] as const) {
      const { w, values } = halfWeight('w', W, [n, k], dt);
      const b = halfWeight('b', bias, [n], 'float16');
      const l = be.linear(w, b.w);
      expect(l.format).toBe(dt);
      expect(l.bytes).toBe(n * k * 2 + n * 4);
      expectSumBound(await be.read(be.linearForward(be.fromHost(x, m, k), l)), naiveMatmul(x, m, values, n, k, b.values), k);
      l.dispose();
    }
  });

  it("4-bit (nf4, fp4 with double quant) with kernels: 'exact' matches dequantize4bit + naive matmul", async () => {
    const exact = new CpuBackend();
    exact.kernels = 'exact';
    for (const [quantType, compressStatistics] of [['nf4', false], ['fp4', true], ['int4', false]] as const) {
      const { packed, quantState } = quantize4bit(W, { quantType, blocksize: 64, compressStatistics, shape: [n, k] });
      const deq = dequantize4bit(packed, quantState, { outDtype: 'float32' });
      const l = exact.linear({ kind: '4bit', name: 'w', packed, quantState }, f32Weight('b', bias, [n]));
      expect(l.format).toBe(`4bit-${quantType}`);
      expect([l.outFeatures, l.inFeatures]).toEqual([n, k]);
      for (const rows of [1, m]) {
        const xs = x.subarray(0, rows * k);
        expectSumBound(await be.read(be.linearForward(be.fromHost(xs, rows, k), l)), naiveMatmul(xs, rows, deq, n, k, bias), k);
      }
      l.dispose();
    }
  });

  it('4-bit with the default fast kernels stays within the derived bound of dequantize4bit + naive matmul', async () => {
    expect(be.kernels).toBe('fast');
    const exact = new CpuBackend();
    exact.kernels = 'exact';
    // Bound (crates/lowbit-core/src/kernels/matmul4_int.rs): activations rounded to d/2 with
    // d = max|x| / 8191 per block of 32, the code table to absmax / (2 · s), s = 8191 (7168 for int4).
    for (const [quantType, compressStatistics, s] of [['nf4', false, 8191], ['fp4', true, 8191], ['int4', false, 7168]] as const) {
      const { packed, quantState } = quantize4bit(W, { quantType, blocksize: 64, compressStatistics, shape: [n, k] });
      const deq = dequantize4bit(packed, quantState, { outDtype: 'float32' });
      const absmax = quantState.absmaxF32();
      const l = be.linear({ kind: '4bit', name: 'w', packed, quantState }, f32Weight('b', bias, [n]));
      for (const rows of [1, 3]) {
        const xs = x.subarray(0, rows * k);
        const got = await be.read(be.linearForward(be.fromHost(xs, rows, k), l));
        const ref = naiveMatmul(xs, rows, deq, n, k, bias);
        for (let r = 0; r < rows; r++)
          for (let j = 0; j < n; j++) {
            let bound = (k + 8) * 2 ** -22 * ref.mag[r * n + j]!;
            for (let t = 0; t < k; t++) {
              let amaxX = 0;
              for (let u = t - (t % 32); u < t - (t % 32) + 32; u++) amaxX = Math.max(amaxX, Math.abs(xs[r * k + u]!));
              bound += (amaxX / 8191 / 2) * Math.abs(deq[j * k + t]!) + (Math.abs(xs[r * k + t]!) * 1.001 * absmax[Math.floor((j * k + t) / 64)]!) / (2 * s);
            }
            const i = r * n + j;
            if (!(Math.abs(got[i]! - ref.y[i]!) <= bound)) throw new Error(`${quantType} [${r}, ${j}]: got ${got[i]}, want ${ref.y[i]} (bound ${bound})`);
          }
        // the fast kernels really ran: other bits than the exact kernels'
        const exactLayer = exact.linear({ kind: '4bit', name: 'w', packed, quantState }, f32Weight('b', bias, [n]));
        const e = await exact.read(exact.linearForward(exact.fromHost(xs, rows, k), exactLayer));
        expect(Array.from(e).some((v, i) => v !== got[i])).toBe(true);
        exactLayer.dispose();
      }
      l.dispose();
    }
  });

  it('4-bit with double quant keeps the absmax compressed: the bits of the f32-absmax layer, ~1 byte per block', async () => {
    const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
    // ragged K (blocks span rows); 300 x 200 in blocks of 32 = 1875 blocks: nested blocks of 256 end inside rows
    for (const [quantType, nn, kk, bs] of [['nf4', 300, 200, 32], ['fp4', 37, 101, 64], ['int4', 64, 128, 128]] as const) {
      const { packed, quantState: st } = quantize4bit(rand(nn * kk, nn, 0.05), { quantType, blocksize: bs, compressStatistics: true, shape: [nn, kk] });
      expect(st.nested).toBe(true);
      // the same weight with the absmax rebuilt in f32, as the backend held it before
      const flat = new QuantState({ quantType, blocksize: bs, dtype: st.dtype, shape: [...st.shape], code: st.code, absmax: st.absmaxF32() });
      const b = f32Weight('b', rand(nn, 7), [nn]);
      for (const computeDtype of ['float32', 'float16', 'bfloat16'] as const) {
        const dq = be.linear({ kind: '4bit', name: 'w', packed, quantState: st }, b, { computeDtype });
        const f = be.linear({ kind: '4bit', name: 'w', packed, quantState: flat }, b, { computeDtype });
        for (let m = 1; m <= 9; m++) {
          const x = be.fromHost(rand(m * kk, 50 + m), m, kk);
          expect(bitsOf(await be.read(be.linearForward(x, dq))), `${quantType} ${computeDtype} m=${m}`).toEqual(bitsOf(await be.read(be.linearForward(x, f))));
        }
        const nb = Math.ceil((nn * kk) / bs);
        // packed + one code per block + the nested absmax + the f32 bias (the nested code is the
        // signed dynamic map: not stored per layer)
        expect(dq.bytes).toBe(packed.length + nb + 4 * Math.ceil(nb / 256) + 4 * nn);
        expect(f.bytes).toBe(packed.length + 4 * nb + 4 * nn);
        dq.dispose();
        f.dispose();
      }
    }
  });

  it('4-bit with double quant and a nested code other than the dynamic map: the code is held (1 KiB), same bits as f32 absmax', async () => {
    const bitsOf = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
    const [nn, kk, bs] = [40, 96, 32];
    const { packed, quantState: st } = quantize4bit(rand(nn * kk, 3, 0.05), { quantType: 'nf4', blocksize: bs, compressStatistics: true, shape: [nn, kk] });
    const f = st.fields();
    const code = f.state2!.code.map((v) => v * 0.75);
    const odd = new QuantState({ ...f, state2: { ...f.state2!, code } });
    const flat = new QuantState({ quantType: 'nf4', blocksize: bs, dtype: st.dtype, shape: [nn, kk], code: st.code, absmax: odd.absmaxF32() });
    expect(bitsOf(odd.absmaxF32())).not.toEqual(bitsOf(st.absmaxF32()));
    const dq = be.linear({ kind: '4bit', name: 'w', packed, quantState: odd });
    const fl = be.linear({ kind: '4bit', name: 'w', packed, quantState: flat });
    const nb = (nn * kk) / bs;
    expect(dq.bytes).toBe(packed.length + nb + 4 * Math.ceil(nb / 256) + 1024);
    for (const m of [1, 2, 4]) {
      const x = be.fromHost(rand(m * kk, m), m, kk);
      expect(bitsOf(await be.read(be.linearForward(x, dq)))).toEqual(bitsOf(await be.read(be.linearForward(x, fl))));
    }
    dq.dispose();
    fl.dispose();
  });

  it('int8 (LLM.int8) is within quantization error of the f32 matmul', async () => {
    for (const threshold of [6.0, 0.0, 0.8]) {
      const q = int8VectorwiseQuant(toHalf(W, 'float16'), { shape: [n, k] });
      const l = be.linear({ kind: 'int8', name: 'w', CB: q.CB, SCB: q.SCB, shape: [n, k] }, f32Weight('b', bias, [n]), { int8Threshold: threshold });
      expect(l.format).toBe('int8');
      const got = await be.read(be.linearForward(be.fromHost(x, m, k), l));
      const ref = naiveMatmul(x, m, W, n, k, bias);
      for (let i = 0; i < m; i++) {
        let ax = 0;
        for (let t = 0; t < k; t++) ax = Math.max(ax, Math.abs(x[i * k + t]!));
        for (let j = 0; j < n; j++) {
          // per product: x rounding (f16 + half an int8 step) and w rounding (f16 + half a step)
          let bound = 0;
          for (let t = 0; t < k; t++) {
            const dx = Math.abs(x[i * k + t]!) * 2 ** -11 + ax / 254;
            const dw = Math.abs(W[j * k + t]!) * 2 ** -11 + q.SCB[j]! / 254;
            bound += Math.abs(x[i * k + t]!) * dw + Math.abs(W[j * k + t]!) * dx + dx * dw;
          }
          bound = bound * 1.01 + 1e-5 * ref.mag[i * n + j]!;
          expect(Math.abs(got[i * n + j]! - ref.y[i * n + j]!)).toBeLessThanOrEqual(bound);
        }
      }
      l.dispose();
    }
  });

  it('rejects mismatched shapes, biases and disposed handles with INVALID_ARGUMENT', async () => {
    const l = be.linear(f32Weight('w', W, [n, k]));
    await expectCode(() => be.linearForward(be.fromHost(x.subarray(0, m * (k - 1)), m, k - 1), l), 'INVALID_ARGUMENT');
    await expectCode(() => be.linear(f32Weight('w', W, [n, k]), f32Weight('b', bias.subarray(0, n - 1), [n - 1])), 'INVALID_ARGUMENT');
    await expectCode(() => be.linear(f32Weight('w', W, [n * k])), 'INVALID_ARGUMENT');
    await expectCode(() => be.fromHost(x, m, k + 1), 'INVALID_ARGUMENT');
    l.dispose();
    l.dispose(); // idempotent
    await expectCode(() => be.linearForward(be.fromHost(x, m, k), l), 'INVALID_ARGUMENT');
    await expectCode(() => be.linearForward({ device: 'webgpu', rows: m, cols: k }, l), 'INVALID_ARGUMENT');
  });
});

describe('layers sharing one input (linearForwardMany)', () => {
  it('gives each layer the bits of its own linearForward: 4-bit fast and exact, Q8_0 fast, int8, f16; 1 and 3 rows', async () => {
    const k = 128;
    const w4 = (name: string, n: number, seed: number, dq: boolean) => {
      const { packed, quantState } = quantize4bit(rand(n * k, seed, 0.05), { quantType: 'nf4', blocksize: 64, compressStatistics: dq, shape: [n, k] });
      return { kind: '4bit' as const, name, packed, quantState };
    };
    const int8 = (name: string, n: number, seed: number) => {
      const { CB, SCB } = int8VectorwiseQuant(rand(n * k, seed, 0.05), { shape: [n, k] });
      return { kind: 'int8' as const, name, shape: [n, k] as [number, number], CB, SCB };
    };
    for (const kernels of ['fast', 'exact'] as const) {
      const b = new CpuBackend();
      b.kernels = kernels;
      const layers = [
        b.linear(w4('q', 96, 3, false)),
        b.linear(w4('k', 32, 4, true), f32Weight('kb', rand(32, 5), [32])),
        b.linear(q8_0ToBlockwise8('v', [32, k], q8_0Bytes(32, k, 6))),
        b.linear(int8('g', 64, 7)),
        b.linear(halfWeight('u', rand(64 * k, 8, 0.05), [64, k], 'float16').w),
      ];
      for (const m of [1, 3]) {
        const x = b.fromHost(rand(m * k, 10 + m), m, k);
        const many = b.linearForwardMany(x, layers);
        for (let i = 0; i < layers.length; i++) {
          const one = await b.read(b.linearForward(x, layers[i]!));
          const got = await b.read(many[i]!);
          expect(Array.from(new Uint32Array(got.buffer)), `${kernels} layer ${i}, ${m} rows`).toEqual(Array.from(new Uint32Array(one.buffer)));
        }
      }
      await expectCode(() => b.linearForwardMany(b.fromHost(rand(64), 1, 64), layers), 'INVALID_ARGUMENT');
      for (const l of layers) l.dispose();
    }
  });

  it('wasm Input: rows that do not divide, no rows and a layer of another width are LowbitErrors', async () => {
    const { wasm } = await import('../dist/runtime/wasm.js');
    const { callWasm } = await import('../dist/errors.js');
    const w = wasm();
    await expectCode(() => callWasm(() => new w.Input(new Float32Array(10), 3)), 'LENGTH_MISMATCH');
    await expectCode(() => callWasm(() => new w.Input(new Float32Array(0), 1)), 'EMPTY_TENSOR');
    await expectCode(() => callWasm(() => new w.Input(new Float32Array(4), 0)), 'EMPTY_TENSOR');
    const input = new w.Input(rand(64), 1);
    const l = w.Linear.dense(rand(32 * 32), 32, 32);
    await expectCode(() => callWasm(() => l.forwardInput(input)), 'LENGTH_MISMATCH');
    await expectCode(() => callWasm(() => l.setComputeDtype('float16')), 'INVALID_ARGUMENT');
    expect(l.format).toBe('float32');
    l.free();
    input.free();
  });
});

describe('block-wise 8-bit linear layers', () => {
  // [13, 100] in blocks of 64: blocks span rows, and 13 * 100 % 64 != 0 (a partial last block).
  const [n, k] = [13, 100];
  const W = rand(n * k, 31, 0.3);
  const bias = rand(n, 32);

  it('bitsandbytes dynamic map (quantizeBlockwise) matches dequantize-then-f32-matmul within the summation bound', async () => {
    for (const blocksize of [64, 256, 4096]) {
      const { q, state } = quantizeBlockwise(W, { blocksize });
      const deq = dequantizeBlockwise(q, state);
      const w = blockwise8FromQuantized('w', [n, k], q, state);
      const l = be.linear(w, f32Weight('b', bias, [n]));
      expect([l.outFeatures, l.inFeatures, l.format]).toEqual([n, k, 'blockwise8']);
      // codes + f32 absmax + the 256-entry code table + the f32 bias
      expect(l.bytes).toBe(n * k + state.absmax.length * 4 + 256 * 4 + n * 4);
      const dense = be.linear(f32Weight('wd', deq, [n, k]), f32Weight('b', bias, [n]));
      for (const rows of [1, 2, 5, 9]) {
        const xs = rand(rows * k, 33 + rows);
        const got = await be.read(be.linearForward(be.fromHost(xs, rows, k), l));
        const ref = naiveMatmul(xs, rows, deq, n, k, bias);
        expectSumBound(got, ref, k);
        // the f32 dense kernel on the dequantized weights: same products, so within twice the bound
        const d = await be.read(be.linearForward(be.fromHost(xs, rows, k), dense));
        for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - d[i]!)).toBeLessThanOrEqual(2 * (k + 2) * 2 ** -22 * ref.mag[i]! + 1e-30);
      }
      l.dispose();
      dense.dispose();
    }
  });

  it("GGUF Q8_0 bytes (int8 code, blocks of 32): format q8_0, 1.125 bytes per weight, exact weights (kernels: 'exact'); the fast kernels within their bound", async () => {
    const [rows, cols] = [24, 96];
    const w = q8_0ToBlockwise8('blk.0.ffn_up.weight', [rows, cols], q8_0Bytes(rows, cols, 41));
    expect([w.blocksize, w.absmax.length, Array.from(w.code.subarray(126, 130))]).toEqual([32, (rows * cols) / 32, [126, 127, -128, -127]]);
    const fast = be.linear(w);
    const exactBe = new CpuBackend();
    exactBe.kernels = 'exact';
    const l = exactBe.linear(w);
    expect([l.format, l.bytes]).toEqual(['q8_0', rows * cols * 1.125]);
    // identity activations read back every weight: d * q exactly
    const eye = new Float32Array(cols * cols);
    for (let i = 0; i < cols; i++) eye[i * cols + i] = 1;
    const y = await exactBe.read(exactBe.linearForward(exactBe.fromHost(eye, cols, cols), l));
    for (let c = 0; c < cols; c++)
      for (let r = 0; r < rows; r++) {
        const want = Math.fround(((w.q[r * cols + c]! << 24) >> 24) * w.absmax[Math.floor((r * cols + c) / 32)]!);
        if (y[c * rows + r] !== want) throw new Error(`W[${r}, ${c}]: got ${y[c * rows + r]}, want ${want}`);
      }
    const xs = rand(3 * cols, 42);
    const deq = dequantizeBlockwise(w.q, { absmax: w.absmax, code: w.code, blocksize: 32 });
    expectSumBound(await exactBe.read(exactBe.linearForward(exactBe.fromHost(xs, 3, cols), l)), naiveMatmul(xs, 3, deq, rows, cols), cols);
    // fast kernels (3 rows: integer path): weights exact, activations rounded to d/2, d = max|x| / 8191 per 32
    const yf = await be.read(be.linearForward(be.fromHost(xs, 3, cols), fast));
    const ref = naiveMatmul(xs, 3, deq, rows, cols);
    for (let r = 0; r < 3; r++)
      for (let j = 0; j < rows; j++) {
        let bound = (cols + 8) * 2 ** -22 * ref.mag[r * rows + j]!;
        for (let t = 0; t < cols; t++) {
          let amax = 0;
          for (let u = t - (t % 32); u < t - (t % 32) + 32; u++) amax = Math.max(amax, Math.abs(xs[r * cols + u]!));
          bound += (amax / 8191 / 2) * Math.abs(deq[j * cols + t]!);
        }
        const i = r * rows + j;
        if (!(Math.abs(yf[i]! - ref.y[i]!) <= bound)) throw new Error(`fast [${r}, ${j}]: got ${yf[i]}, want ${ref.y[i]} (bound ${bound})`);
      }
    expect(Array.from(yf).some((v, i) => v !== Math.fround(ref.y[i]!))).toBe(true);
    fast.dispose();
    // another code with the same layout is the general table path, same results
    const code = int8Code();
    code[0] = -0;
    const g = exactBe.linear({ ...w, code });
    expect(g.format).toBe('blockwise8');
    expectSumBound(await exactBe.read(exactBe.linearForward(exactBe.fromHost(xs, 3, cols), g)), naiveMatmul(xs, 3, deq, rows, cols), cols);
    l.dispose();
    g.dispose();
  });

  it('splitRows (GPT-2 c_attn) gives parts whose outputs are the whole layer\'s columns', async () => {
    const { splitRows } = await import('../dist/models/weights.js');
    const [rows, cols] = [12, 64];
    const w = q8_0ToBlockwise8('c_attn', [rows, cols], q8_0Bytes(rows, cols, 51));
    const xs = rand(2 * cols, 52);
    const whole = await be.read(be.linearForward(be.fromHost(xs, 2, cols), be.linear(w)));
    const parts = splitRows(w, 3) as Blockwise8Weight[];
    for (const [p, part] of parts.entries()) {
      expect(part.shape).toEqual([4, cols]);
      const y = await be.read(be.linearForward(be.fromHost(xs, 2, cols), be.linear(part)));
      for (let i = 0; i < 2; i++) expect(Array.from(y.subarray(i * 4, i * 4 + 4))).toEqual(Array.from(whole.subarray(i * rows + p * 4, i * rows + p * 4 + 4)));
    }
    // parts must be whole blocks: 2 rows of 32 in blocks of 64 cannot split into 2
    const bq = quantizeBlockwise(rand(64, 53), { blocksize: 64 });
    await expectCode(() => splitRows(blockwise8FromQuantized('c', [2, 32], bq.q, bq.state), 2), 'UNSUPPORTED_DTYPE');
  });

  it('bad shapes, sizes, codes and biases are LowbitErrors', async () => {
    const { q, state } = quantizeBlockwise(W, { blocksize: 64 });
    const w: Blockwise8Weight = blockwise8FromQuantized('w', [n, k], q, state);
    await expectCode(() => be.linear({ ...w, shape: [n, k + 1] }), 'LENGTH_MISMATCH');
    await expectCode(() => be.linear({ ...w, absmax: w.absmax.subarray(1) }), 'INCONSISTENT_STATE');
    await expectCode(() => be.linear({ ...w, code: w.code.subarray(0, 255) }), 'INVALID_ARGUMENT');
    await expectCode(() => be.linear({ ...w, blocksize: 48 }), 'UNSUPPORTED_BLOCKSIZE');
    await expectCode(() => be.linear({ ...w, shape: [n * k] as unknown as [number, number] }), 'INVALID_ARGUMENT');
    await expectCode(() => be.linear(w, f32Weight('b', bias.subarray(0, n - 1), [n - 1])), 'INVALID_ARGUMENT');
    await expectCode(() => blockwise8FromQuantized('w', [n, k + 1], q, state), 'LENGTH_MISMATCH');
    await expectCode(() => blockwise8FromQuantized('w', [n, k], q, { ...state, absmax: state.absmax.subarray(1) }), 'INCONSISTENT_STATE');
    await expectCode(() => blockwise8FromQuantized('w', [n, k], q, { ...state, blocksize: 100 }), 'UNSUPPORTED_BLOCKSIZE');
    await expectCode(() => blockwise8FromQuantized('w', [n, k], q, { ...state, code: dynamicMap(true).subarray(1) }), 'INVALID_ARGUMENT');
    await expectCode(() => q8_0ToBlockwise8('w', [4, 48], new Uint8Array(6 * 34)), 'MALFORMED_FILE');
    await expectCode(() => q8_0ToBlockwise8('w', [4, 64], new Uint8Array(8 * 34 - 1)), 'MALFORMED_FILE');
    const l = be.linear(w);
    await expectCode(() => be.linearForward(be.fromHost(rand(2 * (k - 1), 1), 2, k - 1), l), 'INVALID_ARGUMENT');
    l.dispose();
  });
});

describe('norms and activations', () => {
  const [rows, h] = [3, 40];
  const x = rand(rows * h, 21, 2);
  const w = rand(h, 22);
  const b = rand(h, 23);

  it('rmsNorm', async () => {
    const y = await be.read(be.rmsNorm(be.fromHost(x, rows, h), be.vector(w), 1e-6));
    const want: number[] = [];
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let j = 0; j < h; j++) ss += x[r * h + j]! ** 2;
      const inv = 1 / Math.sqrt(ss / h + 1e-6);
      for (let j = 0; j < h; j++) want.push(w[j]! * x[r * h + j]! * inv);
    }
    expectClose(y, want);
  });

  it('layerNorm with and without bias (DenseWeight vectors)', async () => {
    const wv = be.vector(f32Weight('w', w, [h]));
    const bv = be.vector(halfWeight('b', b, [h], 'bfloat16').w);
    const bvals = fromHalf(toHalf(b, 'bfloat16'));
    for (const withBias of [true, false]) {
      const y = await be.read(be.layerNorm(be.fromHost(x, rows, h), wv, withBias ? bv : undefined, 1e-5));
      const want: number[] = [];
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let j = 0; j < h; j++) s += x[r * h + j]!;
        const mean = s / h;
        let v = 0;
        for (let j = 0; j < h; j++) v += (x[r * h + j]! - mean) ** 2;
        const inv = 1 / Math.sqrt(v / h + 1e-5);
        for (let j = 0; j < h; j++) want.push((x[r * h + j]! - mean) * inv * w[j]! + (withBias ? bvals[j]! : 0));
      }
      expectClose(y, want, 1e-5, 1e-5);
    }
    await expectCode(() => be.rmsNorm(be.fromHost(x, rows, h), be.vector(w.subarray(1)), 1e-6), 'INVALID_ARGUMENT');
  });

  /** erf to ~1e-15 (series / continued fraction would be overkill; use a high-order expansion). */
  function erf(z: number): number {
    // Taylor series converges fast for |z| <= 3; beyond, erf is 1 within f32.
    if (Math.abs(z) > 4) return Math.sign(z);
    let sum = 0;
    let term = z;
    for (let n = 0; n < 80; n++) {
      sum += term / (2 * n + 1);
      term *= (-z * z) / (n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }

  it('silu, gelu, geluTanh, swiglu', async () => {
    const xa = be.fromHost(x, rows, h);
    const silu = (v: number) => v / (1 + Math.exp(-v));
    expectClose(await be.read(be.silu(xa)), Array.from(x, silu));
    expectClose(await be.read(be.gelu(xa)), Array.from(x, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))));
    expectClose(await be.read(be.geluTanh(xa)), Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))));
    const up = rand(rows * h, 24);
    expectClose(await be.read(be.swiglu(xa, be.fromHost(up, rows, h))), Array.from(x, (v, i) => silu(v) * up[i]!));
    await expectCode(() => be.swiglu(xa, be.fromHost(up, h, rows)), 'INVALID_ARGUMENT');
  });
});

describe('rope', () => {
  it('ropeInvFreq matches theta^(-2i/d)', () => {
    const f = ropeInvFreq(16, 10000);
    expect(f.length).toBe(8);
    expectClose(f, Array.from({ length: 8 }, (_, i) => 1 / 10000 ** ((2 * i) / 16)), 1e-6, 0);
    const l3 = ropeInvFreq(16, 500000, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(l3.length).toBe(8);
    expect(l3[0]).toBeCloseTo(1, 6); // high frequencies are kept
    expect(l3[7]!).toBeLessThan(f[7]!); // low frequencies are scaled down
    expect(() => ropeInvFreq(15, 10000)).toThrow(LowbitError);
  });

  it('rotate-half RoPE matches a direct JS implementation', async () => {
    const [nHeads, hd] = [3, 8];
    const positions = new Uint32Array([0, 3, 7, 100]);
    const x = rand(positions.length * nHeads * hd, 31);
    const invFreq = ropeInvFreq(hd, 10000);
    const y = await be.read(be.rope(be.fromHost(x, positions.length, nHeads * hd), nHeads, positions, { headDim: hd, invFreq }));
    const want = new Float64Array(x.length);
    const half = hd / 2;
    positions.forEach((p, t) => {
      for (let hh = 0; hh < nHeads; hh++) {
        const base = (t * nHeads + hh) * hd;
        for (let i = 0; i < half; i++) {
          const a = Math.fround(p * invFreq[i]!);
          const [c, s] = [Math.cos(a), Math.sin(a)];
          const [x1, x2] = [x[base + i]!, x[base + i + half]!];
          want[base + i] = x1 * c - x2 * s;
          want[base + i + half] = x2 * c + x1 * s;
        }
      }
    });
    expectClose(y, want, 1e-5, 1e-6);
    await expectCode(() => be.rope(be.fromHost(x, positions.length, nHeads * hd), nHeads, positions.subarray(1), { headDim: hd, invFreq }), 'INVALID_ARGUMENT');
  });
});

describe('attention', () => {
  const [nHeads, nKv, hd, total] = [4, 2, 8, 6];
  const q = rand(total * nHeads * hd, 41);
  const k = rand(total * nKv * hd, 42);
  const v = rand(total * nKv * hd, 43);

  function naive(scale = 1 / Math.sqrt(hd)): Float64Array {
    const out = new Float64Array(q.length);
    const group = nHeads / nKv;
    for (let t = 0; t < total; t++)
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / group);
        const scores: number[] = [];
        for (let p = 0; p <= t; p++) {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[(t * nHeads + h) * hd + i]! * k[(p * nKv + kvh) * hd + i]!;
          scores.push(d * scale);
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let p = 0; p <= t; p++)
          for (let i = 0; i < hd; i++) out[(t * nHeads + h) * hd + i]! += (e[p]! / z) * v[(p * nKv + kvh) * hd + i]!;
      }
    return out;
  }

  const slice = (a: Float32Array, from: number, to: number, cols: number) => be.fromHost(a.subarray(from * cols, to * cols), to - from, cols);

  it('GQA causal attention matches a naive implementation (default and explicit scale)', async () => {
    for (const scale of [undefined, 0.25]) {
      const cache = be.kvCache(16, nKv, hd);
      expect(cache.bytes).toBe(2 * 16 * nKv * hd * 4);
      const y = be.attention(slice(q, 0, total, nHeads * hd), slice(k, 0, total, nKv * hd), slice(v, 0, total, nKv * hd), cache, 0, nHeads, scale);
      expect([y.rows, y.cols]).toEqual([total, nHeads * hd]);
      expectClose(await be.read(y), naive(scale), 1e-5, 1e-6);
      cache.dispose();
    }
  });

  it('prefill 5 then decode 1 token at a time equals one 6-token pass', async () => {
    const full = be.kvCache(8, nKv, hd);
    const once = await be.read(be.attention(slice(q, 0, 6, nHeads * hd), slice(k, 0, 6, nKv * hd), slice(v, 0, 6, nKv * hd), full, 0, nHeads));
    const inc = be.kvCache(8, nKv, hd);
    const parts = [await be.read(be.attention(slice(q, 0, 5, nHeads * hd), slice(k, 0, 5, nKv * hd), slice(v, 0, 5, nKv * hd), inc, 0, nHeads))];
    parts.push(await be.read(be.attention(slice(q, 5, 6, nHeads * hd), slice(k, 5, 6, nKv * hd), slice(v, 5, 6, nKv * hd), inc, 5, nHeads)));
    const joined = new Float32Array(once.length);
    joined.set(parts[0]!, 0);
    joined.set(parts[1]!, parts[0]!.length);
    expect(Array.from(joined)).toEqual(Array.from(once));
    // and 1 + 1 + ... from an empty cache as well
    const step = be.kvCache(8, nKv, hd);
    const steps: number[] = [];
    for (let t = 0; t < total; t++) steps.push(...(await be.read(be.attention(slice(q, t, t + 1, nHeads * hd), slice(k, t, t + 1, nKv * hd), slice(v, t, t + 1, nKv * hd), step, t, nHeads))));
    expect(steps).toEqual(Array.from(once));
  });

  it('rejects cache overflow and bad shapes with INVALID_ARGUMENT', async () => {
    const cache = be.kvCache(4, nKv, hd);
    await expectCode(() => be.attention(slice(q, 0, 5, nHeads * hd), slice(k, 0, 5, nKv * hd), slice(v, 0, 5, nKv * hd), cache, 0, nHeads), 'INVALID_ARGUMENT');
    await expectCode(() => be.attention(slice(q, 0, 1, nHeads * hd), slice(k, 0, 1, nKv * hd), slice(v, 0, 1, nKv * hd), cache, 4, nHeads), 'INVALID_ARGUMENT');
    await expectCode(() => be.attention(slice(q, 0, 2, nHeads * hd), slice(k, 0, 1, nKv * hd), slice(v, 0, 2, nKv * hd), cache, 0, nHeads), 'INVALID_ARGUMENT');
    await expectCode(() => be.attention(slice(q, 0, 1, 3 * hd), slice(k, 0, 1, nKv * hd), slice(v, 0, 1, nKv * hd), cache, 0, 3), 'INVALID_ARGUMENT');
    await expectCode(() => be.kvCache(0, nKv, hd), 'INVALID_ARGUMENT');
  });
});

describe('embedding', () => {
  const [vocab, dim] = [11, 6];
  const table = rand(vocab * dim, 51);

  it('embed rows and project (x · tableᵀ), f32 and f16 tables', async () => {
    for (const dt of ['float32', 'float16'] as const) {
      const { w, values } = dt === 'float32' ? { w: f32Weight('emb', table, [vocab, dim]), values: table } : halfWeight('emb', table, [vocab, dim], dt);
      const e = be.embedding(w);
      expect([e.vocab, e.dim, e.bytes]).toEqual([vocab, dim, vocab * dim * (dt === 'float32' ? 4 : 2)]);
      const ids = new Uint32Array([3, 0, 10, 3]);
      const x = be.embed(e, ids);
      expect([x.rows, x.cols]).toEqual([4, dim]);
      const got = await be.read(x);
      ids.forEach((id, t) => expect(Array.from(got.subarray(t * dim, (t + 1) * dim))).toEqual(Array.from(values.subarray(id * dim, (id + 1) * dim))));
      const h = rand(2 * dim, 52);
      const logits = be.project(be.fromHost(h, 2, dim), e);
      expect([logits.rows, logits.cols]).toEqual([2, vocab]);
      expectSumBound(await be.read(logits), naiveMatmul(h, 2, values, vocab, dim), dim);
      await expectCode(() => be.embed(e, new Uint32Array([vocab])), 'INVALID_ARGUMENT');
      await expectCode(() => be.project(be.fromHost(h, 3, 4), e), 'INVALID_ARGUMENT');
      e.dispose();
    }
  });

  it('CpuActivation validates its shape', () => {
    expect(() => new CpuActivation(new Float32Array(5), 2, 3)).toThrow(LowbitError);
  });

  it('argmax and topK: first index on ties, stable descending order; tidy returns the result', async () => {
    const x = new Float32Array([1, 5, 5, -2, 5, 0, 7, 7, NaN, 3]);
    expect(Array.from(await be.argmax(be.fromHost(x, 2, 5)))).toEqual([1, 1]);
    expect(Array.from(await be.argmax(be.fromHost(new Float32Array([NaN, 1, NaN]), 1, 3)))).toEqual([1]);
    const t = await be.topK(be.fromHost(x, 1, 10), 5);
    expect(Array.from(t.indices)).toEqual([6, 7, 1, 2, 4]);
    expect(Array.from(t.values)).toEqual([7, 7, 5, 5, 5]);
    await expect(be.topK(be.fromHost(x, 2, 5), 1)).rejects.toThrow(LowbitError);
    await expect(be.topK(be.fromHost(x, 1, 10), 11)).rejects.toThrow(LowbitError);
    const a = be.fromHost(x, 1, 10);
    expect(be.tidy(() => a)).toBe(a);
  });
});
