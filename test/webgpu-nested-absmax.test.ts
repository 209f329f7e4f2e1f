/**
 * Double-quantized 4-bit absmax on WebGPU: the nested codes stay compressed on the device
 * (matmul4.wgsl NESTED_ABSMAX decodes them in every 4-bit kernel) and decode to exactly what the
 * CPU and bitsandbytes decode.
 *
 * Exactness through a matmul: with a one-hot activation row (or the identity as x), each output
 * is one product code[q] * absmax plus zeros, so it is the dequantized weight bit for bit; a
 * wrong absmax shows as a wrong value, not as rounding.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  init, CpuBackend, WebGpuBackend, QuantState, quantize4bit, dequantize4bit, toHalf, localSource, loadWeights, SafetensorsFile,
  type LoadedWeight,
} from '../dist/index.js';
import { testGpu } from './helpers/webgpu.js';

const env = await testGpu();
const suite = env.skip ? describe.skip : describe;

let gpu: WebGpuBackend;
let small: WebGpuBackend; // weights split into parts of at most 1 KiB, tree reduction
let plain: WebGpuBackend; // nestedAbsmax: false (absmax widened to f32 at upload)
let cpu: CpuBackend;

beforeAll(async () => {
  if (env.skip) return;
  await init();
  cpu = new CpuBackend();
  cpu.kernels = 'exact';
  gpu = await WebGpuBackend.create({ gpu: env.gpu! });
  small = await WebGpuBackend.create({ gpu: env.gpu!, maxBindingSize: 1024, subgroups: false });
  plain = await WebGpuBackend.create({ gpu: env.gpu!, nestedAbsmax: false });
});

afterAll(() => {
  gpu?.dispose();
  small?.dispose();
  plain?.dispose();
});

function rand(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

/** The weight [n, k] as the GPU's matmul sees it: x = I_k (GEMM), so y[i, j] = W[j, i]; returned as [n, k]. */
async function weightViaGemm(b: WebGpuBackend, w: LoadedWeight, n: number, k: number): Promise<Float32Array> {
  const eye = new Float32Array(k * k);
  for (let i = 0; i < k; i++) eye[i * k + i] = 1;
  const l = b.linear(w);
  const y = await b.read(b.linearForward(b.fromHost(eye, k, k), l));
  l.dispose();
  const out = new Float32Array(n * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) out[j * k + i] = y[i * n + j]!;
  return out;
}

/** Columns `cols` of W through the decode GEMV (one-hot rows of x): [cols.length, n]. */
async function columnsViaGemv(b: WebGpuBackend, w: LoadedWeight, k: number, cols: number[]): Promise<Float32Array[]> {
  const l = b.linear(w);
  const out: Float32Array[] = [];
  for (const c of cols) {
    const x = new Float32Array(k);
    x[c] = 1;
    out.push(await b.read(b.linearForward(b.fromHost(x, 1, k), l)));
  }
  l.dispose();
  return out;
}

function expectBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i]) && !(got[i] === 0 && want[i] === 0)) throw new Error(`${what}, element ${i}: gpu ${got[i]}, cpu ${want[i]}`);
  }
}

/** A copy of a double-quantized state whose nested absmax decodes in `dtype` (as bitsandbytes' nested_dtype). */
function withNestedDtype(st: QuantState, dtype: 'float32' | 'float16' | 'bfloat16'): QuantState {
  const f = st.fields();
  return QuantState.fromFields({ ...f, state2: { ...f.state2!, dtype } });
}

suite(`double-quantized absmax decoded on the GPU (${env.adapter ?? 'no adapter'})`, () => {
  it('stays compressed on the device: 1 byte per block instead of 4', async () => {
    const [n, k, bs] = [256, 1024, 64];
    const { packed, quantState } = quantize4bit(rand(n * k, 3, 0.2), { quantType: 'nf4', blocksize: bs, compressStatistics: true, shape: [n, k] });
    const w: LoadedWeight = { kind: '4bit', name: 'w', packed, quantState };
    const blocks = (n * k) / bs;
    const nestedBytes = gpu.linear(w).bytes;
    const f32Bytes = plain.linear(w).bytes;
    // the f32 absmax is 4 bytes per block; the nested form 1 byte per block + a 1 KiB header
    expect(f32Bytes - nestedBytes).toBeGreaterThanOrEqual(3 * blocks - 1200);
    expect(nestedBytes).toBeLessThan(f32Bytes);
  });

  // (n, k, blocksize): word-wise GEMV + gemv4 (k % 32 == 0), ragged k (blocks span rows, rows
  // start mid-byte), more than 256 blocks (several nested blocks), parts starting mid-word of codes
  const SHAPES: [number, number, number][] = [[40, 128, 64], [33, 100, 64], [17, 257, 32], [300, 96, 32], [24, 72, 32]];
  for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
    for (const qt of ['nf4', 'fp4'] as const) {
      it(`${qt}, nested dtype ${dtype}: GEMM on the identity and one-hot decode GEMVs give the CPU's dequantized weight bit for bit, whole and split`, async () => {
        for (const [n, k, bs] of SHAPES) {
          const q = quantize4bit(rand(n * k, n * 7 + k, 0.3), { quantType: qt, blocksize: bs, compressStatistics: true, shape: [n, k] });
          const st = withNestedDtype(q.quantState, dtype);
          expect(st.nested).toBe(true);
          const w: LoadedWeight = { kind: '4bit', name: `w${n}x${k}`, packed: q.packed, quantState: st };
          const want = dequantize4bit(q.packed, st, { outDtype: 'float32' }) as Float32Array;
          const cols = [0, Math.floor(k / 2), k - 1];
          for (const b of [gpu, small]) {
            const what = `${qt} ${dtype} [${n}, ${k}] bs ${bs}${b === small ? ' (split)' : ''}`;
            expectBits(await weightViaGemm(b, w, n, k), want, `${what} GEMM`);
            const got = await columnsViaGemv(b, w, k, cols);
            cols.forEach((c, i) => expectBits(got[i]!, Float32Array.from({ length: n }, (_, j) => want[j * k + c]!), `${what} GEMV column ${c}`));
          }
        }
      });
    }
  }

  it('gate / up / SwiGLU and the residual epilogue on nested absmax equal the f32-absmax upload', async () => {
    const [n, k, bs] = [37, 128, 64];
    const mk = (seed: number): LoadedWeight => {
      const { packed, quantState } = quantize4bit(rand(n * k, seed, 0.3), { quantType: 'nf4', blocksize: bs, compressStatistics: true, shape: [n, k] });
      return { kind: '4bit', name: `w${seed}`, packed, quantState };
    };
    const [gw, uw, dw] = [mk(1), mk(2), mk(3)];
    const x = rand(k, 9, 2);
    const r = rand(n, 10, 1);
    const run = async (b: WebGpuBackend) => {
      const xa = b.fromHost(x, 1, k);
      await b.synchronize();
      b.resetStats();
      const s = b.linearSwiglu(xa, b.linear(gw), b.linear(uw));
      const d = b.linearResidual(xa, b.linear(dw), b.fromHost(r, 1, n));
      const dispatches = b.stats().dispatches;
      return { s: await b.read(s), d: await b.read(d), dispatches };
    };
    const nested = await run(gpu);
    const widened = await run(plain);
    // the same absmax values, the same kernels: the same results, and still one dispatch each
    expect(nested.dispatches).toBe(2);
    expectBits(nested.s, widened.s, 'linearSwiglu');
    expectBits(nested.d, widened.d, 'linearResidual');
  });

  // bitsandbytes' own files: the double-quantized checkpoints transformers saved, against the
  // dequantization bitsandbytes computed (reference.safetensors, in the checkpoint's dtype)
  const ROOT = fileURLToPath(new URL('./fixtures/bnb-checkpoints/', import.meta.url));
  for (const variant of ['llama-nf4-dq', 'llama-fp4-dq']) {
    it(`${variant}: every 4-bit weight through the GPU's matmul equals bitsandbytes' dequantization`, async () => {
      const ref = await SafetensorsFile.open(await (await localSource(join(ROOT, variant))).open('reference.safetensors'));
      let checked = 0;
      for await (const w of loadWeights(await localSource(join(ROOT, variant)))) {
        if (w.kind !== '4bit') continue;
        expect(w.quantState.nested, w.name).toBe(true);
        const [n, k] = w.quantState.shape as [number, number];
        const got = await weightViaGemm(gpu, w, n, k);
        const info = ref.tensors.get(w.name)!;
        const want = await ref.read(w.name);
        // in the reference's dtype, by bits, except the sign of zero: FP4's code -0.0 times the
        // absmax is -0.0, which the sum 1 * (-0.0) + 0 * ... cannot keep
        const width = info.dtype === 'F32' ? 4 : 2;
        const ours = info.dtype === 'F32' ? new Uint32Array(got.buffer) : toHalf(got, info.dtype === 'F16' ? 'float16' : 'bfloat16').data;
        const copy = want.slice().buffer; // aligned
        const theirs = width === 4 ? new Uint32Array(copy) : new Uint16Array(copy);
        const signBit = width === 4 ? 0x80000000 : 0x8000;
        expect(ours.length, w.name).toBe(theirs.length);
        for (let i = 0; i < ours.length; i++) {
          const a = ours[i]!;
          const b = theirs[i]!;
          if (a !== b && !((a & (signBit - 1)) === 0 && (b & (signBit - 1)) === 0)) throw new Error(`${variant} ${w.name}, element ${i}: gpu bits ${a.toString(16)}, bitsandbytes ${b.toString(16)}`);
        }
        checked++;
      }
      expect(checked).toBeGreaterThan(0);
    });
  }
});
