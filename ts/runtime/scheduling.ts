/**
 * How generation shares the thread and the model:
 * - yieldToEventLoop: the CPU path runs its kernels synchronously in wasm; awaiting this once per
 *   token lets timers (AbortSignal.timeout), I/O and UI events run between tokens.
 * - Turns: one model has one KV cache, so calls that use it run one at a time — a second
 *   generate() waits its turn (FIFO) instead of interleaving with the first.
 * - abortError: an abort becomes LowbitError('ABORTED') with the signal's reason as `cause`.
 */
import { LowbitError } from '../errors.js';

type Tick = (f: () => void) => void;
const tick: Tick = (() => {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown };
  // Node / Bun / Deno: setImmediate runs after pending I/O and before the next timers phase check.
  if (typeof g.setImmediate === 'function') return (f: () => void) => void g.setImmediate!(f);
  // Browsers: a MessageChannel message is a task (setTimeout(0) is clamped to 4 ms after nesting).
  if (typeof MessageChannel === 'function') {
    // Made on first use, and unref'd where ports can keep a process alive (Deno, Node).
    let ch: MessageChannel | undefined;
    const waiting: (() => void)[] = [];
    return (f: () => void) => {
      if (ch === undefined) {
        ch = new MessageChannel();
        ch.port1.onmessage = () => waiting.shift()?.();
        (ch.port1 as { unref?: () => void }).unref?.();
      }
      waiting.push(f);
      ch.port2.postMessage(0);
    };
  }
  return (f: () => void) => void setTimeout(f, 0);
})();

/** Lets the event loop run once (timers, I/O, abort events) before the next token. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => tick(r));
}

/** LowbitError('ABORTED') for an aborted signal, with its reason as cause. */
export function abortError(signal: AbortSignal, what: string): LowbitError {
  const reason: unknown = signal.reason;
  const why = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
  return new LowbitError('ABORTED', `${what} was aborted (${why})`, { cause: reason });
}

/** Throws ABORTED when the signal is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

/** An error caused by the signal's abort (its reason, or a DOMException AbortError while aborted) as ABORTED; other errors unchanged. */
export function asAbortError(e: unknown, signal: AbortSignal | undefined, what: string): unknown {
  if (signal?.aborted && !(e instanceof LowbitError && e.code !== 'ABORTED') && (e === signal.reason || (e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError')))) {
    return e instanceof LowbitError ? e : abortError(signal, what);
  }
  return e;
}

/** One-at-a-time access to a resource (a model's KV cache); FIFO, abortable while waiting. */
export class Turns {
  private tail: Promise<void> = Promise.resolve();

  /** Waits for the earlier holders, then runs `f`; a signal that aborts while waiting gives up the place. */
  async run<T>(signal: AbortSignal | undefined, what: string, f: () => Promise<T>): Promise<T> {
    const before = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    try {
      await waitOrAbort(before, signal, what);
      return await f();
    } finally {
      // The next caller's turn starts only after the earlier ones (even if this one gave up waiting).
      void before.then(release);
    }
  }
}

function waitOrAbort(p: Promise<void>, signal: AbortSignal | undefined, what: string): Promise<void> {
  if (signal === undefined) return p;
  throwIfAborted(signal, what);
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
