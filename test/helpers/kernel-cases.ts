/**
 * shaders/cases.json for the TypeScript suites: the file's xorshift32 (as
 * crates/lowbit-gpu/tests/cases.rs writes it), each case's inputs drawn in the order
 * shaders/README.md lists, and one case run through any Backend (the WebGPU backend, the CPU
 * backend's fast or exact kernels) so that two backends can be compared on the same inputs.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dynamicMap, int8Code, quantize4bit, ropeInvFreq, toHalf, WebGpuBackend, type Backend, type DenseWeight, type LoadedWeight } from '../../dist/index.js';

export interface Tolerance {
  abs: number;
  rel: number;
}

/** One entry of `cases` (fields by kernel; see the file's `about`). */
export interface KernelCase {
  name: string;
  kernel: string;
  entry: string;
  seed: number;
  run?: { subgroups?: boolean; dot4?: boolean }[];
  tolerance?: Tolerance;
  [field: string]: unknown;
}

export interface CaseFile {
  prng: { name: string; check: { seed: number; first: number[] } };
  tolerance: Record<string, { gpu: Tolerance; fast: Tolerance }>;
  cases: KernelCase[];
}

export function loadCases(): CaseFile {
  return JSON.parse(readFileSync(fileURLToPath(new URL('../../shaders/cases.json', import.meta.url)), 'utf8')) as CaseFile;
}

/** xorshift32 (13, 17, 5). */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let s = this.s;
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    return (this.s = s);
  }
  /** ((next >> 8) - 2^23) * scale / 2^23: exact in f32 for a power-of-two scale. */
  values(len: number, scale: number): Float32Array {
    if (!(scale > 0 && Number.isInteger(Math.log2(scale)))) throw new Error('scales are powers of two');
    const out = new Float32Array(len);
    for (let i = 0; i < len; i++) out[i] = ((this.next() >>> 8) - 8388608) * (scale / 8388608);
    return out;
  }
}

/** |got - want| <= abs + rel * max|want| for every element. */
export function checkClose(got: Float32Array, want: Float32Array, tol: Tolerance, what: string): void {
  if (got.length !== want.length) throw new Error(`${what}: ${got.length} values vs ${want.length}`);
  let scale = 0;
  for (const w of want) scale = Math.max(scale, Math.abs(w));
  const bound = tol.abs + tol.rel * scale;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= bound)) throw new Error(`${what} [${i}]: ${got[i]} vs reference ${want[i]}: |Δ| = ${d} > ${bound}`);
  }
}

const num = (c: KernelCase, key: string): number => {
  const v = c[key];
  if (typeof v !== 'number') throw new Error(`${c.name}: '${key}' is not a number`);
  return v;
};

function denseWeight(name: string, v: Float32Array, shape: number[], storage: string): DenseWeight {
  if (storage === 'f32') return { kind: 'dense', name, dtype: 'F32', shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  const h = toHalf(v, storage === 'f16' ? 'float16' : 'bfloat16');
  return { kind: 'dense', name, dtype: storage === 'f16' ? 'F16' : 'BF16', shape, data: new Uint8Array(h.data.buffer, h.data.byteOffset, h.data.byteLength) };
}

function fourBit(c: KernelCase, r: Prng, n: number, bias: boolean): { w: LoadedWeight; b?: DenseWeight } {
  const k = num(c, 'k');
  const wv = r.values(n * k, 1 / 16);
  const bv = bias ? r.values(n, 1 / 8) : undefined;
  const q = quantize4bit(wv, { quantType: c.format as 'nf4', blocksize: num(c, 'blocksize'), compressStatistics: c.nested === true, shape: [n, k] });
  return { w: { kind: '4bit', name: `w${n}x${k}`, packed: q.packed, quantState: q.quantState }, ...(bv ? { b: denseWeight('bias', bv, [n], 'f32') } : {}) };
}

/** The entry point the hosts take for a linear case (the shapes decide it), to check the case's `entry`. */
export function linearEntry(c: KernelCase): string {
  const m = num(c, 'm');
  if (c.kernel === 'matmul_int8') return m === 1 ? 'int8_gemv' : 'int8_matmul';
  if (m > 1) return 'gemm';
  if (c.kernel === 'matmul_dense') return num(c, 'k') % 4 === 0 ? 'gemv_rows' : 'gemv';
  if (c.kernel === 'matmul_blockwise8') return num(c, 'k') % 16 === 0 ? 'gemv8' : 'gemv';
  return num(c, 'k') % 32 === 0 && num(c, 'blocksize') >= 32 ? 'gemv4' : 'gemv';
}

/** Runs case `c` on `b` with its inputs; returns its outputs (indices as numbers). */
export async function runCase(b: Backend, c: KernelCase): Promise<Float32Array[]> {
  const r = new Prng(c.seed);
  const read = async (a: ReturnType<Backend['fromHost']>) => {
    try {
      return await b.read(a);
    } finally {
      b.release(a);
    }
  };
  switch (c.kernel) {
    case 'matmul4': {
      const [m, n, k] = [num(c, 'm'), num(c, 'n'), num(c, 'k')];
      const { w, b: bias } = fourBit(c, r, n, c.bias === true);
      const x = r.values(m * k, 1);
      return [await read(b.linearForward(b.fromHost(x, m, k), b.linear(w, bias)))];
    }
    case 'matmul4_qkv': {
      const k = num(c, 'k');
      const ws = (c.n as number[]).map((n) => b.linear(fourBit(c, r, n, false).w));
      const x = r.values(k, 1);
      return Promise.all(b.linearForwardMany(b.fromHost(x, 1, k), ws).map(read));
    }
    case 'matmul_int8': {
      const [m, n, k] = [num(c, 'm'), num(c, 'n'), num(c, 'k')];
      const CB = new Int8Array(n * k);
      for (let i = 0; i < CB.length; i++) CB[i] = ((r.next() >>> 24) % 255) - 127;
      const SCB = new Float32Array(n);
      for (let i = 0; i < n; i++) SCB[i] = 1 / 64 + Math.abs(r.values(1, 0.5)[0]!);
      const bias = c.bias === true ? denseWeight('bias', r.values(n, 1 / 8), [n], 'f32') : undefined;
      const x = r.values(m * k, 8);
      const w = b.linear({ kind: 'int8', name: 'w8', CB, SCB, shape: [n, k] }, bias, { int8Threshold: num(c, 'threshold') });
      return [await read(b.linearForward(b.fromHost(x, m, k), w))];
    }
    case 'matmul_dense': {
      const [m, n, k] = [num(c, 'm'), num(c, 'n'), num(c, 'k')];
      const wv = r.values(n * k, 1 / 16);
      const bias = c.bias === true ? denseWeight('bias', r.values(n, 1 / 8), [n], 'f32') : undefined;
      const x = r.values(m * k, 1);
      return [await read(b.linearForward(b.fromHost(x, m, k), b.linear(denseWeight('w', wv, [n, k], c.storage as string), bias)))];
    }
    case 'matmul_blockwise8': {
      const [m, n, k, bs] = [num(c, 'm'), num(c, 'n'), num(c, 'k'), num(c, 'blocksize')];
      const q = new Uint8Array(n * k);
      for (let i = 0; i < q.length; i++) q[i] = r.next() >>> 24;
      const absmax = new Float32Array(Math.ceil((n * k) / bs));
      for (let i = 0; i < absmax.length; i++) absmax[i] = 1 / 64 + Math.abs(r.values(1, 0.5)[0]!);
      const bias = c.bias === true ? denseWeight('bias', r.values(n, 1 / 8), [n], 'f32') : undefined;
      const x = r.values(m * k, 1);
      const code = c.code === 'int8' ? int8Code() : dynamicMap(true);
      const w = b.linear({ kind: 'blockwise8', name: 'w8', shape: [n, k], q, absmax, code, blocksize: bs }, bias);
      return [await read(b.linearForward(b.fromHost(x, m, k), w))];
    }
    case 'norm': {
      const [rows, hidden, eps] = [num(c, 'rows'), num(c, 'hidden'), num(c, 'eps')];
      const x = b.fromHost(r.values(rows * hidden, 4), rows, hidden);
      const w = b.vector(r.values(hidden, 1));
      if (c.entry === 'rms_norm') return [await read(b.rmsNorm(x, w, eps))];
      const bias = c.bias === true ? b.vector(r.values(hidden, 1)) : undefined;
      return [await read(b.layerNorm(x, w, bias, eps))];
    }
    case 'rope': {
      const [nHeads, hd] = [num(c, 'n_heads'), num(c, 'head_dim')];
      const positions = Uint32Array.from(c.positions as number[]);
      const x = b.fromHost(r.values(positions.length * nHeads * hd, 1), positions.length, nHeads * hd);
      return [await read(b.rope(x, nHeads, positions, { headDim: hd, invFreq: ropeInvFreq(hd, num(c, 'theta')) }))];
    }
    case 'attention': {
      const [nHeads, nKv, hd] = [num(c, 'n_heads'), num(c, 'n_kv_heads'), num(c, 'head_dim')];
      const cache = b.kvCache(num(c, 'max_pos'), nKv, hd);
      // the split count is the WebGPU backend's; other backends have one attention kernel
      const splitting = b instanceof WebGpuBackend ? b : undefined;
      if (splitting) splitting.attentionSplits = c.splits as number | undefined;
      const outs: Float32Array[] = [];
      try {
        for (const [start, n] of c.calls as [number, number][]) {
          const q = b.fromHost(r.values(n * nHeads * hd, 1), n, nHeads * hd);
          const k = b.fromHost(r.values(n * nKv * hd, 1), n, nKv * hd);
          const v = b.fromHost(r.values(n * nKv * hd, 1), n, nKv * hd);
          outs.push(await read(b.attention(q, k, v, cache, start!, nHeads)));
        }
      } finally {
        if (splitting) splitting.attentionSplits = undefined;
      }
      return outs;
    }
    case 'elementwise': {
      const count = num(c, 'count');
      const a = b.fromHost(r.values(count, 16), 1, count);
      const second = () => b.fromHost(r.values(count, 16), 1, count);
      const ops: Record<string, () => ReturnType<Backend['add']>> = {
        add: () => b.add(a, second()),
        swiglu: () => b.swiglu(a, second()),
        silu_op: () => b.silu(a),
        gelu: () => b.gelu(a),
        gelu_tanh: () => b.geluTanh(a),
      };
      const op = ops[c.entry] ?? (() => { throw new Error(`${c.name}: elementwise entry ${c.entry}`); })();
      return [await read(op())];
    }
    case 'embedding': {
      const [vocab, dim] = [num(c, 'vocab'), num(c, 'dim')];
      const table = b.embedding(denseWeight('table', r.values(vocab * dim, 1), [vocab, dim], c.storage as string));
      const ids = new Uint32Array(num(c, 'ids'));
      for (let i = 0; i < ids.length; i++) ids[i] = r.next() % vocab;
      return [await read(b.embed(table, ids))];
    }
    case 'sample': {
      const [rows, cols] = [num(c, 'rows'), num(c, 'cols')];
      const x = b.fromHost(r.values(rows * cols, 4), rows, cols);
      if (c.entry === 'argmax') return [Float32Array.from(await b.argmax(x))];
      const { indices, values } = await b.topK(x, num(c, 'top_k'));
      return [Float32Array.from(indices), values];
    }
    default:
      throw new Error(`${c.name}: unknown kernel ${c.kernel}`);
  }
}
