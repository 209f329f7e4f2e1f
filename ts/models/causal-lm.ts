/** What every causal LM shares: the KV-cache position, logits, greedy / sampled generation, footprint. */
import { LowbitError } from '../errors.js';
import type { Activation, Backend, KvCacheHandle } from '../backends/backend.js';
import type { DecoderConfig } from './config.js';

export interface GenerateOptions {
  inputIds: ArrayLike<number>;
  maxNewTokens?: number;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
  /** Stop at any of these ids (default: the config's eos ids; pass [] to never stop). */
  eosTokenIds?: number[];
  signal?: AbortSignal;
  onToken?: (id: number) => void;
}

export interface MemoryFootprint {
  total: number;
  byDevice: Record<string, number>;
  byModule: Record<string, number>;
}

export abstract class CausalLM {
  protected caches: KvCacheHandle[] = [];
  /** Tokens already in the KV cache. */
  position = 0;
  protected readonly footprint = new Map<string, { device: string; bytes: number }>();
  /** Whether dispose() also disposes the backend (fromPretrained sets it when it made the backend). */
  disposeBackend = false;

  constructor(
    readonly config: DecoderConfig,
    readonly backend: Backend,
    readonly maxPositions: number,
  ) {}

  /** Runs `ids` at positions [start, start + n) and returns activations of the last norm, [n, hidden]. */
  protected abstract hidden(ids: Uint32Array, start: number): Activation;
  /** Logits for rows of the final hidden states. */
  protected abstract logits(h: Activation): Activation;

  protected record(name: string, h: { device: string; bytes: number }): void {
    this.footprint.set(name, { device: h.device, bytes: h.bytes });
  }

  /** Logits [ids.length, vocab] for the next tokens, continuing the cache from `start` (default: where it is). */
  async forward(ids: ArrayLike<number>, start = this.position): Promise<Float32Array> {
    if (ids.length === 0) throw new LowbitError('INVALID_ARGUMENT', 'forward needs at least one token');
    if (start > this.position) throw new LowbitError('INVALID_ARGUMENT', `start ${start} is past the cached positions (${this.position})`);
    if (start + ids.length > this.maxPositions) throw new LowbitError('INVALID_ARGUMENT', `${start + ids.length} positions exceed this model's cache of ${this.maxPositions} (raise maxPositions)`);
    const u = Uint32Array.from(ids);
    for (const id of u) if (id >= this.config.vocabSize) throw new LowbitError('INVALID_ARGUMENT', `token id ${id} is outside the vocabulary (${this.config.vocabSize})`);
    const h = this.hidden(u, start);
    this.position = start + u.length;
    const out = this.logits(h);
    const r = await this.backend.read(out);
    this.backend.release(out);
    this.backend.release(h);
    return r;
  }

  /** Forgets the cached positions. */
  reset(): void {
    this.position = 0;
  }

  async generate(o: GenerateOptions): Promise<number[]> {
    const max = o.maxNewTokens ?? 20;
    const eos = new Set(o.eosTokenIds ?? this.config.eosTokenIds);
    let rng = (o.seed ?? 0x2545f491) >>> 0 || 1;
    const random = () => ((rng ^= rng << 13), (rng ^= rng >>> 17), (rng ^= rng << 5), (rng >>> 0) / 2 ** 32);
    this.reset();
    const seen = Array.from(o.inputIds);
    let logits = await this.forward(seen);
    const out: number[] = [];
    const vocab = this.config.vocabSize;
    for (let step = 0; step < max; step++) {
      o.signal?.throwIfAborted();
      const last = logits.subarray(logits.length - vocab);
      const id = pick(last, seen, o, random);
      out.push(id);
      seen.push(id);
      o.onToken?.(id);
      if (eos.has(id) || step === max - 1) break;
      logits = await this.forward([id]);
    }
    return out;
  }

  getMemoryFootprint(): MemoryFootprint {
    const byDevice: Record<string, number> = {};
    const byModule: Record<string, number> = {};
    let total = 0;
    for (const [name, { device, bytes }] of this.footprint) {
      byDevice[device] = (byDevice[device] ?? 0) + bytes;
      byModule[name] = bytes;
      total += bytes;
    }
    return { total, byDevice, byModule };
  }

  /** Frees the weights and caches (and the backend, when `disposeBackend`: its worker threads). */
  dispose(): void {
    try {
      this.disposeWeights();
    } finally {
      if (this.disposeBackend) this.backend.dispose();
    }
  }

  protected abstract disposeWeights(): void;
}

function pick(logits: Float32Array, seen: number[], o: GenerateOptions, random: () => number): number {
  const l = Float32Array.from(logits);
  if (o.repetitionPenalty && o.repetitionPenalty !== 1) {
    for (const id of new Set(seen)) l[id] = l[id]! > 0 ? l[id]! / o.repetitionPenalty : l[id]! * o.repetitionPenalty;
  }
  if (!o.doSample) {
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
    return best;
  }
  const t = o.temperature ?? 1;
  let idx = Array.from(l.keys()).sort((a, b) => l[b]! - l[a]!);
  if (o.topK && o.topK > 0) idx = idx.slice(0, o.topK);
  const max = l[idx[0]!]!;
  let probs = idx.map((i) => Math.exp((l[i]! - max) / t));
  let sum = probs.reduce((a, b) => a + b, 0);
  if (o.topP !== undefined && o.topP < 1) {
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
