/** What every causal LM shares: the KV-cache position, logits, greedy / sampled generation, footprint. */
import { LowbitError } from '../errors.js';
import type { Activation, Backend, LinearHandle, LinearOptions, VectorHandle } from '../backends/backend.js';
import type { LoadedWeight } from '../loading/load-weights.js';
import type { Architecture } from './architecture.js';
import { WeightMap } from './weights.js';
import type { DecoderConfig } from './config.js';
import { checkSamplingOptions, pickToken, sampleCandidates, seededRandom, type SamplingOptions } from '../generation/sampling.js';
import { nextMacrotask } from '../generation/yield.js';
import { StopStrings } from '../generation/stopping.js';
import type { Streamer } from '../generation/streamer.js';
import type { ChatMessage, Tokenizer } from '../tokenizer/index.js';
import { checkGenerateOptions, checkTokenIds } from './generate-checks.js';
import { ChatSession, type ChatSessionOptions } from './chat-session.js';
import { asAbortError, throwIfAborted, Turns, yieldToEventLoop } from '../runtime/scheduling.js';

/** Options of `CausalLM.generate` (README: Running models). */
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
  /**
   * Called when a GPU device the model runs on is lost (or runs out of memory) during this
   * generation; the model has then moved those modules to the CPU and goes on from the tokens
   * produced so far.
   */
  onDeviceLost?: (info: { reason: string; message: string; modules: string[] }) => void;
  /**
   * Keep what the KV cache already holds (default false: the cache is emptied first). The longest
   * common prefix of the prompt and the cached tokens (`model.cachedTokens`) is kept and only the
   * rest is prefilled; where they differ the cache is cut back. At least the prompt's last token
   * is always run, since its logits pick the first new token. A ChatSession (`model.chat()`) uses it.
   */
  reuseCache?: boolean;
  /** Called once per generate(), before the prompt runs: how much of it came from the cache. */
  onPrefill?: (info: PrefillInfo) => void;
}

/** How a generate() call's prompt reached the KV cache. */
export interface PrefillInfo {
  /** Prompt tokens in all. */
  promptTokens: number;
  /** Taken from the cache as it was (a common prefix; 0 without reuseCache). */
  reusedTokens: number;
  /** Run through the model now: promptTokens - reusedTokens. */
  prefilledTokens: number;
}

/** What a module's forward needs besides its input. */
export interface StepContext {
  ids: Uint32Array;
  positions: Uint32Array;
  start: number;
  /** Only the last row's logits are wanted (a generation step). */
  lastRow: boolean;
}

/** A module built on one backend: its forward and the handles it holds. */
export interface BuiltModule {
  /** Frees its input (and everything else it makes, except its output). */
  run(h: Activation | undefined, c: StepContext): Activation;
  handles: { dispose(): void }[];
}

interface Module extends BuiltModule {
  readonly name: string;
  backend: Backend;
  /** Host copies of its weights, to rebuild it on the CPU if its GPU is lost. */
  kept: Map<string, LoadedWeight> | undefined;
}

/**
 * What a model is built from: every tensor at once (a WeightMap), or the names of the tensors a
 * checkpoint will deliver — then the loader hands them in with addWeight() as they stream and
 * calls finishBuild(), and each module is built as soon as its last tensor has arrived.
 */
export type ModelWeights = WeightMap | { streamed: readonly string[] };

/** A module waiting for its tensors. */
interface Slot {
  tensors: Map<string, LoadedWeight>;
  /** Tensors of this module the checkpoint has not delivered yet. */
  missing: number;
}

/** Where modules run: one backend for the whole model, or a backend per module name. */
export type Placement = Backend | ((module: string) => Backend);

export interface CausalLMOptions {
  /** Keep host copies of the weights of modules not on the CPU, for the CPU fallback (default true). */
  keepHostWeights?: boolean;
  /**
   * Makes the CPU backend a fallback uses when the model has none (fromPretrained passes one;
   * without it a model with no CPU module cannot fall back). Models name no concrete backend.
   */
  cpuBackend?: () => Promise<Backend>;
  /** Weight-format conversions placement decided (formats/capabilities.ts), reported by `formatConversions`. */
  formatConversions?: string[];
}

/** Bytes a loaded model holds: in total, per device and per module (`getMemoryFootprint()`). */
export interface MemoryFootprint {
  /** Bytes in all. */
  total: number;
  /** Bytes per backend device ('cpu', 'webgpu'). */
  byDevice: Record<string, number>;
  /** Bytes per module, by transformers' names. */
  byModule: Record<string, number>;
}

/** A loaded causal language model, as `AutoModelForCausalLM.fromPretrained` returns it: `generate`, `forward`, `getMemoryFootprint`, `dispose`. */
export abstract class CausalLM {
  /** Tokens already in the KV cache. */
  position = 0;
  /** The ids at cache positions [0, cached.length) as forward() / generate() ran them (reuseCache compares with them). */
  private cached: number[] = [];
  protected readonly footprint = new Map<string, { device: string; bytes: number; module: string | undefined }>();
  /** The modules in forward order, each on its backend. */
  protected readonly modules: Module[] = [];
  private building: string | undefined;
  /** Handles made by the module being built, freed if its build fails. */
  private pending: { dispose(): void }[] = [];
  /** Names of every tensor the checkpoint holds (hasTensor). */
  private tensorNames: ReadonlySet<string> = new Set();
  /** Modules not built yet, by name (streaming construction). */
  private slots = new Map<string, Slot>();
  private readonly placeOf: (module: string) => Backend;

  constructor(
    readonly config: DecoderConfig,
    placement: Placement,
    readonly maxPositions: number,
    private readonly options: CausalLMOptions = {},
  ) {
    this.placeOf = typeof placement === 'function' ? placement : () => placement;
  }

  /**
   * Weights converted because their device has no kernel for their format, one line per module
   * and format ("model.layers.0 on webgpu: q8_0 -> float32 (...)"); empty when none were.
   */
  get formatConversions(): readonly string[] {
    return this.options.formatConversions ?? [];
  }

  /** The backend of the output (lm_head): where logits, argmax and top-k are computed. */
  get backend(): Backend {
    return this.backendOf('lm_head');
  }

  /** The backend a module runs on. */
  backendOf(module: string): Backend {
    return this.modules.find((m) => m.name === module)?.backend ?? this.placeOf(module);
  }

  /** Module name -> 'cpu' | 'webgpu', as placed (transformers' hf_device_map). */
  get deviceMap(): Record<string, string> {
    return Object.fromEntries(this.modules.map((m) => [m.name, m.backend.device]));
  }

  /** What this model's architecture declares (modules, tensor names; architecture.ts). */
  protected abstract get architecture(): Architecture;

  /** Builds one module (embeddings, a decoder layer with its KV cache, the final norm, lm_head) on `b`. */
  protected abstract buildModule(name: string, b: Backend, weights: WeightMap): BuiltModule;

  /** Whether the checkpoint holds a tensor (whether or not it has arrived yet). */
  protected hasTensor(name: string): boolean {
    return this.tensorNames.has(name);
  }

  /** Modules that must be built before `name` (a tied lm_head needs its embedding's table). */
  protected dependsOn(_name: string): string[] {
    return [];
  }

  /**
   * Starts building; subclasses call it at the end of their constructor. A WeightMap builds every
   * module now; streamed names wait for addWeight() / finishBuild(). If a build fails, whatever
   * was built is freed before the error propagates.
   */
  protected buildModules(weights: ModelWeights): void {
    const names = weights instanceof WeightMap ? weights.remaining() : [...weights.streamed];
    this.tensorNames = new Set(names);
    const modules = this.architecture.moduleNames(this.config);
    this.slots = new Map(modules.map((n) => [n, { tensors: new Map(), missing: 0 }]));
    for (const t of names) {
      const slot = this.slotOf(t);
      if (slot !== undefined) slot.missing++;
    }
    if (!(weights instanceof WeightMap)) {
      this.guard(() => this.buildReady());
      return;
    }
    this.guard(() => {
      for (const t of names) this.addWeight(weights.take(t));
      this.finishBuild();
    });
  }

  private slotOf(tensor: string): Slot | undefined {
    const m = this.architecture.moduleOfTensor(this.config, tensor);
    return m === undefined ? undefined : this.slots.get(m);
  }

  /** Runs a build step; on failure frees everything built so far (the caller gets no model to dispose). */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /**
   * Hands one loaded tensor to the module it belongs to; builds that module (and any waiting on
   * it) once complete, dropping the host copies. Tensors of no module are dropped. On failure
   * the modules built so far are freed, and the error propagates.
   */
  addWeight(w: LoadedWeight): void {
    const slot = this.slotOf(w.name);
    if (slot === undefined) return;
    this.guard(() => {
      if (!this.tensorNames.has(w.name) || slot.tensors.has(w.name)) throw new LowbitError('INTERNAL', `tensor '${w.name}' was not announced, or came twice`);
      slot.tensors.set(w.name, w);
      slot.missing--;
      if (slot.missing === 0) this.buildReady();
    });
  }

  /** Builds what is left (a module still lacking a tensor fails with MALFORMED_FILE naming it) and puts the modules in forward order. */
  finishBuild(): void {
    this.guard(() => {
      const order = this.architecture.moduleNames(this.config);
      for (const name of order) if (this.slots.has(name)) this.buildSlot(name);
      this.modules.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    });
  }

  /** Builds every complete module whose dependencies are built, until none is left. */
  private buildReady(): void {
    for (let again = true; again; ) {
      again = false;
      for (const [name, slot] of this.slots) {
        if (slot.missing > 0 || this.dependsOn(name).some((d) => this.slots.has(d))) continue;
        this.buildSlot(name);
        again = true;
      }
    }
  }

  private buildSlot(name: string): void {
    const slot = this.slots.get(name)!;
    this.slots.delete(name);
    const b = this.placeOf(name);
    const keep = this.options.keepHostWeights !== false;
    const kept = keep && b.device !== 'cpu' ? new Map<string, LoadedWeight>() : undefined;
    const weights = new WeightMap(slot.tensors);
    this.building = name;
    this.pending = [];
    try {
      const built = this.buildModule(name, b, kept ? weights.recording(kept) : weights);
      this.modules.push({ name, backend: b, kept, ...built });
    } catch (e) {
      for (const h of this.pending) h.dispose();
      for (const [k, v] of this.footprint) if (v.module === name) this.footprint.delete(k);
      throw e;
    } finally {
      this.building = undefined;
      this.pending = [];
      // Tensors the module did not take (e.g. GPT-2's attn.bias masks) go too: closures of
      // buildModule may keep its WeightMap alive.
      slot.tensors.clear();
    }
  }

  /**
   * The tools a module's build uses on backend `b`: `keep(name, handle)` records a handle (the
   * footprint, and `handles` for dispose); `lin` / `vec` make and keep a linear layer (its bias
   * when `bias`, else an optional one) and a vector from `weights`; `free` releases intermediates
   * as soon as they are used (on a GPU each is a device buffer the next op reuses).
   */
  protected moduleTools(b: Backend, weights: WeightMap, linear: LinearOptions = {}) {
    const handles: { dispose(): void }[] = [];
    const keep = <T extends { device: string; bytes: number; dispose(): void }>(name: string, h: T): T => {
      this.record(name, h);
      handles.push(h);
      return h;
    };
    return {
      handles,
      keep,
      lin: (n: string, bias: boolean): LinearHandle => keep(n, b.linear(weights.take(`${n}.weight`), bias ? weights.takeDense(`${n}.bias`) : weights.takeOptional(`${n}.bias`), linear)),
      vec: (n: string): VectorHandle => keep(n, b.vector(weights.takeDense(n))),
      free: (...xs: Activation[]) => xs.forEach((x) => b.release(x)),
    };
  }

  protected record(name: string, h: { device: string; bytes: number; dispose(): void }): void {
    this.footprint.set(name, { device: h.device, bytes: h.bytes, module: this.building });
    this.pending.push(h);
  }

  /**
   * Runs ids at positions [start, start + n) through every module: consecutive modules on one
   * backend in one tidy (a GPU step stays one submit); `transfer` only where the device changes.
   */
  private async run(ids: Uint32Array, from: number, lastRow: boolean): Promise<{ out: Activation; b: Backend; recomputed: number }> {
    let u = ids;
    let start = from;
    if (from > 0 && this.recomputesCache(from, ids.length)) {
      // the cached positions are run again with this call's (Phi-3's LongRoPE crossing its original length)
      if (this.cached.length < from) throw new LowbitError('INTERNAL', `the ids of positions [0, ${from}) are not known`);
      u = new Uint32Array(from + ids.length);
      u.set(this.cached.slice(0, from));
      u.set(ids, from);
      start = 0;
    }
    const c: StepContext = { ids: u, positions: Uint32Array.from(u, (_, i) => start + i), start, lastRow };
    let h: Activation | undefined;
    let hb: Backend | undefined;
    for (let i = 0; i < this.modules.length; ) {
      const b = this.modules[i]!.backend;
      if (h !== undefined && hb !== b) {
        const moved = await b.transfer(h, hb!);
        hb!.release(h);
        h = moved;
      }
      let j = i;
      while (j < this.modules.length && this.modules[j]!.backend === b) j++;
      const seg = this.modules.slice(i, j);
      const input = h;
      h = b.tidy(() => {
        let x = input;
        for (const m of seg) x = m.run(x, c);
        return x!;
      });
      hb = b;
      i = j;
    }
    return { out: h!, b: hb!, recomputed: from - start };
  }

  /**
   * Whether a call at positions [start, start + n) must run positions [0, start) again instead of
   * reading them from the KV cache: Phi-3's LongRoPE rotates every position with the long
   * factors once a sequence is longer than its original length, and transformers drops the cache
   * when a generation crosses it (Phi3ForCausalLM.prepare_inputs_for_generation). Default: never.
   */
  protected recomputesCache(_start: number, _n: number): boolean {
    return false;
  }

  /**
   * Calls that use the KV cache (generate, forward) run one at a time: a call made while another
   * is running waits its turn (FIFO) — see README "Limits and safety".
   */
  private readonly turns = new Turns();

  /** Logits [ids.length, vocab] for the next tokens, continuing the cache from `start` (default: where it is). Waits for a running generate(). */
  async forward(ids: ArrayLike<number>, start?: number): Promise<Float32Array> {
    return this.turns.run(undefined, 'forward', async () => {
      const from = start ?? this.position;
      const u = this.checkIds(ids, from);
      const { out, b, recomputed } = await this.run(u, from, false);
      this.noteCached(from, u);
      // rows of recomputed cache positions are not this call's
      const mine = recomputed > 0 ? b.rows(out, recomputed, out.rows) : out;
      if (mine !== out) b.release(out);
      try {
        return await b.read(mine);
      } finally {
        b.release(mine);
      }
    });
  }

  /** Positions [start, start + u.length) now hold u: later ones are stale (attention only reads [0, position)). */
  private noteCached(start: number, u: Uint32Array): void {
    this.cached.length = Math.min(this.cached.length, start);
    for (const id of u) this.cached.push(id);
    this.position = start + u.length;
  }

  /** The token ids the KV cache holds, positions [0, position), as forward() / generate() ran them. */
  get cachedTokens(): readonly number[] {
    return this.cached.slice(0, Math.min(this.position, this.cached.length));
  }

  /** Cuts the cache back to its first `n` positions (the rest is overwritten by what runs next). */
  private truncateCache(n: number): void {
    this.position = n;
    this.cached.length = Math.min(this.cached.length, n);
  }

  private checkIds(ids: ArrayLike<number>, start: number, what = 'ids'): Uint32Array {
    const u = checkTokenIds(ids, this.config.vocabSize, what);
    if (u.length === 0) throw new LowbitError('INVALID_ARGUMENT', 'forward needs at least one token');
    if (!(Number.isInteger(start) && start >= 0)) throw new LowbitError('INVALID_ARGUMENT', `start must be an integer >= 0, got ${String(start)}`);
    if (start > this.position) throw new LowbitError('INVALID_ARGUMENT', `start ${start} is past the cached positions (${this.position})`);
    if (start + u.length > this.maxPositions) throw new LowbitError('INVALID_ARGUMENT', `${start + u.length} positions exceed this model's cache of ${this.maxPositions} (raise maxPositions)`);
    return u;
  }

  /**
   * One generation step from the cache's end. What comes back is what picking the next token
   * needs, chosen on the output backend's device: the argmax id (greedy), the id the device
   * sampled (a backend with sampleToken), the top k candidates (top-k sampling), or the last
   * position's logits.
   */
  protected async step(ids: ArrayLike<number>, want: StepWant): Promise<StepResult> {
    const u = this.checkIds(ids, this.position);
    const { out, b } = await this.run(u, this.position, true);
    this.noteCached(this.position, u);
    try {
      if (typeof want === 'object' && 'choose' in want) {
        if (b.sampleToken !== undefined) {
          const { options: o, seen, random } = want.choose;
          return { id: await b.sampleToken(out, { doSample: o.doSample === true, temperature: o.temperature, topK: o.topK, topP: o.topP, repetitionPenalty: o.repetitionPenalty, seen, ...(o.doSample ? { random: random() } : {}) }) };
        }
        want = want.otherwise;
      }
      if (want === 'argmax') return { id: (await b.argmax(out))[0]! };
      if (want === 'logits') return { logits: await b.read(out) };
      return { candidates: await b.topK(out, want.topK) };
    } finally {
      b.release(out);
    }
  }

  /** Backends of this model whose device is lost. */
  private lostBackends(): Backend[] {
    return [...new Set(this.modules.map((m) => m.backend))].filter((b) => b.deviceLost !== undefined);
  }

  /**
   * Moves every module on a lost device to the CPU (rebuilt from the host copies kept at load)
   * and empties the cache (position 0): the caller replays the tokens. False when no device is lost.
   */
  async fallBackToCpu(): Promise<{ reason: string; message: string; modules: string[] } | undefined> {
    const lost = this.lostBackends();
    if (lost.length === 0) return undefined;
    const info = lost[0]!.deviceLost!;
    const moving = this.modules.filter((m) => lost.includes(m.backend));
    const missing = moving.filter((m) => m.kept === undefined).map((m) => m.name);
    if (missing.length > 0) throw new LowbitError('DEVICE_LOST', `the GPU device was lost (${info.reason}: ${info.message}) and modules ${missing.join(', ')} have no host copy to rebuild them on the CPU (keepHostWeights: false)`);
    let cpu = this.modules.find((m) => m.backend.device === 'cpu')?.backend;
    if (cpu === undefined) {
      if (this.options.cpuBackend === undefined) throw new LowbitError('DEVICE_LOST', `the GPU device was lost (${info.reason}: ${info.message}) and this model has no CPU backend to fall back to (give CausalLMOptions.cpuBackend, as fromPretrained does)`);
      cpu = await this.options.cpuBackend();
      this.ownedBackends.push(cpu);
    }
    for (const m of moving) {
      for (const h of m.handles) {
        try {
          h.dispose();
        } catch {
          // the device is gone; its buffers with it
        }
      }
      for (const [k, v] of this.footprint) if (v.module === m.name) this.footprint.delete(k);
    }
    for (const m of moving) m.backend = cpu;
    for (const m of moving) {
      this.building = m.name;
      const built = this.buildModule(m.name, cpu, new WeightMap(new Map(m.kept)));
      this.building = undefined;
      this.pending = [];
      m.run = built.run;
      m.handles = built.handles;
      m.kept = undefined;
    }
    for (const b of lost) {
      const i = this.ownedBackends.indexOf(b);
      if (i >= 0) {
        this.ownedBackends.splice(i, 1);
        try {
          b.dispose();
        } catch {
          // already gone
        }
      }
    }
    this.truncateCache(0);
    return { ...info, modules: moving.map((m) => m.name) };
  }

  /** Forgets the cached positions. */
  reset(): void {
    this.truncateCache(0);
  }

  /** The tokenizer found next to the weights by AutoModelForCausalLM.fromPretrained, if any. */
  tokenizer: Tokenizer | undefined;
  /** Why `tokenizer` is undefined (none found, or one lowbit cannot build), for error messages. */
  tokenizerUnavailable: string | undefined;

  /** The prompt ids of a generate() call: inputIds, or prompt / messages through the tokenizer. */
  private promptIds(o: GenerateOptions): number[] {
    const given = [o.inputIds, o.prompt, o.messages].filter((v) => v !== undefined).length;
    if (given !== 1) throw new LowbitError('INVALID_ARGUMENT', 'generate() needs exactly one of inputIds, prompt or messages');
    if (o.inputIds !== undefined) return Array.from(checkTokenIds(o.inputIds, this.config.vocabSize));
    const tok = o.tokenizer ?? this.tokenizer;
    if (tok === undefined) throw new LowbitError('INVALID_ARGUMENT', `generate({ prompt | messages }) needs a tokenizer: the model has none (${this.tokenizerUnavailable ?? 'none was loaded'}); pass generate({ tokenizer }) or inputIds`);
    if (o.prompt !== undefined) {
      if (typeof o.prompt !== 'string') throw new LowbitError('INVALID_ARGUMENT', 'prompt must be a string');
      return tok.encode(o.prompt);
    }
    return tok.applyChatTemplate(o.messages!, { addGenerationPrompt: true, tokenize: true });
  }

  /**
   * Generates up to maxNewTokens new ids after the prompt; returns them (without the prompt).
   * A call made while another generate() / forward() on this model runs waits its turn. An abort
   * (o.signal) throws LowbitError('ABORTED') with the signal's reason as `cause`, between tokens
   * or while waiting; the event loop runs between tokens, so timers and abort events are served.
   */
  async generate(o: GenerateOptions): Promise<number[]> {
    checkGenerateOptions(o);
    try {
      return await this.turns.run(o.signal, 'generate()', () => this.generateNow(o));
    } catch (e) {
      throw asAbortError(e, o.signal, 'generate()');
    }
  }

  private async generateNow(o: GenerateOptions): Promise<number[]> {
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
    // The prompt's common prefix with the cache stays (reuseCache), at most all but its last token.
    let reused = 0;
    if (o.reuseCache === true) {
      const cached = this.cachedTokens;
      const limit = Math.min(cached.length, seen.length - 1);
      while (reused < limit && cached[reused] === seen[reused]) reused++;
    }
    this.truncateCache(reused);
    o.onPrefill?.({ promptTokens: seen.length, reusedTokens: reused, prefilledTokens: seen.length - reused });
    // The device narrows the choice: greedy reads back the argmax; a backend with sampleToken
    // (WebGPU) applies the penalty and samples there, reading back the id (the same draw from
    // `random` as the host's pickToken); others read back top-k sampling's k candidates, or the
    // logits (a repetition penalty needs every logit).
    const penalty = o.repetitionPenalty !== undefined && o.repetitionPenalty !== 1;
    const topK = o.topK && o.topK > 0 ? Math.min(o.topK, this.config.vocabSize) : 0;
    const onHost: StepWant = penalty ? 'logits' : !o.doSample ? 'argmax' : topK > 0 && topK <= 1024 ? { topK } : 'logits';
    const onDevice = (penalty || o.doSample === true) && !(topK > 1024 && topK < this.config.vocabSize);
    const want: StepWant = onDevice ? { choose: { options: o, seen, random }, otherwise: onHost } : onHost;
    // A lost GPU: the modules move to the CPU, the prompt and the tokens so far are replayed to
    // rebuild the cache, and generation goes on from there.
    const fallBack = async () => {
      const info = await this.fallBackToCpu();
      if (info === undefined) return false;
      o.onDeviceLost?.(info);
      return true;
    };
    const stepOrFallBack = async (ids: number[]): Promise<StepResult> => {
      if (await fallBack()) return this.step(seen, want);
      try {
        return await this.step(ids, want);
      } catch (e) {
        // device.lost resolves a moment after the failure it causes
        if (!(e instanceof LowbitError && (e.code === 'DEVICE_LOST' || e.code === 'GPU_ERROR'))) throw e;
        await new Promise((r) => setTimeout(r, 10));
        if (!(await fallBack())) throw e;
        return this.step(seen, want);
      }
    };
    throwIfAborted(o.signal, 'generate()');
    let next = await stepOrFallBack(seen.slice(reused));
    for (let s = 0; s < max; s++) {
      // One event-loop turn per token: an AbortSignal.timeout, timers and UI events are served.
      await yieldToEventLoop();
      throwIfAborted(o.signal, 'generate()');
      const id = 'id' in next ? next.id : 'logits' in next ? pickToken(next.logits, seen, o, random) : sampleCandidates(Array.from(next.candidates.values), Array.from(next.candidates.indices), o, random);
      out.push(id);
      seen.push(id);
      o.onToken?.(id);
      o.streamer?.put([id]);
      if (eos.has(id) || stop.push(id) || s === max - 1) break;
      next = await stepOrFallBack([id]);
    }
    o.streamer?.end();
    return out;
  }

  /**
   * A chat session on this model: it keeps the KV cache between turns and runs only what is new
   * (see ChatSession). `options` are the generation settings of every turn, plus `system`.
   */
  chat(options: ChatSessionOptions = {}): ChatSession {
    return new ChatSession(this, options);
  }

  /** The bytes this model holds (weights, KV caches), as transformers' get_memory_footprint, split by device and module. */
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

  /** Backends this model created for itself (fromPretrained, a CPU fallback): disposed with the model. */
  readonly ownedBackends: Backend[] = [];

  /** The first owned backend (compatibility: the whole-model case has one). */
  get ownedBackend(): Backend | undefined {
    return this.ownedBackends[0];
  }
  set ownedBackend(b: Backend | undefined) {
    this.ownedBackends.length = 0;
    if (b !== undefined) this.ownedBackends.push(b);
  }

  /** Frees the weights, caches and the backends the model made. */
  dispose(): void {
    for (const m of this.modules) for (const h of m.handles) h.dispose();
    for (const m of this.modules) m.kept = undefined;
    this.slots.clear();
    for (const b of this.ownedBackends.splice(0)) b.dispose();
  }
}

type HostWant = 'argmax' | 'logits' | { topK: number };
/** `choose`: Backend.sampleToken where the output backend has it, else `otherwise`. */
type StepWant = HostWant | { choose: { options: SamplingOptions; seen: readonly number[]; random: () => number }; otherwise: HostWant };
type StepResult = { id: number } | { logits: Float32Array } | { candidates: { indices: Uint32Array; values: Float32Array } };
