/**
 * The CPU backend: wasm SIMD128 kernels (crates/lowbit-wasm/src/kernels.rs).
 *
 * Weights are copied into wasm memory once, when their handle is made, and stay there until
 * `dispose()`. Activations are host Float32Arrays ([rows, cols] row-major); each op copies its
 * (small) inputs into wasm memory and returns a new activation. Nothing is asynchronous except
 * `read` and `transfer`, to match the Backend interface.
 */
import { callWasm, LowbitError } from '../../errors.js';
import type { DenseWeight, LoadedWeight } from '../../loading/load-weights.js';
import { init, wasm, type WasmSource } from '../../runtime/wasm.js';
import type { Embedding, KvCache, Linear4, LinearBlockwise8, LinearDense, LinearInt8 } from '../../wasm/pkg/lowbit_wasm.js';
import { blockwise8Format } from '../../loading/blockwise8.js';
import type {
  LinearOptions,
  Activation, Backend, DeviceKind, EmbeddingHandle, KvCacheHandle, LinearHandle, Llama3RopeScaling, RopeSpec, VectorHandle,
} from '../backend.js';
import { denseData, denseToFloat32 } from './dense.js';

export { denseData, denseToFloat32 } from './dense.js';

function bad(message: string): never {
  throw new LowbitError('INVALID_ARGUMENT', message);
}

function isCount(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

function checkPositive(what: string, n: number): void {
  if (!isCount(n) || n === 0) bad(`${what} must be a positive integer, got ${n}`);
}

/**
 * RoPE inverse frequencies (headDim / 2 of them) for base `theta`, with optional Llama 3 scaling,
 * as transformers computes them (see crates/lowbit-core/src/kernels/rope.rs).
 */
export function ropeInvFreq(headDim: number, theta: number, llama3?: Llama3RopeScaling | null): Float32Array {
  checkPositive('headDim', headDim);
  const s = llama3 ? new Float32Array([llama3.factor, llama3.lowFreqFactor, llama3.highFreqFactor, llama3.originalMaxPositionEmbeddings]) : undefined;
  return callWasm(() => wasm().ropeInvFreq(headDim, theta, s));
}

/** A [rows, cols] f32 activation in host memory. */
export class CpuActivation implements Activation {
  readonly device = 'cpu' as const;
  constructor(
    /** Row-major values; owned by the activation (ops never modify it). */
    readonly data: Float32Array,
    readonly rows: number,
    readonly cols: number,
  ) {
    if (!isCount(rows) || !isCount(cols)) bad(`activation shape must be non-negative integers, got [${rows}, ${cols}]`);
    if (data.length !== rows * cols) bad(`activation data has ${data.length} values but [${rows}, ${cols}] needs ${rows * cols}`);
  }
}

/** Base of the handles: owns one wasm object, freed by dispose(). */
abstract class WasmHandle<T extends { free(): void }> {
  readonly device = 'cpu' as const;
  private obj: T | undefined;
  constructor(obj: T, readonly bytes: number) {
    this.obj = obj;
  }
  /** The wasm object; throws when the handle was disposed. */
  protected get inner(): T {
    return this.obj ?? bad(`${this.constructor.name} was disposed`);
  }
  get disposed(): boolean {
    return this.obj === undefined;
  }
  dispose(): void {
    const o = this.obj;
    this.obj = undefined;
    o?.free();
  }
}

export class CpuLinear extends WasmHandle<Linear4 | LinearDense | LinearInt8 | LinearBlockwise8> implements LinearHandle {
  constructor(obj: Linear4 | LinearDense | LinearInt8 | LinearBlockwise8, readonly outFeatures: number, readonly inFeatures: number, readonly format: string) {
    super(obj, obj.bytes());
  }
  forward(x: Float32Array, m: number): Float32Array {
    const o = this.inner;
    return callWasm(() => o.forward(x, m));
  }
}

export class CpuEmbedding extends WasmHandle<Embedding> implements EmbeddingHandle {
  constructor(obj: Embedding, readonly vocab: number, readonly dim: number) {
    super(obj, obj.bytes());
  }
  lookup(ids: Uint32Array): Float32Array {
    const o = this.inner;
    return callWasm(() => o.lookup(ids));
  }
  project(x: Float32Array, m: number): Float32Array {
    const o = this.inner;
    return callWasm(() => o.project(x, m));
  }
}

export class CpuKvCache extends WasmHandle<KvCache> implements KvCacheHandle {
  constructor(obj: KvCache, readonly maxPositions: number, readonly nKvHeads: number, readonly headDim: number) {
    super(obj, obj.bytes());
  }
  attend(q: Float32Array, k: Float32Array, v: Float32Array, n: number, start: number, nHeads: number, scale?: number): Float32Array {
    const o = this.inner;
    return callWasm(() => o.attend(q, k, v, n, start, nHeads, scale));
  }
}

/** A per-feature f32 vector (host memory; dispose is a no-op). */
export class CpuVector implements VectorHandle {
  readonly device = 'cpu' as const;
  constructor(readonly data: Float32Array) {}
  get length(): number {
    return this.data.length;
  }
  get bytes(): number {
    return this.data.byteLength;
  }
  dispose(): void {}
}

function act(x: Activation, what: string): CpuActivation {
  if (x instanceof CpuActivation) return x;
  return bad(`${what} is on device '${x.device}', not on the CPU backend: transfer it first`);
}

function sameShape(a: CpuActivation, b: CpuActivation, op: string): void {
  if (a.rows !== b.rows || a.cols !== b.cols) bad(`${op}: shapes [${a.rows}, ${a.cols}] and [${b.rows}, ${b.cols}] differ`);
}

function handle<T>(h: unknown, cls: abstract new (...a: never[]) => T, what: string): T {
  if (h instanceof cls) return h;
  return bad(`${what} is not a CPU backend handle (make it with this backend)`);
}

/** A DenseWeight's shape as [out, in] for a linear layer. */
function shape2(name: string, shape: readonly number[]): [number, number] {
  if (shape.length !== 2 || !shape.every((d) => isCount(d) && d > 0)) bad(`${name}: a linear weight must be 2-D [out, in] with positive sizes, got [${shape.join(', ')}]`);
  return [shape[0]!, shape[1]!];
}

function vectorData(v: DenseWeight | Float32Array): Float32Array {
  if (v instanceof Float32Array) return v.slice();
  const d = denseToFloat32(v);
  return d.buffer === v.data.buffer ? d.slice() : d;
}

export interface CpuBackendOptions {
  /** Where init() loads the wasm module from (see init()). */
  wasm?: WasmSource;
}

export class CpuBackend implements Backend {
  readonly device: DeviceKind = 'cpu';
  readonly name = 'wasm-simd128';

  /** Loads the wasm module (if needed) and returns a backend. */
  static async create(options: CpuBackendOptions = {}): Promise<CpuBackend> {
    await init(options.wasm);
    return new CpuBackend();
  }

  /** Needs init() to have finished (use CpuBackend.create() otherwise). */
  constructor() {
    wasm();
  }

  // --- weights

  linear(weight: LoadedWeight, bias?: DenseWeight, options: LinearOptions = {}): LinearHandle {
    const w = wasm();
    let b: Float32Array | undefined;
    if (bias !== undefined) {
      b = denseToFloat32(bias);
    }
    const checkBias = (n: number) => {
      if (b !== undefined && b.length !== n) bad(`${bias!.name}: bias has ${b.length} values but ${weight.name} has ${n} outputs`);
    };
    switch (weight.kind) {
      case '4bit': {
        const st = weight.quantState;
        const [n, k] = shape2(weight.name, st.shape);
        checkBias(n);
        const absmax = st.absmaxF32();
        const obj = callWasm(() => new w.Linear4(weight.packed, absmax, st.quantType, st.blocksize, n, k, b));
        const dtype = options.computeDtype ?? 'float32';
        if (!['float32', 'float16', 'bfloat16'].includes(dtype)) bad(`computeDtype must be float32, float16 or bfloat16, got ${String(dtype)}`);
        if (dtype !== 'float32') callWasm(() => obj.setComputeDtype(dtype));
        return new CpuLinear(obj, n, k, `4bit-${st.quantType}`);
      }
      case 'int8': {
        const [n, k] = shape2(weight.name, weight.shape);
        checkBias(n);
        const threshold = options.int8Threshold ?? 6.0;
        if (!Number.isFinite(threshold) || threshold < 0) bad(`int8Threshold must be a finite number >= 0, got ${threshold}`);
        const obj = callWasm(() => new w.LinearInt8(weight.CB, weight.SCB, n, k, threshold, b));
        return new CpuLinear(obj, n, k, 'int8');
      }
      case 'blockwise8': {
        // Block-wise 8-bit (GGUF Q8_0 or bitsandbytes quantize_blockwise); the kernel checks the sizes.
        const [n, k] = shape2(weight.name, weight.shape);
        checkBias(n);
        const obj = callWasm(() => new w.LinearBlockwise8(weight.q, weight.absmax, weight.code, weight.blocksize, n, k, b));
        return new CpuLinear(obj, n, k, blockwise8Format(weight));
      }
      case 'dense': {
        const [n, k] = shape2(weight.name, weight.shape);
        checkBias(n);
        const d = denseData(weight);
        const obj = callWasm(() => (d instanceof Float32Array ? new w.LinearDense(d, n, k, b) : w.LinearDense.fromHalf(d.data, d.dtype, n, k, b)));
        return new CpuLinear(obj, n, k, d instanceof Float32Array ? 'float32' : d.dtype);
      }
      default:
        return bad(`unknown weight kind '${(weight as { kind?: unknown }).kind}'`);
    }
  }

  embedding(table: DenseWeight): EmbeddingHandle {
    const w = wasm();
    const [vocab, dim] = shape2(table.name, table.shape);
    const d = denseData(table);
    const obj = callWasm(() => (d instanceof Float32Array ? new w.Embedding(d, vocab, dim) : w.Embedding.fromHalf(d.data, d.dtype, vocab, dim)));
    return new CpuEmbedding(obj, vocab, dim);
  }

  vector(v: DenseWeight | Float32Array): VectorHandle {
    return new CpuVector(vectorData(v));
  }

  kvCache(maxPositions: number, nKvHeads: number, headDim: number): KvCacheHandle {
    checkPositive('maxPositions', maxPositions);
    checkPositive('nKvHeads', nKvHeads);
    checkPositive('headDim', headDim);
    const obj = callWasm(() => new (wasm().KvCache)(maxPositions, nKvHeads, headDim));
    return new CpuKvCache(obj, maxPositions, nKvHeads, headDim);
  }

  // --- activations

  /** Copies `data` (the caller may reuse it). */
  fromHost(data: Float32Array, rows: number, cols: number): Activation {
    if (!(data instanceof Float32Array)) bad('fromHost expects a Float32Array');
    return new CpuActivation(data.slice(), rows, cols);
  }

  read(x: Activation): Promise<Float32Array> {
    try {
      return Promise.resolve(act(x, 'read: x').data.slice());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async transfer(x: Activation, from: Backend): Promise<Activation> {
    if (x instanceof CpuActivation) return x;
    const data = await from.read(x);
    return new CpuActivation(data, x.rows, x.cols);
  }

  release(_x: Activation): void {
    // Host arrays: the garbage collector reclaims them.
  }

  tidy<T extends Activation>(fn: () => T): T {
    return fn();
  }

  argmax(x: Activation): Promise<Uint32Array> {
    try {
      const a = act(x, 'argmax: x');
      if (a.rows === 0 || a.cols === 0) bad(`argmax: x is [${a.rows}, ${a.cols}]`);
      const out = new Uint32Array(a.rows);
      for (let r = 0; r < a.rows; r++) {
        const row = a.data.subarray(r * a.cols, (r + 1) * a.cols);
        // NaN never wins; an all-NaN row gives 0 (as the WGSL kernel does)
        let best = -1;
        let bv = -Infinity;
        for (let i = 0; i < row.length; i++) {
          const v = row[i]!;
          if (v > bv || (best < 0 && v === bv)) {
            best = i;
            bv = v;
          }
        }
        out[r] = Math.max(best, 0);
      }
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  topK(x: Activation, k: number): Promise<{ indices: Uint32Array; values: Float32Array }> {
    try {
      const a = act(x, 'topK: x');
      if (a.rows !== 1 || a.cols === 0) bad(`topK: x must be one row, got [${a.rows}, ${a.cols}]`);
      if (!Number.isInteger(k) || k < 1 || k > a.cols) bad(`topK: k must be an integer in [1, ${a.cols}], got ${k}`);
      // a stable descending sort: larger first, lower index first on ties (NaN last)
      const idx = Array.from(a.data.keys()).sort((i, j) => {
        const u = a.data[i]!;
        const v = a.data[j]!;
        return u > v ? -1 : u < v ? 1 : Number.isNaN(u) === Number.isNaN(v) ? i - j : Number.isNaN(u) ? 1 : -1;
      }).slice(0, k);
      return Promise.resolve({ indices: Uint32Array.from(idx), values: Float32Array.from(idx, (i) => a.data[i]!) });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  dispose(): void {
    // Handles own their wasm objects; the module itself stays loaded for other users.
  }

  // --- ops

  embed(table: EmbeddingHandle, ids: Uint32Array): Activation {
    const t = handle(table, CpuEmbedding, 'embed: table');
    if (!(ids instanceof Uint32Array)) bad('embed: ids must be a Uint32Array');
    if (ids.length === 0) bad('embed: no token ids');
    return new CpuActivation(t.lookup(ids), ids.length, t.dim);
  }

  linearForward(x: Activation, w: LinearHandle): Activation {
    const a = act(x, 'linearForward: x');
    const l = handle(w, CpuLinear, 'linearForward: weight');
    if (a.cols !== l.inFeatures) bad(`linearForward: x has ${a.cols} columns but the ${l.format} weight [${l.outFeatures}, ${l.inFeatures}] takes ${l.inFeatures}`);
    if (a.rows === 0) bad('linearForward: x has no rows');
    return new CpuActivation(l.forward(a.data, a.rows), a.rows, l.outFeatures);
  }

  project(x: Activation, table: EmbeddingHandle): Activation {
    const a = act(x, 'project: x');
    const t = handle(table, CpuEmbedding, 'project: table');
    if (a.cols !== t.dim) bad(`project: x has ${a.cols} columns but the embedding dim is ${t.dim}`);
    if (a.rows === 0) bad('project: x has no rows');
    return new CpuActivation(t.project(a.data, a.rows), a.rows, t.vocab);
  }

  rmsNorm(x: Activation, weight: VectorHandle, eps: number): Activation {
    const a = act(x, 'rmsNorm: x');
    const w = handle(weight, CpuVector, 'rmsNorm: weight');
    if (w.length !== a.cols) bad(`rmsNorm: weight has ${w.length} values but x has ${a.cols} columns`);
    if (a.rows === 0) bad('rmsNorm: x has no rows');
    return new CpuActivation(callWasm(() => wasm().rmsNorm(a.data, a.cols, w.data, eps)), a.rows, a.cols);
  }

  layerNorm(x: Activation, weight: VectorHandle, bias: VectorHandle | undefined, eps: number): Activation {
    const a = act(x, 'layerNorm: x');
    const w = handle(weight, CpuVector, 'layerNorm: weight');
    const b = bias === undefined ? undefined : handle(bias, CpuVector, 'layerNorm: bias');
    if (w.length !== a.cols) bad(`layerNorm: weight has ${w.length} values but x has ${a.cols} columns`);
    if (b !== undefined && b.length !== a.cols) bad(`layerNorm: bias has ${b.length} values but x has ${a.cols} columns`);
    if (a.rows === 0) bad('layerNorm: x has no rows');
    return new CpuActivation(callWasm(() => wasm().layerNorm(a.data, a.cols, w.data, b?.data, eps)), a.rows, a.cols);
  }

  add(a: Activation, b: Activation): Activation {
    const x = act(a, 'add: a');
    const y = act(b, 'add: b');
    sameShape(x, y, 'add');
    const out = new Float32Array(x.data.length);
    for (let i = 0; i < out.length; i++) out[i] = x.data[i]! + y.data[i]!;
    return new CpuActivation(out, x.rows, x.cols);
  }

  silu(x: Activation): Activation {
    const a = act(x, 'silu: x');
    return new CpuActivation(callWasm(() => wasm().silu(a.data)), a.rows, a.cols);
  }

  geluTanh(x: Activation): Activation {
    const a = act(x, 'geluTanh: x');
    return new CpuActivation(callWasm(() => wasm().geluTanh(a.data)), a.rows, a.cols);
  }

  gelu(x: Activation): Activation {
    const a = act(x, 'gelu: x');
    return new CpuActivation(callWasm(() => wasm().gelu(a.data)), a.rows, a.cols);
  }

  swiglu(gate: Activation, up: Activation): Activation {
    const g = act(gate, 'swiglu: gate');
    const u = act(up, 'swiglu: up');
    sameShape(g, u, 'swiglu');
    return new CpuActivation(callWasm(() => wasm().swiglu(g.data, u.data)), g.rows, g.cols);
  }

  rope(x: Activation, nHeads: number, positions: Uint32Array, spec: RopeSpec): Activation {
    const a = act(x, 'rope: x');
    checkPositive('rope: nHeads', nHeads);
    checkPositive('rope: headDim', spec.headDim);
    if (a.cols !== nHeads * spec.headDim) bad(`rope: x has ${a.cols} columns but ${nHeads} heads of ${spec.headDim} need ${nHeads * spec.headDim}`);
    if (!(positions instanceof Uint32Array)) bad('rope: positions must be a Uint32Array');
    if (positions.length !== a.rows) bad(`rope: ${positions.length} positions for ${a.rows} rows`);
    if (spec.invFreq.length * 2 !== spec.headDim) bad(`rope: headDim ${spec.headDim} needs ${spec.headDim / 2} inverse frequencies, got ${spec.invFreq.length}`);
    return new CpuActivation(callWasm(() => wasm().applyRope(a.data, nHeads, spec.headDim, positions, spec.invFreq)), a.rows, a.cols);
  }

  attention(q: Activation, k: Activation, v: Activation, cache: KvCacheHandle, start: number, nHeads: number, scale?: number): Activation {
    const qa = act(q, 'attention: q');
    const ka = act(k, 'attention: k');
    const va = act(v, 'attention: v');
    const c = handle(cache, CpuKvCache, 'attention: cache');
    checkPositive('attention: nHeads', nHeads);
    if (!isCount(start)) bad(`attention: start must be a non-negative integer, got ${start}`);
    const n = qa.rows;
    if (n === 0) bad('attention: q has no rows');
    if (nHeads % c.nKvHeads !== 0) bad(`attention: ${nHeads} query heads are not a multiple of the cache's ${c.nKvHeads} kv heads`);
    const kvCols = c.nKvHeads * c.headDim;
    if (qa.cols !== nHeads * c.headDim) bad(`attention: q has ${qa.cols} columns but ${nHeads} heads of ${c.headDim} need ${nHeads * c.headDim}`);
    if (ka.rows !== n || ka.cols !== kvCols) bad(`attention: k is [${ka.rows}, ${ka.cols}] but [${n}, ${kvCols}] is needed`);
    if (va.rows !== n || va.cols !== kvCols) bad(`attention: v is [${va.rows}, ${va.cols}] but [${n}, ${kvCols}] is needed`);
    if (start + n > c.maxPositions) bad(`attention: positions ${start}..${start + n} exceed the kv cache capacity of ${c.maxPositions} positions`);
    if (scale !== undefined && !Number.isFinite(scale)) bad(`attention: scale must be finite, got ${scale}`);
    return new CpuActivation(c.attend(qa.data, ka.data, va.data, n, start, nHeads, scale), n, qa.cols);
  }

  rows(x: Activation, from: number, to: number): Activation {
    const a = act(x, 'rows: x');
    if (!isCount(from) || !isCount(to) || from > to || to > a.rows) bad(`rows: [${from}, ${to}) is not a range of rows of a [${a.rows}, ${a.cols}] activation`);
    return new CpuActivation(a.data.slice(from * a.cols, to * a.cols), to - from, a.cols);
  }
}
