/**
 * What the runtime offers for threads: shared memory, a Worker implementation, the core count,
 * and whether this thread may block in Atomics.wait.
 *
 * - Node: node:worker_threads (ESM workers from a file: URL), os.availableParallelism().
 * - Deno and browsers: the global module Worker, navigator.hardwareConcurrency. Browsers hand
 *   out SharedArrayBuffer only to cross-origin-isolated pages (COOP: same-origin + COEP:
 *   require-corp or credentialless), so `crossOriginIsolated` must be true there.
 */
import { LowbitError } from '../../../errors.js';

/** Threads 'auto' uses at most this many (GEMV is memory-bound: more threads stop paying). */
export const MAX_AUTO_THREADS = 8;
/** An explicit thread count may not exceed this. */
export const MAX_THREADS = 64;

interface NodeGlobals {
  process?: { versions?: { node?: string } };
  Deno?: unknown;
  crossOriginIsolated?: boolean;
  navigator?: { hardwareConcurrency?: number };
  Worker?: unknown;
  document?: unknown;
}

const g = globalThis as unknown as NodeGlobals;

/** Node proper (Deno also defines `process`). */
export function isNode(): boolean {
  return g.Deno === undefined && typeof g.process?.versions?.node === 'string';
}

// Computed specifiers keep browser bundlers away from node: modules.
async function nodeModule<T>(name: string): Promise<T> {
  const spec = `node:${name}`;
  return (await import(/* @vite-ignore */ spec)) as T;
}

/** Logical cores available to this process. */
export async function hardwareConcurrency(): Promise<number> {
  if (isNode()) {
    const os = await nodeModule<{ availableParallelism?: () => number; cpus: () => unknown[] }>('os');
    return os.availableParallelism?.() ?? os.cpus().length;
  }
  return g.navigator?.hardwareConcurrency ?? 1;
}

/** Why threads cannot run here, or undefined when they can. */
export function threadsUnavailable(): string | undefined {
  if (typeof SharedArrayBuffer !== 'function' || typeof Atomics !== 'object') {
    return g.crossOriginIsolated === false
      ? 'SharedArrayBuffer needs a cross-origin-isolated page (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)'
      : 'this runtime has no SharedArrayBuffer / Atomics';
  }
  if (g.crossOriginIsolated === false) return 'the page is not cross-origin isolated (needs COOP: same-origin and COEP: require-corp headers)';
  if (!isNode() && typeof g.Worker !== 'function') return 'this runtime has no Worker';
  return undefined;
}

let blockable: boolean | undefined;
/**
 * Whether Atomics.wait may block this thread: not on a browser's main thread (it throws there),
 * where the pool spins on Atomics.load instead.
 */
export function canBlock(): boolean {
  if (blockable === undefined) {
    try {
      // A value that does not match returns "not-equal" at once where waiting is allowed.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
      blockable = true;
    } catch {
      blockable = false;
    }
  }
  return blockable;
}

/** The little a pool needs from a worker, whatever the runtime's Worker class. */
export interface WorkerLike {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  terminate(): void;
  /** Lets the process exit while the worker idles (Node); a no-op elsewhere. */
  unref(): void;
  onMessage(f: (data: unknown) => void): void;
  /** Called once when the worker fails to load, throws at top level or exits. */
  onFailure(f: (reason: string) => void): void;
}

/** Starts one worker running worker.js (module workers in Deno and browsers). */
export async function spawnWorker(name: string): Promise<WorkerLike> {
  if (isNode()) {
    const { Worker } = await nodeModule<typeof import('node:worker_threads')>('worker_threads');
    // execArgv: [] — the worker is plain ESM and needs none of the parent's flags, some of which
    // (--input-type, --eval, loaders) would stop it from starting.
    const w = new Worker(new URL('./worker.js', import.meta.url), { name, execArgv: [] });
    return {
      postMessage: (m, t) => w.postMessage(m, t as never),
      terminate: () => void w.terminate(),
      unref: () => w.unref(),
      onMessage: (f) => w.on('message', f),
      onFailure: (f) => {
        w.on('error', (e) => f(e instanceof Error ? e.message : String(e)));
        w.on('exit', (code) => f(`the worker thread exited (code ${code})`));
      },
    };
  }
  // Written out literally so that bundlers (vite, webpack) find and ship the worker script.
  const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name });
  return {
    postMessage: (m, t) => w.postMessage(m, t ?? []),
    terminate: () => w.terminate(),
    unref: () => {},
    onMessage: (f) => w.addEventListener('message', (e) => f((e as MessageEvent).data)),
    onFailure: (f) => {
      w.addEventListener('error', (e) => {
        (e as Event).preventDefault?.();
        f((e as ErrorEvent).message || 'the worker script failed to load');
      });
      w.addEventListener('messageerror', () => f('a message to the worker could not be deserialized'));
    },
  };
}

/** The thread count to use for `threads` ('auto' or a number), or why 'auto' picked one. */
export async function resolveThreads(threads: number | 'auto' | undefined): Promise<{ threads: number; reason?: string }> {
  const want = threads ?? 'auto';
  if (want !== 'auto' && !(Number.isInteger(want) && want >= 1 && want <= MAX_THREADS)) {
    throw new LowbitError('INVALID_ARGUMENT', `threads must be 'auto' or an integer from 1 to ${MAX_THREADS}, got ${String(want)}`);
  }
  if (want === 1) return { threads: 1 };
  const why = threadsUnavailable();
  if (why !== undefined) {
    if (want === 'auto') return { threads: 1, reason: why };
    throw new LowbitError('WORKER_FAILED', `threads: ${want} is not possible here: ${why}`);
  }
  if (want !== 'auto') return { threads: want };
  const hw = await hardwareConcurrency();
  return hw > 1 ? { threads: Math.min(hw, MAX_AUTO_THREADS) } : { threads: 1, reason: 'one core' };
}
