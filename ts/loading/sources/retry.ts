/**
 * Retries of transient HTTP failures, shared by URL sources and the hub cache: the status codes
 * worth another try, the error that marks a failure as one, an abortable sleep and the loop.
 */
import type { LowbitError } from '../../errors.js';

/** HTTP statuses worth another try. */
export const TRANSIENT = new Set([408, 425, 429, 500, 502, 503, 504]);

/** A failure worth another try; `error` is thrown when the tries run out. */
export class Retryable extends Error {
  constructor(
    readonly error: LowbitError,
    readonly retryAfterMs?: number,
  ) {
    super(error.message);
  }
}

/** Waits `ms`; rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `attempt`, trying a Retryable failure again up to `retries` times after `delayMs(i, e)`
 * (i = 0 for the first retry); aborts with the signal's reason.
 */
export async function withRetries<T>(signal: AbortSignal | undefined, retries: number, delayMs: (i: number, e: Retryable) => number, attempt: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    signal?.throwIfAborted();
    try {
      return await attempt();
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (!(e instanceof Retryable)) throw e;
      if (i >= retries) throw e.error;
      await sleep(delayMs(i, e), signal);
    }
  }
}
