/**
 * Next-token choice from one row of logits, as transformers' generate does it: repetition
 * penalty (CTRL paper: divide positive logits, multiply negative ones), then greedy argmax, or
 * temperature → top-k → top-p (nucleus) → a draw from a seeded xorshift32 generator.
 */
import { LowbitError } from '../errors.js';

/** Sampling settings of `generate()`, applied as transformers applies them (greedy unless doSample). */
export interface SamplingOptions {
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
}

function bad(message: string): never {
  throw new LowbitError('INVALID_ARGUMENT', message);
}

/** Rejects values transformers would also reject (or that would silently do nothing useful). */
export function checkSamplingOptions(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(Number.isFinite(o.temperature) && o.temperature > 0)) bad(`temperature must be a number > 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad(`topK must be an integer >= 0 (0 = off), got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad(`topP must be in (0, 1], got ${o.topP}`);
  if (o.repetitionPenalty !== undefined && !(Number.isFinite(o.repetitionPenalty) && o.repetitionPenalty > 0)) bad(`repetitionPenalty must be a number > 0, got ${o.repetitionPenalty}`);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad(`seed must be an integer, got ${o.seed}`);
}

/** A fresh seed from the platform's CSPRNG (Node >= 19, Deno and browsers have crypto). */
export function randomSeed(): number {
  const c = (globalThis as { crypto?: { getRandomValues<T extends ArrayBufferView>(a: T): T } }).crypto;
  return c ? c.getRandomValues(new Uint32Array(1))[0]! : Math.floor(Math.random() * 2 ** 32);
}

/**
 * A seeded xorshift32 stream of numbers in [0, 1). Without a seed, a random one: unseeded
 * sampling differs from run to run (as transformers' does), a given seed repeats exactly.
 */
export function seededRandom(seed: number = randomSeed()): () => number {
  let s = seed >>> 0 || 1;
  return () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32);
}

export function pickToken(logits: Float32Array, seen: readonly number[], o: SamplingOptions, random: () => number): number {
  const l = Float32Array.from(logits);
  if (o.repetitionPenalty !== undefined && o.repetitionPenalty !== 1) {
    for (const id of new Set(seen)) l[id] = l[id]! > 0 ? l[id]! / o.repetitionPenalty : l[id]! * o.repetitionPenalty;
  }
  if (!o.doSample) {
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
    return best;
  }
  let idx = Array.from(l.keys()).sort((a, b) => l[b]! - l[a]!);
  if (o.topK && o.topK > 0) idx = idx.slice(0, o.topK);
  return sampleCandidates(idx.map((i) => l[i]!), idx, o, random);
}

/**
 * Temperature, top-p and the draw over candidates sorted by descending logit (`values[j]` is
 * `ids[j]`'s): what is left of sampling once top-k ran (on the host or on the device).
 */
export function sampleCandidates(values: readonly number[], ids: readonly number[], o: SamplingOptions, random: () => number): number {
  const t = o.temperature ?? 1;
  const max = values[0]!;
  let idx = ids;
  let probs = values.map((v) => Math.exp((v - max) / t));
  let sum = probs.reduce((a, b) => a + b, 0);
  if (o.topP !== undefined && o.topP < 1) {
    // Keep the smallest prefix whose probability mass reaches topP (at least one token).
    let acc = 0;
    let keep = 0;
    while (keep < probs.length && acc < o.topP * sum) acc += probs[keep++]!;
    idx = idx.slice(0, Math.max(1, keep));
    probs = probs.slice(0, Math.max(1, keep));
    sum = probs.reduce((a, b) => a + b, 0);
  }
  let r = random() * sum;
  for (let j = 0; j < idx.length; j++) if ((r -= probs[j]!) <= 0) return idx[j]!;
  return idx[idx.length - 1]!;
}
