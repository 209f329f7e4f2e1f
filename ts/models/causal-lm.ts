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
    const u = this.checkIds(ids, start);
    const b = this.backend;
    const out = b.tidy(() => this.logits(this.hidden(u, start)));
    this.position = start + u.length;
    const r = await b.read(out);
    b.release(out);
    return r;
  }

  private checkIds(ids: ArrayLike<number>, start: number): Uint32Array {
    if (ids.length === 0) throw new LowbitError('INVALID_ARGUMENT', 'forward needs at least one token');
    if (start > this.position) throw new LowbitError('INVALID_ARGUMENT', `start ${start} is past the cached positions (${this.position})`);
    if (start + ids.length > this.maxPositions) throw new LowbitError('INVALID_ARGUMENT', `${start + ids.length} positions exceed this model's cache of ${this.maxPositions} (raise maxPositions)`);
    const u = Uint32Array.from(ids);
    for (const id of u) if (id >= this.config.vocabSize) throw new LowbitError('INVALID_ARGUMENT', `token id ${id} is outside the vocabulary (${this.config.vocabSize})`);
    return u;
  }

  /**
   * One generation step from the cache's end. What comes back is what picking the next token
   * needs, chosen on the backend's device: the argmax id (greedy), the top k candidates (top-k
   * sampling), or the last position's logits.
   */
  protected async step(ids: ArrayLike<number>, want: StepWant): Promise<StepResult> {
    const u = this.checkIds(ids, this.position);
    const b = this.backend;
    const n = u.length;
    const out = b.tidy(() => {
      const h = this.hidden(u, this.position);
      return this.logits(n === 1 ? h : b.rows(h, n - 1, n));
    });
    this.position += n;
    try {
      if (want === 'argmax') return { id: (await b.argmax(out))[0]! };
      if (want === 'logits') return { logits: await b.read(out) };
      return { candidates: await b.topK(out, want.topK) };
    } finally {
      b.release(out);
    }
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
    // Without a repetition penalty (which needs every logit), the device narrows the choice:
    // greedy reads back the argmax, top-k sampling its k candidates.
    const penalty = !!o.repetitionPenalty && o.repetitionPenalty !== 1;
    const topK = o.topK && o.topK > 0 ? Math.min(o.topK, this.config.vocabSize) : 0;
    const want: StepWant = penalty ? 'logits' : !o.doSample ? 'argmax' : topK > 0 && topK <= 1024 ? { topK } : 'logits';
    const out: number[] = [];
    let next = await this.step(seen, want);
    for (let s = 0; s < max; s++) {
      o.signal?.throwIfAborted();
      const id = 'id' in next ? next.id : 'logits' in next ? pick(next.logits, seen, o, random) : sample(Array.from(next.candidates.values), Array.from(next.candidates.indices), o, random);
      out.push(id);
      seen.push(id);
      o.onToken?.(id);
      if (eos.has(id) || s === max - 1) break;
      next = await this.step([id], want);
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

  /** A backend this model created for itself (deviceMap 'gpu'): disposed with the model. */
  ownedBackend: Backend | undefined;

  /** Frees the weights, caches and (if the model made it) the backend. */
  dispose(): void {
    this.disposeModules();
    this.ownedBackend?.dispose();
    this.ownedBackend = undefined;
  }

  /** Frees every handle the model made. */
  protected abstract disposeModules(): void;
}

type StepWant = 'argmax' | 'logits' | { topK: number };
type StepResult = { id: number } | { logits: Float32Array } | { candidates: { indices: Uint32Array; values: Float32Array } };

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
  let idx = Array.from(l.keys()).sort((a, b) => l[b]! - l[a]!);
  if (o.topK && o.topK > 0) idx = idx.slice(0, o.topK);
  return sample(idx.map((i) => l[i]!), idx, o, random);
}

/** Temperature, top-p and the draw over candidates sorted by descending logit (`values[j]` is `ids[j]`'s). */
function sample(values: number[], ids: number[], o: GenerateOptions, random: () => number): number {
  const t = o.temperature ?? 1;
  const max = values[0]!;
  let idx = ids;
  let probs = values.map((v) => Math.exp((v - max) / t));
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
