/**
 * How a weight's output rows are split between the threads of a CpuBackend (tensor parallelism
 * by output rows: each thread keeps rows [bounds[t], bounds[t + 1]) and computes those outputs).
 *
 * Every output element is then computed by the same kernel from the same weight row and the same
 * activations as on one thread, so results are bit-identical, provided that
 * - a 4-bit slice starts on a block boundary of the FLATTENED weight (blocks span rows when
 *   K % blocksize != 0) — r * K must be a multiple of the blocksize, which (blocksizes being even)
 *   also keeps nibble pairs whole;
 * - slices start at a multiple of ROW_ALIGN rows, so that a kernel that walks weight rows in
 *   groups (of 2, 4, 8 or 16 rows, with a different path for a remainder) groups every row as it
 *   does on one thread: the global remainder stays at the end of the last slice. Today's kernels
 *   treat each weight row on its own; this keeps the guarantee if they start tiling rows;
 * - and the kernels' arithmetic per output element does not depend on how many rows they are
 *   given (no path chosen by N). Every thread sees all M activation rows, so paths chosen by M
 *   are the same. test/cpu-threads.test.ts compares bits and fails if a kernel breaks this.
 */
import { blockRowStep } from '../../../formats/types.js';

/** Slice starts are multiples of this many rows (see above). */
export const ROW_ALIGN = 16;

/**
 * Below this many weight elements per slice a layer is not split (a fixed minSliceElements
 * option overrides it for every format). Each op on the threads costs a round trip (~5-30 µs
 * on the 2-core development machine: post, futex wake-up, the workers' wasm-bindgen calls,
 * copies through shared memory), so a slice must take several times that on one core to pay.
 * One thread reads about 10 G int8 weights/s, 5 G f16, 2.5 G f32 and computes about 4 G 4-bit
 * weights/s (bench cpu), so the limit is one amount of time, ~25 µs of work per slice: before,
 * 32 K elements of any format (3-8 µs) made every small layer of SmolLM2-135M (k/v 110 K
 * elements, q/o 330 K) cost more on two threads than on one. Layers in a fused dispatch
 * (linearForwardMany) share one round trip; the ones not split run on the main thread meanwhile.
 */
export const MIN_SLICE_ELEMENTS = {
  int8: 1 << 18,
  f16: 1 << 17,
  bf16: 1 << 17,
  f32: 1 << 16,
  '4bit': 1 << 17,
} as const;

export type SliceFormat = keyof typeof MIN_SLICE_ELEMENTS;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Rows per slice step for a weight whose format keeps blocks whole every `formatStep` rows (WeightFormat.rowStep): a multiple of both that and ROW_ALIGN. */
export function alignedRowStep(formatStep: number): number {
  return (formatStep * ROW_ALIGN) / gcd(formatStep, ROW_ALIGN);
}

/** Rows per step for a 4-bit weight with K columns in blocks of `blocksize` (a power of two). */
export function rowStep4bit(k: number, blocksize: number): number {
  return alignedRowStep(blockRowStep(k, blocksize));
}

/**
 * Row bounds [0, b1, ..., n] of at most `parts` non-empty slices of n rows (k columns each),
 * every inner bound a multiple of `step`, slices of at least `minElements` weights (fewer slices
 * when the layer is small or the step coarse; one slice = not split).
 */
export function splitRows(n: number, k: number, parts: number, step: number, minElements: number): number[] {
  const s = Math.max(1, Math.min(parts, Math.floor(n / step), Math.floor((n * k) / Math.max(1, minElements))));
  const bounds = [0];
  // Rounding s * n / S to the nearest step keeps bounds strictly increasing, as n / S >= step.
  for (let i = 1; i < s; i++) bounds.push(Math.min(n, Math.round((i * n) / s / step) * step));
  bounds.push(n);
  return bounds;
}
