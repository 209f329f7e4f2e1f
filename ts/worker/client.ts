/**
 * The page's side of the model worker: `fromPretrainedInWorker()` starts a Web Worker running
 * ts/worker/model-worker.ts and returns a WorkerModel whose generate() / stream() / dispose()
 * mirror CausalLM's, with streamers, onToken, onProgress and AbortSignals proxied as messages.
 */
import { LowbitError, type LowbitErrorCode } from '../errors.js';
import type { ProgressCallback } from '../loading/sources/progress.js';
import type { FromPretrainedOptions } from '../models/auto.js';
import type { BitsAndBytesConfig, BitsAndBytesConfigOptions } from '../models/bnb-config.js';
import type { GenerateOptions, MemoryFootprint } from '../models/causal-lm.js';
import type { GenerationStats, MemoryPlan, Reply, Request, SerializedError, WorkerModelInfo, WorkerSourceInput } from './protocol.js';

export type { GenerationStats, MemoryPlan, MemoryPlanRow, PlanQuant, WorkerModelInfo, WorkerSourceInput } from './protocol.js';

/**
 * fromPretrained's options that can cross to a worker (no backend / gpu / fetch objects: the
 * worker makes its own). quantizationConfig may be a BitsAndBytesConfig or its options.
 */
export interface WorkerLoadOptions extends Omit<FromPretrainedOptions, 'backend' | 'gpu' | 'fetch' | 'quantizationConfig'> {
  quantizationConfig?: BitsAndBytesConfig | BitsAndBytesConfigOptions;
}

/** generate()'s options in a worker: the model's own tokenizer is used; `onText` receives the streamed text. */
export interface WorkerGenerateOptions extends Omit<GenerateOptions, 'tokenizer'> {
  /** Each new piece of text as it is generated (decoded in the worker, as TextStreamer does). */
  onText?: (text: string) => void;
  /** Leave special tokens (EOS, …) out of onText / stream() text (default true). */
  skipSpecialTokens?: boolean;
}

export interface LowbitWorkerOptions {
  /** A worker you started yourself on lowbit's model-worker script (default: one started from `new URL('./model-worker.js', import.meta.url)`). */
  worker?: Worker;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onProgress?: ProgressCallback;
  onTokens?: (ids: number[]) => void;
  onText?: (text: string) => void;
  onDeviceLost?: GenerateOptions['onDeviceLost'];
}

const bad = (m: string): never => {
  throw new LowbitError('INVALID_ARGUMENT', m);
};

function revive(e: SerializedError): Error {
  const err = e.code !== undefined ? new LowbitError(e.code as LowbitErrorCode, e.message, { ...(e.file !== undefined ? { file: e.file } : {}), ...(e.index !== undefined ? { index: e.index } : {}) }) : Object.assign(new Error(e.message), { name: e.name });
  if (e.stack) err.stack = `${err.name}: ${err.message}\n    (in the model worker)\n${e.stack.split('\n').slice(1).join('\n')}`;
  return err;
}

/** A source the worker can take: URLs as strings; page-relative paths resolved against the page. */
function postableSource(input: WorkerSourceInput | URL): WorkerSourceInput {
  if (input instanceof URL) return input.href;
  const loc = (globalThis as { location?: { href: string } }).location;
  if (typeof input === 'string' && /^\.{0,2}\//.test(input) && loc !== undefined) return new URL(input, loc.href).href;
  return input;
}

/** The options without what cannot cross to the worker (functions, signals), checked. */
function postableOptions(o: object, drop: readonly string[], refuse: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (refuse.includes(k) && v !== undefined) bad(`${k} cannot be passed to a model in a worker (the worker makes its own); run the model on the page with AutoModelForCausalLM.fromPretrained for that`);
    if (drop.includes(k) || v === undefined) continue;
    if (typeof v === 'function') bad(`option ${k} is a function and cannot be passed to a worker`);
    out[k] = v;
  }
  return out;
}

/**
 * A Web Worker that holds lowbit: load one model into it (fromPretrained) or plan a model's
 * memory under each quantization choice (planMemory, headers only).
 */
export class LowbitWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failed: LowbitError | undefined;

  constructor(o: LowbitWorkerOptions = {}) {
    if (o.worker !== undefined) {
      this.worker = o.worker;
    } else {
      if (typeof Worker !== 'function') throw new LowbitError('WORKER_FAILED', 'this runtime has no Web Worker (lowbit/worker is for browsers and Deno; in Node use AutoModelForCausalLM, whose threads already run in worker_threads)');
      // Written out literally so that bundlers (vite, webpack) find and ship the worker script.
      this.worker = new Worker(new URL('./model-worker.js', import.meta.url), { type: 'module', name: 'lowbit-model' });
    }
    this.worker.addEventListener('message', (e) => this.receive(e.data as Reply));
    this.worker.addEventListener('error', (e) => {
      e.preventDefault();
      this.fail(`the model worker failed: ${e.message || 'its script did not load'}`);
    });
    this.worker.addEventListener('messageerror', () => this.fail('a message from the model worker could not be deserialized'));
  }

  private fail(message: string): void {
    this.failed = new LowbitError('WORKER_FAILED', message);
    for (const p of this.pending.values()) p.reject(this.failed);
    this.pending.clear();
  }

  private receive(r: Reply): void {
    const p = this.pending.get(r.id);
    if (p === undefined) return;
    switch (r.type) {
      case 'progress':
        p.onProgress?.(r.event);
        return;
      case 'tokens':
        p.onTokens?.(r.ids);
        return;
      case 'text':
        p.onText?.(r.text);
        return;
      case 'device-lost':
        p.onDeviceLost?.(r.info);
        return;
      case 'done':
        this.pending.delete(r.id);
        p.resolve(r.value);
        return;
      case 'error':
        this.pending.delete(r.id);
        p.reject(revive(r.error));
        return;
    }
  }

  /** Sends a request; the reply's value, or its error as thrown in the worker. An abort of `signal` is forwarded. */
  request<T>(make: (id: number) => Request, handlers: Omit<Pending, 'resolve' | 'reject'> = {}, signal?: AbortSignal): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => this.worker.postMessage({ type: 'abort', id, reason: String(signal?.reason ?? 'aborted') } satisfies Request);
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, { ...handlers, resolve: (v) => (done(), resolve(v as T)), reject: (e) => (done(), reject(e)) });
      try {
        this.worker.postMessage(make(id));
      } catch (e) {
        this.pending.delete(id);
        reject(new LowbitError('INVALID_ARGUMENT', `the request cannot be sent to the worker (${e instanceof Error ? e.message : String(e)}): pass only plain data, Blobs and Files`));
        return;
      }
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Loads a model into this worker, as AutoModelForCausalLM.fromPretrained(input, options):
   * a hub id, an http(s) URL (a page-relative path such as '/models/x/' is resolved against the
   * page), a File / Blob, File[] (a dropped folder) or Map<string, Blob>. `onProgress` and
   * `signal` work as there.
   */
  async fromPretrained(input: WorkerSourceInput | URL, options: WorkerLoadOptions = {}): Promise<WorkerModel> {
    if (typeof options !== 'object' || options === null) bad('fromPretrained options must be an object');
    const { onProgress, signal } = options;
    if (onProgress !== undefined && typeof onProgress !== 'function') bad('onProgress must be a function');
    const plain = postableOptions(options, ['onProgress', 'signal'], ['backend', 'gpu', 'fetch']);
    const info = await this.request<WorkerModelInfo>((id) => ({ type: 'load', id, input: postableSource(input), options: plain, progress: onProgress !== undefined }), onProgress ? { onProgress } : {}, signal);
    return new WorkerModel(this, info);
  }

  /**
   * The bytes the loader plans for the model (weights and KV cache) unquantized, int8, nf4 and
   * nf4 + double quant: the size plan deviceMap 'auto' budgets with, from headers only (no weight
   * is read), as `lowbit inspect` prints it.
   */
  planMemory(input: WorkerSourceInput | URL, options: Pick<WorkerLoadOptions, 'maxPositions' | 'endpoint' | 'revision' | 'token' | 'headers' | 'signal'> = {}): Promise<MemoryPlan> {
    const plain = postableOptions(options, ['signal'], ['fetch']);
    return this.request<MemoryPlan>((id) => ({ type: 'plan', id, input: postableSource(input), options: plain }), {}, options.signal);
  }

  /** Stops the worker at once (a model in it is gone; requests in flight fail with WORKER_FAILED). */
  terminate(): void {
    this.worker.terminate();
    if (!this.failed) this.fail('the worker was terminated');
  }
}

/** A model loaded in a worker: CausalLM's generate / dispose, plus stream() for text. */
export class WorkerModel {
  /** Statistics of the last finished generate() / stream(). */
  lastStats: GenerationStats | undefined;
  private disposed = false;

  constructor(
    readonly worker: LowbitWorker,
    /** What the model is and where it runs, as of the end of the load. */
    readonly info: WorkerModelInfo,
  ) {}

  /** module -> 'cpu' | 'webgpu', as CausalLM.deviceMap. */
  get deviceMap(): Record<string, string> {
    return this.info.deviceMap;
  }

  /** Threads of the worker's CPU backend (1 where threads were unavailable or did not pay: info.threadsNote says why). */
  get threads(): number {
    return this.info.threads;
  }

  /**
   * As CausalLM.generate: the new token ids. `streamer` and `onToken` get the ids as they come,
   * `onText` the text; `signal` aborts it (LowbitError ABORTED).
   */
  async generate(o: WorkerGenerateOptions): Promise<number[]> {
    if (typeof o !== 'object' || o === null) bad('generate() takes an options object');
    if ((o as { tokenizer?: unknown }).tokenizer !== undefined) bad("generate({ tokenizer }) cannot cross to a worker: the model's own tokenizer is used");
    const { streamer, onToken, onText, onDeviceLost, signal } = o;
    for (const [k, f] of Object.entries({ onToken, onText, onDeviceLost })) if (f !== undefined && typeof f !== 'function') bad(`${k} must be a function`);
    if (streamer !== undefined && !(typeof streamer.put === 'function' && typeof streamer.end === 'function')) bad('streamer must have put(ids) and end()');
    const plain = postableOptions(o, ['streamer', 'onToken', 'onText', 'onDeviceLost', 'signal', 'skipSpecialTokens'], []);
    const tokens = streamer !== undefined || onToken !== undefined;
    const r = await this.worker.request<{ ids: number[]; stats: GenerationStats }>(
      (id) => ({ type: 'generate', id, options: plain, text: onText !== undefined, tokens, skipSpecialTokens: o.skipSpecialTokens ?? true }),
      {
        ...(tokens ? { onTokens: (ids: number[]) => { streamer?.put(ids); for (const t of ids) onToken?.(t); } } : {}),
        ...(onText ? { onText } : {}),
        ...(onDeviceLost ? { onDeviceLost } : {}),
      },
      signal,
    );
    streamer?.end();
    this.lastStats = r.stats;
    return r.ids;
  }

  /**
   * The generated text, piece by piece as it is generated. Leaving the loop early (break)
   * stops generation in the worker. Statistics land in lastStats when it ends.
   */
  async *stream(o: Omit<WorkerGenerateOptions, 'onText'>): AsyncGenerator<string, void, undefined> {
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    let failure: unknown;
    const stop = new AbortController();
    const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
    const run = this.generate({ ...o, signal, onText: (t) => (queue.push(t), wake?.()) }).then(
      () => void (finished = true),
      (e: unknown) => void ((failure = e), (finished = true)),
    ).finally(() => wake?.());
    try {
      while (true) {
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (finished) break;
        await new Promise<void>((ok) => (wake = ok));
        wake = undefined;
      }
      if (failure !== undefined) throw failure;
    } finally {
      if (!finished) {
        stop.abort('stream() was left early');
        await run;
      }
    }
  }

  /** Token ids -> text with the model's tokenizer (in the worker). */
  decode(ids: readonly number[], o: { skipSpecialTokens?: boolean } = {}): Promise<string> {
    return this.worker.request<string>((id) => ({ type: 'decode', id, ids: [...ids], skipSpecialTokens: o.skipSpecialTokens ?? false }));
  }

  /** As CausalLM.getMemoryFootprint, asked of the worker now. */
  getMemoryFootprint(): Promise<MemoryFootprint> {
    return this.worker.request<MemoryFootprint>((id) => ({ type: 'footprint', id }));
  }

  /** Frees the model and stops its worker (and the worker's CPU threads). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.worker.terminate();
  }
}

/**
 * AutoModelForCausalLM.fromPretrained in a Web Worker of its own: the page stays responsive while
 * the model loads and generates. The model's dispose() stops the worker.
 */
export async function fromPretrainedInWorker(input: WorkerSourceInput | URL, options: WorkerLoadOptions = {}): Promise<WorkerModel> {
  const worker = new LowbitWorker();
  try {
    return await worker.fromPretrained(input, options);
  } catch (e) {
    worker.terminate();
    throw e;
  }
}
