/**
 * Argument checks every backend applies the same way (so the CPU and WebGPU backends refuse the
 * same inputs with the same INVALID_ARGUMENT messages).
 */
import { LowbitError } from '../errors.js';
import type { Activation, AttentionExtras, KvCacheHandle } from './backend.js';

export function bad(message: string): never {
  throw new LowbitError('INVALID_ARGUMENT', message);
}

/** A u32-sized non-negative integer. */
export function isCount(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

export function checkPositive(what: string, n: number): void {
  if (!isCount(n) || n === 0) bad(`${what} must be a positive integer, got ${n}`);
}

/** A DenseWeight's shape as [out, in] for a linear layer. */
export function shape2(name: string, shape: readonly number[]): [number, number] {
  if (shape.length !== 2 || !shape.every((d) => isCount(d) && d > 0)) bad(`${name}: a linear weight must be 2-D [out, in] with positive sizes, got [${shape.join(', ')}]`);
  return [shape[0]!, shape[1]!];
}

/** The shape rules of Backend.attention (q [n, nHeads·headDim], k / v [n, nKv·headDim], room in the cache). */
export function checkAttention(q: Activation, k: Activation, v: Activation, c: KvCacheHandle, start: number, nHeads: number, scale: number | undefined, extras?: AttentionExtras): void {
  checkPositive('attention: nHeads', nHeads);
  if (!isCount(start)) bad(`attention: start must be a non-negative integer, got ${start}`);
  const n = q.rows;
  if (n === 0) bad('attention: q has no rows');
  if (nHeads % c.nKvHeads !== 0) bad(`attention: ${nHeads} query heads are not a multiple of the cache's ${c.nKvHeads} kv heads`);
  const kvCols = c.nKvHeads * c.headDim;
  if (q.cols !== nHeads * c.headDim) bad(`attention: q has ${q.cols} columns but ${nHeads} heads of ${c.headDim} need ${nHeads * c.headDim}`);
  if (k.rows !== n || k.cols !== kvCols) bad(`attention: k is [${k.rows}, ${k.cols}] but [${n}, ${kvCols}] is needed`);
  if (v.rows !== n || v.cols !== kvCols) bad(`attention: v is [${v.rows}, ${v.cols}] but [${n}, ${kvCols}] is needed`);
  if (start + n > c.maxPositions) bad(`attention: positions ${start}..${start + n} exceed the kv cache capacity of ${c.maxPositions} positions`);
  if (scale !== undefined && !Number.isFinite(scale)) bad(`attention: scale must be finite, got ${scale}`);
  if (extras?.softcap !== undefined && !(Number.isFinite(extras.softcap) && extras.softcap > 0)) bad(`attention: softcap must be a positive finite number, got ${extras.softcap}`);
  if (extras?.window !== undefined && !(Number.isInteger(extras.window) && extras.window >= 1 && extras.window <= 0xffffffff)) bad(`attention: window must be an integer >= 1, got ${extras.window}`);
}

/** The cap of Backend.softcap / the factor of Backend.scale. */
export function checkFinitePositive(what: string, v: number, positive: boolean): void {
  if (!(typeof v === 'number' && Number.isFinite(v) && (!positive || v > 0))) bad(`${what} must be a ${positive ? 'positive ' : ''}finite number, got ${String(v)}`);
}
