/**
 * Whether worker threads pay on this machine right now: 'auto' threads measure it once, when the
 * backend is made, and keep one thread when they do not.
 *
 * Every op waits for its slowest thread, so when the cores are busy with other processes (a
 * shared 2-core machine, a laptop compiling) a worker that the scheduler runs late makes each op
 * slower than the main thread alone would be; measured on the development machine at load
 * average 18: every layer shape of SmolLM2 / TinyLlama took 1.1-4× as long on two threads.
 * The test: one f32 GEMV of `threads` × 256 rows on the main thread alone against the same rows
 * split between all threads (256 × 512 = 512 KiB per thread, ~30-60 µs per slice), rounds
 * alternating for at least TEST_MS (several scheduler time slices, so that one quiet moment of
 * a busy machine does not decide), medians; the threads stay at >= AUTO_MIN_SPEEDUP.
 */
import type * as bindings from '../../../wasm/pkg/lowbit_wasm.js';
import { Cmd } from './protocol.js';
import type { WorkerPool } from './pool.js';

/** Smallest measured speedup for which 'auto' keeps the threads (1 = they only need to break even). */
export const AUTO_MIN_SPEEDUP = 1.2;

const ROWS_PER_THREAD = 256;
const K = 512;
/** The test runs at least this long and MIN_ROUNDS rounds, at most MAX_ROUNDS. */
const TEST_MS = 25;
const MIN_ROUNDS = 15;
const MAX_ROUNDS = 1000;

/** Time of one full-weight GEMV on this thread alone over the same GEMV split across the pool. */
export function measureThreadSpeedup(pool: WorkerPool, w: typeof bindings): number {
  const t = pool.threads;
  const n = t * ROWS_PER_THREAD;
  const data = Float32Array.from({ length: n * K }, (_, i) => (((i * 2654435761) >>> 16) & 1023) / 1024 - 0.5);
  const x = Float32Array.from({ length: K }, (_, i) => Math.sin(i));
  const full = w.Linear.dense(data, n, K);
  const own = w.Linear.dense(data.subarray(0, ROWS_PER_THREAD * K), ROWS_PER_THREAD, K);
  const id = pool.newId();
  try {
    pool.build(
      id,
      Array.from({ length: t - 1 }, (_, i) => {
        const [r0, r1] = [(i + 1) * ROWS_PER_THREAD, (i + 2) * ROWS_PER_THREAD];
        return { kind: 'dense' as const, rows: [r0, r1] as [number, number], n, k: K, data: data.slice(r0 * K, r1 * K) };
      }),
    );
    const alone = (): void => void full.forward(x, 1);
    const split = (): void => void pool.matmul(Cmd.Forward, id, x, 1, K, n, ROWS_PER_THREAD, () => own.forward(x, 1));
    for (let i = 0; i < 3; i++) { alone(); split(); } // past V8's baseline tier and first-touch costs
    const a: number[] = [];
    const s: number[] = [];
    const start = performance.now();
    for (let r = 0; r < MAX_ROUNDS && (r < MIN_ROUNDS || performance.now() - start < TEST_MS); r++) {
      let t0 = performance.now();
      alone();
      a.push(performance.now() - t0);
      t0 = performance.now();
      split();
      s.push(performance.now() - t0);
    }
    return median(a) / Math.max(median(s), 1e-6);
  } finally {
    full.free();
    own.free();
    pool.free(id);
  }
}

function median(xs: number[]): number {
  return [...xs].sort((p, q) => p - q)[xs.length >> 1]!;
}
