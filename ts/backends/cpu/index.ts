/**
 * The CPU backend: wasm SIMD128 kernels (crates/lowbit-wasm/src/kernels.rs), or their relaxed-SIMD
 * versions where init() loaded that build (ts/runtime/wasm.ts).
 *
 * Weights are copied into wasm memory once, when their handle is made, and stay there until
 * `dispose()`. Activations are host Float32Arrays ([rows, cols] row-major); each op copies its
 * (small) inputs into wasm memory and returns a new activation. Nothing is asynchronous except
 * `read` and `transfer`, to match the Backend interface.
 *
 * Threads (CpuBackend.create({ threads })): the wasm build has no shared memory, so each worker
 * thread runs its own wasm instance. Linear layers and embedding tables are split by output rows
 * (threads/split.ts): every thread holds one slice — the weights are not duplicated — and computes
 * its rows of every output, the main thread included (threads/pool.ts). Everything else (norms,
 * attention, ...) runs on the main thread. Results are bit-identical to one thread.
 */
import { callWasm, LowbitError } from '../../errors.js';
import { denseData, denseToFloat32 } from '../../formats/dense.js';
import { adaptWeight } from '../../formats/capabilities.js';
import { formatLabel, formatOf, type DenseWeight, type LoadedWeight } from '../../formats/index.js';
import { init, wasm, wasmBuild, wasmModule, type InitOptions, type WasmSource } from '../../runtime/wasm.js';
import type { Embedding, Input, KvCache, Linear } from '../../wasm/pkg/lowbit_wasm.js';
import type {
  LinearOptions,
  Activation, AttentionExtras, Backend, DeviceKind, EmbeddingHandle, KvCacheHandle, LinearHandle, RopeSpec, VectorHandle,
} from '../backend.js';
import { bad, checkAttention, checkFinitePositive, checkPositive, checkRope, isCount, shape2 } from '../checks.js';
import { absmax4Slicer, newLinear } from './linear-slice.js';
import { WorkerPool } from './threads/pool.js';
import { quantize4bit, quantize4bitInRuns, type Quantize4bitOptions, type Quantized4bit } from '../../quant/blockwise4.js';
import type { FloatInput } from '../../tensor/dtypes.js';
import { Cmd, type LinearSpec, type SliceSpec } from './threads/protocol.js';
import { resolveThreads } from './threads/runtime.js';
import { alignedRowStep, MIN_SLICE_ELEMENTS, splitRows, ROW_ALIGN, type SliceFormat } from './threads/split.js';
import { AUTO_MIN_SPEEDUP, measureThreadSpeedup } from './threads/calibrate.js';

// Kept here for existing importers: dense data is the formats' (ts/formats/dense.ts), rope
// frequencies the tensors' (ts/tensor/rope.ts).
export { denseData, denseToFloat32 } from '../../formats/dense.js';
export { ropeInvFreq } from '../../tensor/rope.js';

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

/** A weight split between threads: the main thread holds rows [0, bounds[1]), worker t rows [bounds[t], bounds[t + 1]). */
interface Shard {
  pool: WorkerPool;
  id: number;
  bounds: number[];
}

/** Base of the handles: owns one wasm object (the main thread's slice when split), freed by dispose(). */
abstract class WasmHandle<T extends { free(): void }> {
  readonly device = 'cpu' as const;
  private obj: T | undefined;
  /** Bytes held on all threads together. */
  readonly bytes: number;
  constructor(
    obj: T,
    ownBytes: number,
    /** Present when the weight is split between threads. */
    protected readonly shard?: Shard & { workerBytes: number },
  ) {
    this.obj = obj;
    this.bytes = ownBytes + (shard?.workerBytes ?? 0);
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
    if (o !== undefined && this.shard !== undefined) this.shard.pool.free(this.shard.id);
  }
  /** Threads holding a slice of this weight (1 = not split). */
  get slices(): number {
    return this.shard === undefined ? 1 : this.shard.bounds.length - 1;
  }
}

export class CpuLinear extends WasmHandle<Linear> implements LinearHandle {
  constructor(obj: Linear, readonly outFeatures: number, readonly inFeatures: number, readonly format: string, shard?: Shard & { workerBytes: number }) {
    super(obj, obj.bytes(), shard);
  }
  forward(x: Float32Array, m: number): Float32Array {
    const o = this.inner;
    const s = this.shard;
    if (s === undefined) return callWasm(() => o.forward(x, m));
    return s.pool.matmul(Cmd.Forward, s.id, x, m, this.inFeatures, this.outFeatures, s.bounds[1]!, () => callWasm(() => o.forward(x, m)));
  }
  /** This layer on activations several unsplit layers share (wasm quantizes them once for all). */
  forwardShared(input: Input): Float32Array {
    const o = this.inner;
    return callWasm(() => o.forwardInput(input));
  }
  get split(): boolean {
    return this.shard !== undefined;
  }
  /** For a fused dispatch on `pool`: this layer's part, or undefined when it is not split there. */
  part(pool: WorkerPool, x: Float32Array, m: number): { id: number; n: number; n0: number; own: () => Float32Array } | undefined {
    const o = this.inner;
    const s = this.shard;
    if (s === undefined || s.pool !== pool) return undefined;
    return { id: s.id, n: this.outFeatures, n0: s.bounds[1]!, own: () => callWasm(() => o.forward(x, m)) };
  }
}

export class CpuEmbedding extends WasmHandle<Embedding> implements EmbeddingHandle {
  constructor(obj: Embedding, readonly vocab: number, readonly dim: number, shard?: Shard & { workerBytes: number }) {
    super(obj, obj.bytes(), shard);
  }
  lookup(ids: Uint32Array): Float32Array {
    const o = this.inner;
    const s = this.shard;
    if (s === undefined) return callWasm(() => o.lookup(ids));
    // Rows live where their slice does; ids of the main thread's slice alone need no workers.
    const own = s.bounds[1]!;
    let mine = true;
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t]!;
      // the error one thread gives (lowbit_core::kernels::embedding)
      if (id >= this.vocab) throw new LowbitError('INVALID_ARGUMENT', `token id ${id} at position ${t} is outside the vocabulary of ${this.vocab}`, { index: t });
      if (id >= own) mine = false;
    }
    if (mine) return callWasm(() => o.lookup(ids));
    return s.pool.lookup(s.id, ids, this.dim, (out) => {
      const at: number[] = [];
      for (let t = 0; t < ids.length; t++) if (ids[t]! < own) at.push(t);
      if (at.length === 0) return;
      const rows = callWasm(() => o.lookup(Uint32Array.from(at, (t) => ids[t]!)));
      for (let j = 0; j < at.length; j++) out.set(rows.subarray(j * this.dim, (j + 1) * this.dim), at[j]! * this.dim);
    });
  }
  project(x: Float32Array, m: number): Float32Array {
    const o = this.inner;
    const s = this.shard;
    if (s === undefined) return callWasm(() => o.project(x, m));
    return s.pool.matmul(Cmd.Project, s.id, x, m, this.dim, this.vocab, s.bounds[1]!, () => callWasm(() => o.project(x, m)));
  }
}

export class CpuKvCache extends WasmHandle<KvCache> implements KvCacheHandle {
  constructor(obj: KvCache, readonly maxPositions: number, readonly nKvHeads: number, readonly headDim: number) {
    super(obj, obj.bytes());
  }
  attend(q: Float32Array, k: Float32Array, v: Float32Array, n: number, start: number, nHeads: number, scale?: number, extras?: AttentionExtras): Float32Array {
    const o = this.inner;
    return callWasm(() => o.attend(q, k, v, n, start, nHeads, scale, extras?.softcap, extras?.window));
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


function vectorData(v: DenseWeight | Float32Array): Float32Array {
  if (v instanceof Float32Array) return v.slice();
  const d = denseToFloat32(v);
  return d.buffer === v.data.buffer ? d.slice() : d;
}

/** Options of `CpuBackend.create`. */
export interface CpuBackendOptions {
  /** Where init() loads the wasm module from, or which build (see init()). */
  wasm?: WasmSource | InitOptions;
  /**
   * Threads computing each linear layer and the tied output projection, the calling thread
   * included: 'auto' (default) uses every core (at most 8) where the runtime offers
   * SharedArrayBuffer, Atomics and module workers (Node, Deno, cross-origin-isolated pages) and
   * the threads measurably pay there (threads/calibrate.ts: a ~25 ms test when the backend is
   * made; busy cores give one thread), one thread elsewhere; 1 forces one thread; a number > 1
   * is used as given, and where threads cannot run throws WORKER_FAILED.
   */
  threads?: number | 'auto';
  /** How long to wait for a worker beyond the main thread's own share of an op (ms, default 60 000). */
  workerTimeoutMs?: number;
  /**
   * Layers with fewer weights than this per thread are not split: smaller ones cost more to wake
   * threads for than they save. Default per format, ~25 µs of work per slice (threads/split.ts:
   * 262 144 int8 weights, 131 072 f16 / bf16 / 4-bit, 65 536 f32).
   */
  minSliceElements?: number;
  /**
   * 4-bit linear layers with the float32 compute dtype and GGUF Q8_0 (block-wise int8) layers:
   * 'fast' (default) quantizes inputs of up to 4 rows (decode) to 14-bit integers per block of 32
   * and multiplies the weight codes as integers (llama.cpp's scheme; accuracy in the README),
   * 'exact' runs the f32 kernels equal to dequantize-then-matmul. Longer inputs (prefill) always
   * take the exact kernels.
   */
  kernels?: CpuKernels;
  /** 'auto' keeps its threads only when they give at least this speedup in the test at create() (default 1.2; 0 always keeps them). */
  autoMinSpeedup?: number;
}

/** CPU kernels: 'fast' (default) integer kernels for decode; 'exact' f32 kernels equal to dequantize-then-matmul. */
export type CpuKernels = 'fast' | 'exact';

type Split<T> = { bounds: number[]; own: T; workers: (SliceSpec | undefined)[] };

/** Below this many elements quantize4bit stays on one thread (posting a run costs more than it saves). */
export const MIN_SPLIT_QUANTIZE = 1 << 18;

const halfFormat = (dtype: string): SliceFormat => (dtype === 'bfloat16' ? 'bf16' : 'f16');

/** The CPU backend: wasm SIMD128 (or relaxed-SIMD) kernels, on worker threads where the runtime allows (`CpuBackend.create({ threads })`). */
export class CpuBackend implements Backend {
  readonly device: DeviceKind = 'cpu';
  /** 'wasm-simd128' or 'wasm-relaxed-simd': the wasm build init() loaded (wasmBuild()). */
  readonly name = `wasm-${wasmBuild()}`;
  /** Threads that compute linear layers (1: this thread only). */
  readonly threads: number;
  /** Why 'auto' settled on one thread, when it did. */
  readonly threadsNote: string | undefined;
  /** The speedup 'auto' measured for its threads at create() (undefined: not measured). */
  readonly threadSpeedup: number | undefined;
  private readonly pool: WorkerPool | undefined;
  /** minSliceElements when given; otherwise each format's MIN_SLICE_ELEMENTS. */
  private readonly minSlice: number | undefined;

  /** Loads the wasm module (if needed), starts the worker threads and returns a backend. */
  static async create(options: CpuBackendOptions = {}): Promise<CpuBackend> {
    await init(options.wasm);
    const min = options.minSliceElements;
    if (min !== undefined && !(Number.isInteger(min) && min >= 1)) bad(`minSliceElements must be a positive integer, got ${min}`);
    const kernels = options.kernels ?? 'fast';
    if (kernels !== 'fast' && kernels !== 'exact') bad(`kernels must be 'fast' or 'exact', got ${String(kernels)}`);
    const minSpeedup = options.autoMinSpeedup ?? AUTO_MIN_SPEEDUP;
    if (!(typeof minSpeedup === 'number' && minSpeedup >= 0 && Number.isFinite(minSpeedup))) bad(`autoMinSpeedup must be a finite number >= 0, got ${minSpeedup}`);
    const backend = await CpuBackend.onThreads(options, min, minSpeedup);
    backend.kernels = kernels;
    return backend;
  }

  /** A backend on the threads `options.threads` resolves to; 'auto' keeps them only where its speed test says they pay. */
  private static async onThreads(options: CpuBackendOptions, min: number | undefined, minSpeedup: number): Promise<CpuBackend> {
    const auto = options.threads === undefined || options.threads === 'auto';
    const { threads, reason } = await resolveThreads(options.threads);
    if (threads === 1) return new CpuBackend(undefined, reason);
    let pool: WorkerPool;
    try {
      pool = await WorkerPool.start({ threads, module: wasmModule(), ...(options.workerTimeoutMs !== undefined ? { timeoutMs: options.workerTimeoutMs } : {}) });
    } catch (e) {
      if (auto) return new CpuBackend(undefined, e instanceof Error ? e.message : String(e));
      throw e;
    }
    if (!auto || minSpeedup === 0) return new CpuBackend(pool, undefined, min);
    let speedup: number;
    try {
      speedup = measureThreadSpeedup(pool, wasm());
    } catch (e) {
      pool.terminate();
      return new CpuBackend(undefined, `the worker threads failed their first op: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (speedup >= minSpeedup) return new CpuBackend(pool, undefined, min, speedup);
    pool.terminate();
    return new CpuBackend(undefined, `${threads} threads ran ${speedup.toFixed(2)}× as fast as one in a test (needs ${minSpeedup}×): the cores are busy`, min, speedup);
  }

  /** Which 4-bit kernels layers made from now on use (CpuBackendOptions.kernels; 'fast' by default). */
  kernels: CpuKernels = 'fast';

  /**
   * One thread; needs init() to have finished. (The arguments are internal: CpuBackend.create()
   * makes threaded backends.)
   */
  constructor(pool?: WorkerPool, note?: string, minSliceElements?: number, threadSpeedup?: number) {
    wasm();
    this.pool = pool;
    this.threads = pool?.threads ?? 1;
    this.threadsNote = note;
    this.minSlice = minSliceElements;
    this.threadSpeedup = threadSpeedup;
  }

  private disposed = false;

  /** Stops the worker threads: handles split between threads stop working, and no new ones can be made. */
  dispose(): void {
    this.disposed = true;
    this.pool?.terminate();
  }

  private live(): void {
    if (this.disposed) bad('this CpuBackend was disposed');
  }

  /**
   * Splits rows [0, n) (k columns) between the threads; `make(r0, r1, worker)` builds slice
   * [r0, r1): the main thread's wasm object, or a worker's SliceSpec (fresh copies).
   */
  private split<T>(format: SliceFormat, n: number, k: number, step: number, own: (r0: number, r1: number) => T, spec: (r0: number, r1: number) => SliceSpec): Split<T> | undefined {
    if (this.pool === undefined) return undefined;
    const bounds = splitRows(n, k, this.pool.threads, step, this.minSlice ?? MIN_SLICE_ELEMENTS[format]);
    if (bounds.length <= 2) return undefined;
    const workers: (SliceSpec | undefined)[] = [];
    for (let t = 1; t < this.pool.threads; t++) workers.push(t + 1 < bounds.length ? spec(bounds[t]!, bounds[t + 1]!) : undefined);
    return { bounds, own: own(0, bounds[1]!), workers };
  }

  /** Hands the worker slices over; frees the main thread's object if that fails. */
  private shard<T extends { free(): void }>(sp: Split<T>): Shard & { workerBytes: number } {
    const pool = this.pool!;
    const id = pool.newId();
    try {
      return { pool, id, bounds: sp.bounds, workerBytes: pool.build(id, sp.workers) };
    } catch (e) {
      sp.own.free();
      throw e;
    }
  }

  // --- weights

  linear(loaded: LoadedWeight, bias?: DenseWeight, options: LinearOptions = {}): LinearHandle {
    this.live();
    const w = wasm();
    // Every format runs natively here today; the table would convert or refuse one that does not.
    const weight = adaptWeight(loaded, 'cpu').weight;
    const label = formatLabel(weight);
    const b = bias === undefined ? undefined : denseToFloat32(bias);
    const kernels = this.kernels;
    /**
     * The layer from `spec(r0, r1, copy)`, the format's rows [r0, r1) (views, or copies to post
     * to a worker), split between the threads when `split` gives the slicing; otherwise one
     * wasm object from `whole` (the arrays as given, so wasm reports sizes that do not add up).
     */
    const upload = (n: number, k: number, whole: LinearSpec, split?: { format: SliceFormat; step: number; spec: (r0: number, r1: number, copy: boolean) => LinearSpec }): CpuLinear => {
      if (b !== undefined && b.length !== n) bad(`${bias!.name}: bias has ${b.length} values but ${weight.name} has ${n} outputs`);
      const make = (s: LinearSpec) => callWasm(() => newLinear(w, s));
      const sp = split && this.split(split.format, n, k, split.step, (r0, r1) => make(split.spec(r0, r1, false)), (r0, r1) => split.spec(r0, r1, true));
      if (sp) return new CpuLinear(sp.own, n, k, label, this.shard(sp));
      return new CpuLinear(make(whole), n, k, label);
    };
    const common = (n: number, k: number, r0: number, r1: number, copy: boolean) => ({
      rows: [r0, r1] as [number, number],
      n,
      k,
      kernels,
      ...(b === undefined ? {} : { bias: copy ? b.slice(r0, r1) : b.subarray(r0, r1) }),
    });
    const cut = <T extends Uint8Array | Int8Array | Uint16Array | Float32Array>(a: T, i0: number, i1: number, copy: boolean): T => (copy ? a.slice(i0, i1) : a.subarray(i0, i1)) as T;
    switch (weight.kind) {
      case '4bit': {
        const st = weight.quantState;
        const [n, k] = shape2(weight.name, st.shape);
        const { packed } = weight;
        const bs = st.blocksize;
        const dtype = options.computeDtype ?? 'float32';
        if (!['float32', 'float16', 'bfloat16'].includes(dtype)) bad(`computeDtype must be float32, float16 or bfloat16, got ${String(dtype)}`);
        const four = { kind: 'linear4' as const, quantType: st.quantType, blocksize: bs, ...(dtype === 'float32' ? {} : { computeDtype: dtype as 'float16' | 'bfloat16' }) };
        // Double-quantized absmax stays compressed (linear-slice.ts).
        const abs = absmax4Slicer(st);
        const sound = Number.isInteger(Math.log2(bs)) && bs >= 32 && bs <= 4096 && packed.length === Math.ceil((n * k) / 2) && abs.blocks === Math.ceil((n * k) / bs);
        // slice bounds r0 * k are multiples of the blocksize (the format's rowStep), so / 2 and / bs are exact
        const spec = (r0: number, r1: number, copy: boolean): LinearSpec => ({
          ...common(n, k, r0, r1, copy),
          ...four,
          packed: cut(packed, (r0 * k) / 2, Math.ceil((r1 * k) / 2), copy),
          scales: abs.slice((r0 * k) / bs, Math.ceil((r1 * k) / bs), copy),
        });
        const whole: LinearSpec = { ...common(n, k, 0, n, false), ...four, packed, scales: abs.slice(0, abs.blocks, false) };
        return upload(n, k, whole, sound ? { format: '4bit', step: alignedRowStep(formatOf(weight).rowStep(weight)), spec } : undefined);
      }
      case 'int8': {
        const [n, k] = shape2(weight.name, weight.shape);
        const threshold = options.int8Threshold ?? 6.0;
        if (!Number.isFinite(threshold) || threshold < 0) bad(`int8Threshold must be a finite number >= 0, got ${threshold}`);
        const { CB, SCB } = weight;
        const spec = (r0: number, r1: number, copy: boolean): LinearSpec => ({ ...common(n, k, r0, r1, copy), kind: 'int8', cb: cut(CB, r0 * k, r1 * k, copy), scb: cut(SCB, r0, r1, copy), threshold });
        const whole: LinearSpec = { ...common(n, k, 0, n, false), kind: 'int8', cb: CB, scb: SCB, threshold };
        return upload(n, k, whole, CB.length === n * k && SCB.length === n ? { format: 'int8', step: ROW_ALIGN, spec } : undefined);
      }
      case 'blockwise8': {
        // Block-wise 8-bit (GGUF Q8_0 or bitsandbytes quantize_blockwise), on the main thread; the kernel checks the sizes.
        const [n, k] = shape2(weight.name, weight.shape);
        return upload(n, k, { ...common(n, k, 0, n, false), kind: 'blockwise8', q: weight.q, absmax: weight.absmax, code: weight.code, blocksize: weight.blocksize });
      }
      case 'dense': {
        const [n, k] = shape2(weight.name, weight.shape);
        const d = denseData(weight);
        if (d instanceof Float32Array) {
          const spec = (r0: number, r1: number, copy: boolean): LinearSpec => ({ ...common(n, k, r0, r1, copy), kind: 'dense', data: cut(d, r0 * k, r1 * k, copy) });
          return upload(n, k, { ...common(n, k, 0, n, false), kind: 'dense', data: d }, { format: 'f32', step: ROW_ALIGN, spec });
        }
        const spec = (r0: number, r1: number, copy: boolean): LinearSpec => ({ ...common(n, k, r0, r1, copy), kind: 'denseHalf', data: cut(d.data, r0 * k, r1 * k, copy), dtype: d.dtype });
        return upload(n, k, { ...common(n, k, 0, n, false), kind: 'denseHalf', data: d.data, dtype: d.dtype }, { format: halfFormat(d.dtype), step: ROW_ALIGN, spec });
      }
      default:
        // CAPABILITIES says this format is native on the CPU but no upload handles it here
        throw new LowbitError('INTERNAL', `the CPU backend has no upload for weight format '${formatOf(weight as LoadedWeight).kind}'`);
    }
  }

  /**
   * quantize4bit() (ts/quant/blockwise4.ts) on this backend's threads: each thread quantizes a
   * run of whole blocks and this one builds the quant state, so the bytes are quantize4bit()'s.
   * With one thread, or fewer than MIN_SPLIT_QUANTIZE elements, it is quantize4bit() itself.
   */
  quantize4bit(input: FloatInput, options: Quantize4bitOptions = {}): Quantized4bit {
    this.live();
    const pool = this.pool;
    const n = input instanceof Float32Array ? input.length : input?.data instanceof Uint16Array ? input.data.length : 0;
    if (pool === undefined || n < MIN_SPLIT_QUANTIZE) return quantize4bit(input, options);
    try {
      return quantize4bitInRuns(input, options, pool.threads, (x, runs, o, packed, absmax) => pool.quantize4(x, runs, o, packed, absmax));
    } catch (e) {
      // A thread's error (NON_FINITE, say) names an index in its run: the one-thread call raises
      // it with the tensor's. A pool that stopped working stays an error.
      if (e instanceof LowbitError && e.code !== 'WORKER_FAILED') return quantize4bit(input, options);
      throw e;
    }
  }

  embedding(table: DenseWeight): EmbeddingHandle {
    this.live();
    const w = wasm();
    const [vocab, dim] = shape2(table.name, table.shape);
    const d = denseData(table);
    const sp =
      d instanceof Float32Array
        ? this.split(
            'f32',
            vocab,
            dim,
            ROW_ALIGN,
            (r0, r1) => callWasm(() => new w.Embedding(d.subarray(r0 * dim, r1 * dim), r1 - r0, dim)),
            (r0, r1) => ({ kind: 'embedding', rows: [r0, r1], n: vocab, k: dim, data: d.slice(r0 * dim, r1 * dim) }),
          )
        : this.split(
            halfFormat(d.dtype),
            vocab,
            dim,
            ROW_ALIGN,
            (r0, r1) => callWasm(() => w.Embedding.fromHalf(d.data.subarray(r0 * dim, r1 * dim), d.dtype, r1 - r0, dim)),
            (r0, r1) => ({ kind: 'embeddingHalf', rows: [r0, r1], n: vocab, k: dim, data: d.data.slice(r0 * dim, r1 * dim), dtype: d.dtype }),
          );
    if (sp) return new CpuEmbedding(sp.own, vocab, dim, this.shard(sp));
    const obj = callWasm(() => (d instanceof Float32Array ? new w.Embedding(d, vocab, dim) : w.Embedding.fromHalf(d.data, d.dtype, vocab, dim)));
    return new CpuEmbedding(obj, vocab, dim);
  }

  vector(v: DenseWeight | Float32Array): VectorHandle {
    this.live();
    return new CpuVector(vectorData(v));
  }

  kvCache(maxPositions: number, nKvHeads: number, headDim: number): KvCacheHandle {
    this.live();
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

  linearForwardMany(x: Activation, ws: readonly LinearHandle[]): Activation[] {
    const a = act(x, 'linearForwardMany: x');
    const ls = ws.map((w, i) => {
      const l = handle(w, CpuLinear, `linearForwardMany: weight ${i}`);
      if (a.cols !== l.inFeatures) bad(`linearForwardMany: x has ${a.cols} columns but the ${l.format} weight ${i} [${l.outFeatures}, ${l.inFeatures}] takes ${l.inFeatures}`);
      return l;
    });
    if (a.rows === 0) bad('linearForwardMany: x has no rows');
    const pool = this.pool;
    const parts = pool === undefined ? [] : ls.map((l) => l.part(pool, a.data, a.rows));
    const split = parts.filter((p) => p !== undefined);
    // Layers held whole on this thread read one shared copy of x (quantized once for them all).
    const runWhole = (which: CpuLinear[]): Float32Array[] => {
      if (which.length < 2) return which.map((l) => l.forward(a.data, a.rows));
      const input = callWasm(() => new (wasm().Input)(a.data, a.rows));
      try {
        return which.map((l) => l.forwardShared(input));
      } finally {
        input.free();
      }
    };
    if (pool === undefined || split.length < 2) {
      if (ls.some((l) => l.split)) return ls.map((l) => new CpuActivation(l.forward(a.data, a.rows), a.rows, l.outFeatures));
      return runWhole(ls).map((y, i) => new CpuActivation(y, a.rows, ls[i]!.outFeatures));
    }
    // One command for the split layers; the others run on this thread meanwhile.
    const out: (Float32Array | undefined)[] = ls.map(() => undefined);
    const ys = pool.matmulMany(a.data, a.rows, a.cols, split, () => {
      const whole = ls.flatMap((l, i) => (parts[i] === undefined ? [i] : []));
      runWhole(whole.map((i) => ls[i]!)).forEach((y, j) => (out[whole[j]!] = y));
    });
    let j = 0;
    return ls.map((l, i) => new CpuActivation(parts[i] === undefined ? out[i]! : ys[j++]!, a.rows, l.outFeatures));
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

  rmsNormHeads(x: Activation, weight: VectorHandle, eps: number): Activation {
    const a = act(x, 'rmsNormHeads: x');
    const w = handle(weight, CpuVector, 'rmsNormHeads: weight');
    if (w.length === 0 || a.cols % w.length !== 0) bad(`rmsNormHeads: weight has ${w.length} values, which do not divide x's ${a.cols} columns into heads`);
    if (a.rows === 0) bad('rmsNormHeads: x has no rows');
    // row-major: [rows, nHeads * headDim] is [rows * nHeads, headDim]
    return new CpuActivation(callWasm(() => wasm().rmsNorm(a.data, w.length, w.data, eps)), a.rows, a.cols);
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

  linearSwiglu(x: Activation, gate: LinearHandle, up: LinearHandle): Activation {
    const [g, u] = this.linearForwardMany(x, [gate, up]) as [Activation, Activation];
    return this.swiglu(g, u); // host arrays: g and u go to the garbage collector
  }

  linearResidual(x: Activation, w: LinearHandle, residual: Activation): Activation {
    return this.add(residual, this.linearForward(x, w));
  }

  geglu(gate: Activation, up: Activation): Activation {
    const g = act(gate, 'geglu: gate');
    const u = act(up, 'geglu: up');
    sameShape(g, u, 'geglu');
    // gelu_tanh in wasm (the kernel geluTanh uses), the product in f32 (a Float32Array store rounds it)
    const out = callWasm(() => wasm().geluTanh(g.data));
    for (let i = 0; i < out.length; i++) out[i] = out[i]! * u.data[i]!;
    return new CpuActivation(out, g.rows, g.cols);
  }

  scale(x: Activation, s: number): Activation {
    const a = act(x, 'scale: x');
    checkFinitePositive('scale: s', s, false);
    const f = Math.fround(s);
    const out = new Float32Array(a.data.length);
    for (let i = 0; i < out.length; i++) out[i] = a.data[i]! * f;
    return new CpuActivation(out, a.rows, a.cols);
  }

  softcap(x: Activation, cap: number): Activation {
    const a = act(x, 'softcap: x');
    checkFinitePositive('softcap: cap', cap, true);
    // in f32 steps, as torch computes logits / cap, tanh, * cap
    const c = Math.fround(cap);
    const out = new Float32Array(a.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Math.fround(Math.tanh(Math.fround(a.data[i]! / c))) * c;
    return new CpuActivation(out, a.rows, a.cols);
  }

  swiglu(gate: Activation, up: Activation): Activation {
    const g = act(gate, 'swiglu: gate');
    const u = act(up, 'swiglu: up');
    sameShape(g, u, 'swiglu');
    return new CpuActivation(callWasm(() => wasm().swiglu(g.data, u.data)), g.rows, g.cols);
  }

  rope(x: Activation, nHeads: number, positions: Uint32Array, spec: RopeSpec): Activation {
    const a = act(x, 'rope: x');
    const { rotaryDim, scaling } = checkRope(a, nHeads, positions, spec);
    if (rotaryDim === spec.headDim && scaling === 1) return new CpuActivation(callWasm(() => wasm().applyRope(a.data, nHeads, spec.headDim, positions, spec.invFreq)), a.rows, a.cols);
    // Partial rotary / LongRoPE's attention factor: the same wasm rotation on each head's first
    // rotaryDim values gathered into [rows, nHeads * rotaryDim], then scaled and put back; the
    // rest of each head passes through.
    const heads = a.rows * nHeads;
    const part = new Float32Array(heads * rotaryDim);
    for (let h = 0; h < heads; h++) part.set(a.data.subarray(h * spec.headDim, h * spec.headDim + rotaryDim), h * rotaryDim);
    const turned = callWasm(() => wasm().applyRope(part, nHeads, rotaryDim, positions, spec.invFreq));
    const out = a.data.slice();
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < rotaryDim; i++) out[h * spec.headDim + i] = turned[h * rotaryDim + i]! * scaling;
    }
    return new CpuActivation(out, a.rows, a.cols);
  }

  attention(q: Activation, k: Activation, v: Activation, cache: KvCacheHandle, start: number, nHeads: number, scale?: number, extras?: AttentionExtras): Activation {
    const qa = act(q, 'attention: q');
    const ka = act(k, 'attention: k');
    const va = act(v, 'attention: v');
    const c = handle(cache, CpuKvCache, 'attention: cache');
    checkAttention(qa, ka, va, c, start, nHeads, scale, extras);
    const n = qa.rows;
    return new CpuActivation(c.attend(qa.data, ka.data, va.data, n, start, nHeads, scale, extras), n, qa.cols);
  }

  rows(x: Activation, from: number, to: number): Activation {
    const a = act(x, 'rows: x');
    if (!isCount(from) || !isCount(to) || from > to || to > a.rows) bad(`rows: [${from}, ${to}) is not a range of rows of a [${a.rows}, ${a.cols}] activation`);
    return new CpuActivation(a.data.slice(from * a.cols, to * a.cols), to - from, a.cols);
  }
}
