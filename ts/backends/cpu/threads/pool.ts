/**
 * The main-thread side of a CpuBackend's worker threads: starts them, hands them weight slices,
 * and runs each op on all threads at once (protocol.ts describes the shared words).
 *
 * The main thread is participant 0: it posts a command, computes its own rows while the workers
 * compute theirs, then waits for them. Waiting blocks in Atomics.wait where the runtime allows
 * it (Node, Deno, any worker); on a browser's main thread, where Atomics.wait throws, it spins on
 * Atomics.load — only for as long as the slowest worker needs beyond the main thread's own
 * share, as every participant has an equal share.
 *
 * A worker that stops answering (terminated, killed for memory, a crashed runtime) cannot hang
 * the main thread: each wait gives up after `timeoutMs` (default 60 s) or 50 times the main
 * thread's own share of that op, whichever is longer, and the pool is then unusable (its weight
 * slices may be gone); every later op throws WORKER_FAILED.
 */
import { LowbitError } from '../../../errors.js';
import {
  ARG_ID, ARG_M, ARG_OUT, CMD, Cmd, ctlWords, ERR_BYTES, PENDING, readError, SEQ, slot, SLOT_ERR_LEN, SLOT_STATUS, slotBytesF64, STATUS_ERROR,
  deserializeError, type SliceSpec, type WorkerMessage, type WorkerReply,
} from './protocol.js';
import { canBlock, spawnWorker, type WorkerLike } from './runtime.js';
import { wasmBuild } from '../../../runtime/wasm.js';
import { quantize4bitRun, runOf, type BlockRun, type RunOptions } from '../../../quant/blockwise4.js';
import type { FloatInput } from '../../../tensor/dtypes.js';

export interface PoolOptions {
  /** Participants including the main thread (>= 2). */
  threads: number;
  module: WebAssembly.Module;
  /** Give up on a worker after this long beyond the main thread's share (ms; default 60 000). */
  timeoutMs?: number;
  /** The main thread spins this long for the workers before sleeping (ms; default 0.05). */
  spinMs?: number;
  /** Start-up limit (ms; default 60 000). */
  startTimeoutMs?: number;
}

const INITIAL_DATA_BYTES = 1 << 20;

export class WorkerPool {
  readonly threads: number;
  private readonly ctl: Int32Array;
  private readonly f64: Float64Array;
  private readonly err: Uint8Array;
  private data: SharedArrayBuffer;
  private f32: Float32Array;
  private u32: Uint32Array;
  private nextId = 1;
  private broken: string | undefined;
  private closed = false;
  private readonly timeoutMs: number;
  private readonly block = canBlock();
  private spinMs = 0.05;

  private constructor(
    threads: number,
    private readonly workers: WorkerLike[],
    ctl: SharedArrayBuffer,
    err: SharedArrayBuffer,
    data: SharedArrayBuffer,
    timeoutMs: number,
  ) {
    this.threads = threads;
    this.ctl = new Int32Array(ctl);
    this.f64 = new Float64Array(ctl);
    this.err = new Uint8Array(err);
    this.data = data;
    this.f32 = new Float32Array(data);
    this.u32 = new Uint32Array(data);
    this.timeoutMs = timeoutMs;
  }

  /** Starts threads - 1 workers, each instantiating `module`; rejects with WORKER_FAILED. */
  static async start(o: PoolOptions): Promise<WorkerPool> {
    const n = o.threads - 1;
    const ctl = new SharedArrayBuffer(ctlWords(o.threads) * 4);
    const err = new SharedArrayBuffer(ERR_BYTES * o.threads);
    const data = new SharedArrayBuffer(INITIAL_DATA_BYTES);
    const workers: WorkerLike[] = [];
    const pool = new WorkerPool(o.threads, workers, ctl, err, data, o.timeoutMs ?? 60_000);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const ready: Promise<void>[] = [];
      for (let i = 1; i <= n; i++) {
        const w = await spawnWorker(`lowbit-cpu-${i}`);
        workers.push(w);
        ready.push(
          new Promise<void>((ok, fail) => {
            w.onMessage((m) => {
              const r = m as WorkerReply;
              // Every thread runs the same build (one module): a mix would not give the same bits.
              if (r.type === 'ready') r.build === wasmBuild() ? ok() : fail(new Error(`worker thread ${i} runs the ${r.build} wasm build, the main thread ${wasmBuild()}`));
              else if (r.type === 'error') fail(deserializeError(r.error));
            });
            w.onFailure((why) => {
              fail(new Error(why));
              pool.broken ??= `worker thread ${i} stopped: ${why}`;
            });
          }),
        );
        const init: WorkerMessage = { type: 'init', module: o.module, ctl, err, data, index: i };
        w.postMessage(init);
      }
      const limit = o.startTimeoutMs ?? 60_000;
      const timeout = new Promise<never>((_, fail) => {
        timer = setTimeout(() => fail(new Error(`the worker threads did not start within ${limit / 1000} s`)), limit);
      });
      await Promise.race([Promise.all(ready), timeout]);
    } catch (e) {
      for (const w of workers) w.terminate();
      throw new LowbitError('WORKER_FAILED', `could not start ${n} worker thread(s): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
    pool.spinMs = o.spinMs ?? 0.05;
    // Idle workers must not keep a Node process alive.
    for (const w of workers) w.unref();
    return pool;
  }

  /** A new handle id (ids are never reused). */
  newId(): number {
    return this.nextId++;
  }

  private check(): void {
    if (this.closed) throw new LowbitError('INVALID_ARGUMENT', 'this CpuBackend was disposed');
    if (this.broken !== undefined) throw new LowbitError('WORKER_FAILED', this.broken);
  }

  /** Waits until every worker has counted itself off PENDING, or fails the pool. */
  private waitWorkers(ownMs: number): void {
    const limit = Math.max(this.timeoutMs, 50 * ownMs);
    const start = performance.now();
    for (;;) {
      const left = Atomics.load(this.ctl, PENDING);
      if (left === 0) return;
      const waited = performance.now() - start;
      if (waited >= limit) {
        this.broken = `${left} worker thread(s) did not answer within ${(limit / 1000).toFixed(1)} s; this backend can no longer be used`;
        throw new LowbitError('WORKER_FAILED', this.broken);
      }
      if (this.block) {
        // A short spin first: the workers often finish within microseconds of the main thread,
        // and a futex wake-up costs ~10-20 µs (30 -> 18 µs per no-op round trip on the 2-core
        // development machine). Workers do not spin for the next command: on a machine busy
        // with other processes a spinning worker takes the core the main thread needs (round
        // trips went from 30 to 64-150 µs there).
        const until = performance.now() + this.spinMs;
        while (Atomics.load(this.ctl, PENDING) === left && performance.now() < until);
        if (Atomics.load(this.ctl, PENDING) === left) Atomics.wait(this.ctl, PENDING, left, Math.min(limit - waited, 1000));
      }
    }
  }

  /**
   * Runs `cmd` on every worker while `own()` computes the main thread's share; rethrows the
   * first error (the main thread's, else the lowest worker's) once all have finished.
   */
  private run(cmd: Cmd, id: number, m: number, out: number, own: () => void): void {
    this.check();
    const c = this.ctl;
    c[CMD] = cmd;
    c[ARG_ID] = id;
    c[ARG_M] = m;
    c[ARG_OUT] = out;
    Atomics.store(c, PENDING, this.workers.length);
    Atomics.add(c, SEQ, 1);
    Atomics.notify(c, SEQ);
    let ownError: unknown;
    const t0 = performance.now();
    try {
      own();
    } catch (e) {
      ownError = e;
    }
    this.waitWorkers(performance.now() - t0);
    if (ownError !== undefined) throw ownError;
    this.throwWorkerError();
  }

  private throwWorkerError(): void {
    for (let w = 1; w < this.threads; w++) {
      const s = slot(w);
      if (this.ctl[s + SLOT_STATUS] === STATUS_ERROR) throw readError(this.err.subarray(w * ERR_BYTES, (w + 1) * ERR_BYTES), this.ctl[s + SLOT_ERR_LEN]!);
    }
  }

  /**
   * Posts worker w its message `perWorker[w - 1]` (moving `transfer`; undefined: a no-op) and has
   * every worker take its message (Yield); `own` runs here meanwhile.
   */
  private deliver(perWorker: ({ message: WorkerMessage; transfer?: Transferable[] } | undefined)[], own: () => void = () => {}): void {
    this.check();
    this.workers.forEach((w, i) => {
      const m = perWorker[i];
      w.postMessage(m?.message ?? { type: 'nop' }, m?.transfer ?? []);
    });
    this.run(Cmd.Yield, 0, 0, 0, own);
  }

  /**
   * Stage one of a 4-bit quantization on the threads: `runs[0]` here, `runs[w]` on worker w (a
   * copy of its elements moves there); every run's codes and absmax land in `packed` / `absmax`
   * (see quantize4bitInRuns).
   */
  quantize4(input: FloatInput, runs: BlockRun[], o: RunOptions, packed: Uint8Array, absmax: Float32Array): void {
    if (runs.length === 0 || runs.length > this.threads) throw new LowbitError('INTERNAL', `${runs.length} runs for ${this.threads} threads`);
    const align = (bytes: number) => Math.ceil(bytes / 64) * 64;
    const places: { packedAt: number; absmaxAt: number; r: BlockRun }[] = [];
    let end = 0;
    for (const r of runs.slice(1)) {
      const absmaxAt = align(end + Math.ceil((r.end - r.start) / 2));
      places.push({ packedAt: end, absmaxAt, r });
      end = align(absmaxAt + Math.ceil((r.end - r.start) / o.blocksize) * 4);
    }
    this.ensureData(end / 4);
    const perWorker = places.map((p) => {
      const part = input instanceof Float32Array ? input.slice(p.r.start, p.r.end) : { dtype: input.dtype, data: input.data.slice(p.r.start, p.r.end) };
      const message: WorkerMessage = { type: 'quantize4', input: part, o, packedAt: p.packedAt, absmaxAt: p.absmaxAt / 4 };
      return { message, transfer: [part instanceof Float32Array ? part.buffer : part.data.buffer] };
    });
    this.deliver(perWorker, () => {
      const r0 = runs[0]!;
      const q = quantize4bitRun(runOf(input, r0), o);
      packed.set(q.packed, r0.start / 2);
      absmax.set(q.absmax, r0.start / o.blocksize);
    });
    const bytes = new Uint8Array(this.data);
    for (const { packedAt, absmaxAt, r } of places) {
      packed.set(bytes.subarray(packedAt, packedAt + Math.ceil((r.end - r.start) / 2)), r.start / 2);
      absmax.set(this.f32.subarray(absmaxAt / 4, absmaxAt / 4 + Math.ceil((r.end - r.start) / o.blocksize)), r.start / o.blocksize);
    }
  }

  /** Makes `data` hold at least `floats` f32 values (a new, larger buffer for every thread). */
  private ensureData(floats: number): void {
    if (floats * 4 <= this.data.byteLength) return;
    const bytes = Math.max(floats * 4, this.data.byteLength * 2);
    if (bytes > 2 ** 31) throw new LowbitError('INVALID_ARGUMENT', `an op needs ${bytes} bytes of shared activations, more than the 2 GiB the thread pool allows`);
    const data = new SharedArrayBuffer(Math.ceil(bytes / 65536) * 65536);
    this.deliver(this.workers.map(() => ({ message: { type: 'data', data } })));
    this.data = data;
    this.f32 = new Float32Array(data);
    this.u32 = new Uint32Array(data);
  }

  /**
   * Gives each worker w its slice `specs[w - 1]` (undefined: no rows there) of handle `id`;
   * returns the bytes they hold. Throws the first worker's error after freeing what was built.
   */
  build(id: number, specs: (SliceSpec | undefined)[]): number {
    const perWorker = this.workers.map((_, i) => {
      const s = specs[i];
      if (s === undefined) return undefined;
      // Slices are fresh copies that own their buffers: move them instead of copying again.
      const transfer: Transferable[] = [];
      for (const v of Object.values(s)) if (ArrayBuffer.isView(v) && v.buffer instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) transfer.push(v.buffer);
      return { message: { type: 'build', id, spec: s } as WorkerMessage, transfer };
    });
    for (let w = 1; w < this.threads; w++) this.f64[slotBytesF64(w)] = 0;
    try {
      this.deliver(perWorker);
    } catch (e) {
      if (!(e instanceof LowbitError && e.code === 'WORKER_FAILED')) this.free(id);
      throw e;
    }
    let bytes = 0;
    for (let w = 1; w < this.threads; w++) if (specs[w - 1] !== undefined) bytes += this.f64[slotBytesF64(w)]!;
    return bytes;
  }

  /** Frees handle `id` in every worker (a no-op once the pool is closed or broken). */
  free(id: number): void {
    if (this.closed || this.broken !== undefined) return;
    this.run(Cmd.Free, id, 0, 0, () => {});
  }

  /**
   * out[m, n] for handle `id` (Forward or Project): the workers' rows land in shared memory,
   * `own()` returns the main thread's rows [0, n0) as [m, n0].
   */
  matmul(cmd: Cmd.Forward | Cmd.Project, id: number, x: Float32Array, m: number, k: number, n: number, n0: number, own: () => Float32Array): Float32Array {
    const xLen = m * k;
    const out = Math.ceil(xLen / 16) * 16; // output offset, 64-byte aligned
    this.ensureData(out + m * n);
    this.f32.set(x.subarray(0, xLen), 0);
    this.run(cmd, id, m, out, () => {
      const y = own();
      if (m === 1) this.f32.set(y, out);
      else for (let i = 0; i < m; i++) this.f32.set(y.subarray(i * n0, (i + 1) * n0), out + i * n);
    });
    return this.f32.slice(out, out + m * n);
  }

  /**
   * One command for several split layers on the same x[m, k]: returns each layer's [m, n] output.
   * `own(j)` computes the main thread's rows [0, n0) of layer j; `alongside()` runs on the main
   * thread after them, while the workers may still be busy (layers that are not split).
   */
  matmulMany(x: Float32Array, m: number, k: number, layers: { id: number; n: number; n0: number; own: () => Float32Array }[], alongside: () => void): Float32Array[] {
    const align = (i: number) => Math.ceil(i / 16) * 16;
    const xLen = m * k;
    const pairs = align(xLen);
    const outs: number[] = [];
    let end = align(pairs + 2 * layers.length);
    for (const l of layers) {
      outs.push(end);
      end = align(end + m * l.n);
    }
    this.ensureData(end);
    this.f32.set(x.subarray(0, xLen), 0);
    layers.forEach((l, j) => {
      this.u32[pairs + 2 * j] = l.id;
      this.u32[pairs + 2 * j + 1] = outs[j]!;
    });
    this.run(Cmd.ForwardMany, layers.length, m, pairs, () => {
      layers.forEach((l, j) => {
        const y = l.own();
        const out = outs[j]!;
        if (m === 1) this.f32.set(y, out);
        else for (let i = 0; i < m; i++) this.f32.set(y.subarray(i * l.n0, (i + 1) * l.n0), out + i * l.n);
      });
      alongside();
    });
    return layers.map((l, j) => this.f32.slice(outs[j]!, outs[j]! + m * l.n));
  }

  /**
   * Embedding rows for `ids` (all < vocab): each thread copies the rows it holds; `own()` fills
   * the main thread's rows (ids < n0) into the shared output at `out`.
   */
  lookup(id: number, ids: Uint32Array, dim: number, own: (out: Float32Array) => void): Float32Array {
    const out = Math.ceil(ids.length / 16) * 16;
    this.ensureData(out + ids.length * dim);
    this.u32.set(ids, 0);
    this.run(Cmd.Lookup, id, ids.length, out, () => own(this.f32.subarray(out, out + ids.length * dim)));
    return this.f32.slice(out, out + ids.length * dim);
  }

  /** Stops the workers (their slices go with them). */
  terminate(): void {
    if (this.closed) return;
    this.closed = true;
    // Ask them to leave their wait loop and close first: Deno's terminate() does not interrupt
    // Atomics.wait (the process would never exit); Node's and browsers' do.
    const c = this.ctl;
    c[CMD] = Cmd.Exit;
    Atomics.add(c, SEQ, 1);
    Atomics.notify(c, SEQ);
    for (const w of this.workers) w.terminate();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
