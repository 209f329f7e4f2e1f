/** What every causal LM shares: the KV-cache position, logits, greedy / sampled generation, footprint. */
import { LowbitError } from '../errors.js';
import type { Activation, Backend, KvCacheHandle } from '../backends/backend.js';
import type { DecoderConfig } from './config.js';
import { checkSamplingOptions, pickToken, sampleCandidates, seededRandom, type SamplingOptions } from '../generation/sampling.js';
import { StopStrings } from '../generation/stopping.js';
import type { Streamer } from '../generation/streamer.js';
import type { ChatMessage, Tokenizer } from '../tokenizer/index.js';

export interface GenerateOptions extends SamplingOptions {
  /** The prompt as token ids; or give `prompt` (text) or `messages` (a chat, rendered with the chat template). */
  inputIds?: ArrayLike<number>;
  prompt?: string;
  messages?: readonly ChatMessage[];
  /** Encodes `prompt` / `messages` and decodes for `stop`; default: the model's own (`model.tokenizer`). */
  tokenizer?: Tokenizer;
  /** New tokens at most (default 20). */
  maxNewTokens?: number;
  /** Stop at any of these ids (default: the config's and the tokenizer's eos ids; pass [] to never stop). */
  eosTokenIds?: number[];
  /** Stop once the generated text contains one of these strings (the token that completes it is kept). */
  stop?: string | readonly string[];
  signal?: AbortSignal;
  onToken?: (id: number) => void;
  /** Receives the prompt-free new ids as they come (e.g. a TextStreamer). */
  streamer?: Streamer;
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

  /** The tokenizer found next to the weights by AutoModelForCausalLM.fromPretrained, if any. */
  tokenizer: Tokenizer | undefined;
  /** Why `tokenizer` is undefined (none found, or one lowbit cannot build), for error messages. */
  tokenizerUnavailable: string | undefined;

  /** The prompt ids of a generate() call: inputIds, or prompt / messages through the tokenizer. */
  private promptIds(o: GenerateOptions): number[] {
    const given = [o.inputIds, o.prompt, o.messages].filter((v) => v !== undefined).length;
    if (given !== 1) throw new LowbitError('INVALID_ARGUMENT', 'generate() needs exactly one of inputIds, prompt or messages');
    if (o.inputIds !== undefined) return Array.from(o.inputIds);
    const tok = o.tokenizer ?? this.tokenizer;
    if (tok === undefined) throw new LowbitError('INVALID_ARGUMENT', `generate({ prompt | messages }) needs a tokenizer: the model has none (${this.tokenizerUnavailable ?? 'none was loaded'}); pass generate({ tokenizer }) or inputIds`);
    if (o.prompt !== undefined) {
      if (typeof o.prompt !== 'string') throw new LowbitError('INVALID_ARGUMENT', 'prompt must be a string');
      return tok.encode(o.prompt);
    }
    return tok.applyChatTemplate(o.messages!, { addGenerationPrompt: true, tokenize: true });
  }

  /** Generates up to maxNewTokens new ids after the prompt; returns them (without the prompt). */
  async generate(o: GenerateOptions): Promise<number[]> {
    const max = o.maxNewTokens ?? 20;
    if (!(Number.isInteger(max) && max >= 0)) throw new LowbitError('INVALID_ARGUMENT', `maxNewTokens must be an integer >= 0, got ${max}`);
    checkSamplingOptions(o);
    const tok = o.tokenizer ?? this.tokenizer;
    const eos = new Set(o.eosTokenIds ?? [...this.config.eosTokenIds, ...(tok?.eosTokenIds ?? [])]);
    const stop = new StopStrings(o.stop ?? [], tok);
    const random = seededRandom(o.seed);
    const seen = this.promptIds(o);
    const out: number[] = [];
    if (max === 0) {
      o.streamer?.end();
      return out;
    }
    this.reset();
    // Without a repetition penalty (which needs every logit), the device narrows the choice:
    // greedy reads back the argmax, top-k sampling its k candidates.
    const penalty = o.repetitionPenalty !== undefined && o.repetitionPenalty !== 1;
    const topK = o.topK && o.topK > 0 ? Math.min(o.topK, this.config.vocabSize) : 0;
    const want: StepWant = penalty ? 'logits' : !o.doSample ? 'argmax' : topK > 0 && topK <= 1024 ? { topK } : 'logits';
    let next = await this.step(seen, want);
    for (let s = 0; s < max; s++) {
      o.signal?.throwIfAborted();
      const id = 'id' in next ? next.id : 'logits' in next ? pickToken(next.logits, seen, o, random) : sampleCandidates(Array.from(next.candidates.values), Array.from(next.candidates.indices), o, random);
      out.push(id);
      seen.push(id);
      o.onToken?.(id);
      o.streamer?.put([id]);
      if (eos.has(id) || stop.push(id) || s === max - 1) break;
      next = await this.step([id], want);
    }
    o.streamer?.end();
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
