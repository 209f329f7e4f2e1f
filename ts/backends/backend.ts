/**
 * The one interface every compute backend implements (CPU = wasm SIMD128, WebGPU = WGSL).
 * Model code is written once against it.
 *
 * - Weights are uploaded once into handles that live on the backend's device (wasm memory for
 *   the CPU backend, GPU buffers for WebGPU) and stay there.
 * - Activations are 2-D f32 [rows, cols] row-major tensors that know their device. Ops return
 *   new activations without waiting (a GPU backend just records work); only `read`, `argmax`
 *   and `topK` are async, so a GPU decode step can submit once and read back a few bytes.
 * - Transfers between devices happen only at module boundaries (`transfer`).
 *
 * Added for asynchronous GPU execution (the WebGPU backend); the CPU backend implements each
 * with the same semantics:
 * - `tidy(fn)`: activations made inside fn are released when it returns, except the one it
 *   returns. A GPU activation is a device buffer that garbage collection would free too late
 *   (a decode step makes hundreds); `release` stays for freeing early inside a step.
 * - `argmax(x)`: the greedy pick per row on the device, so a decode step reads back one token
 *   id (4 bytes) instead of the vocabulary's logits; ties go to the lowest index, as the CPU's
 *   greedy pick does. `topK(x, k)`: likewise k candidates for top-k sampling.
 * - `dispose()`: frees the backend's own resources (the GPU device); handles made with it are
 *   unusable afterwards. Models dispose a backend they created themselves (deviceMap 'gpu').
 */
import type { LoadedWeight, DenseWeight, DeviceKind } from '../formats/index.js';

export type { DeviceKind } from '../formats/index.js';
export type { Llama3RopeScaling } from '../tensor/rope.js';

/** A [rows, cols] f32 activation held by one backend (wasm memory or a GPU buffer). */
export interface Activation {
  readonly device: DeviceKind;
  readonly rows: number;
  readonly cols: number;
}

interface Handle {
  readonly device: DeviceKind;
  /** Bytes this handle holds on its device. */
  readonly bytes: number;
  dispose(): void;
}

/** A linear layer's weight (+ bias): y = x Wᵀ + b with W [outFeatures, inFeatures]. */
export interface LinearHandle extends Handle {
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** '4bit-nf4', 'int8', 'float16', ... for footprints and messages. */
  readonly format: string;
}

/** An embedding table [vocab, dim]; also usable as a tied output projection. */
export interface EmbeddingHandle extends Handle {
  readonly vocab: number;
  readonly dim: number;
}

/** A per-feature vector (norm weight, bias), kept in f32. */
export interface VectorHandle extends Handle {
  readonly length: number;
}

/** Keys and values of one attention layer for positions [0, maxPositions). */
export interface KvCacheHandle extends Handle {
  readonly maxPositions: number;
  readonly nKvHeads: number;
  readonly headDim: number;
}

/** Rotary position embedding for `Backend.rope`: the head size and its inverse frequencies. */
export interface RopeSpec {
  headDim: number;
  /** inverse frequencies, rotaryDim / 2 of them (see ropeInvFreq). */
  invFreq: Float32Array;
  /**
   * How many of each head's values turn (default headDim): partial rotary (Phi-4-mini's
   * partial_rotary_factor) rotates the first rotaryDim, "rotate half" within them, and passes
   * the rest through.
   */
  rotaryDim?: number;
  /** Multiplies cos and sin (LongRoPE's attention factor; default 1), as transformers applies it. */
  attentionScaling?: number;
}

/** What some architectures add to attention (Gemma 2 / 3); absent fields are off. */
export interface AttentionExtras {
  /** Each scaled score becomes softcap * tanh(score / softcap) before the softmax (> 0; Gemma 2's attn_logit_softcapping). */
  softcap?: number;
  /** Sliding-window attention: a query at position p attends to positions p - window < j <= p only (an integer >= 1). */
  window?: number;
}

/** How a linear layer computes (from BitsAndBytesConfig or the checkpoint's quantization_config). */
export interface LinearOptions {
  /** LLM.int8 outlier threshold (default 6). */
  int8Threshold?: number;
  /**
   * bnb_4bit_compute_dtype for 4-bit weights (default 'float32'). With 'float16' / 'bfloat16' the
   * CPU backend rounds the input, the dequantized weight, the bias and the output to it, as
   * bitsandbytes does; the WebGPU backend computes in f32 either way.
   */
  computeDtype?: 'float32' | 'float16' | 'bfloat16';
}

/** What every backend implements (CpuBackend: wasm kernels; WebGpuBackend: WGSL): uploading weights, the model's ops, reading results back. The models call it; it is public for tests, benchmarks and custom models. */
export interface Backend {
  readonly device: DeviceKind;
  readonly name: string;
  /** Threads computing this backend's ops (CpuBackend: the main thread and its workers); absent on WebGPU. */
  readonly threads?: number;
  /** Why threads 'auto' settled on one thread (CpuBackend), when it did. */
  readonly threadsNote?: string | undefined;

  /** Releases what the backend itself holds (worker threads, devices); its handles become unusable. */
  dispose(): void;

  // --- weights
  linear(weight: LoadedWeight, bias?: DenseWeight, options?: LinearOptions): LinearHandle;
  embedding(table: DenseWeight): EmbeddingHandle;
  vector(v: DenseWeight | Float32Array): VectorHandle;
  kvCache(maxPositions: number, nKvHeads: number, headDim: number): KvCacheHandle;

  // --- activations
  fromHost(data: Float32Array, rows: number, cols: number): Activation;
  read(x: Activation): Promise<Float32Array>;
  /** Moves an activation to this backend's device (a no-op when it is already there). */
  transfer(x: Activation, from: Backend): Promise<Activation>;
  release(x: Activation): void;
  /** Runs fn and releases every activation it made except the one it returns. */
  tidy<T extends Activation>(fn: () => T): T;
  /** Per row of x [rows, cols]: the index of the largest value (the first on ties; NaN never wins on the CPU — WGSL may assume there is none). Waits for the device. */
  argmax(x: Activation): Promise<Uint32Array>;
  /**
   * The k largest values of a one-row x, in stable descending order (larger first, lower index
   * first on ties), with their indices: sampling with top-k reads back k candidates, not the row.
   */
  topK(x: Activation, k: number): Promise<{ indices: Uint32Array; values: Float32Array }>;
  /**
   * Optional (WebGPU has it): the next token of a one-row x of logits chosen on the device as
   * ts/generation/sampling.ts pickToken chooses it (repetition penalty, greedy or temperature →
   * top-k → top-p → a draw with `choice.random`), reading back only the id. topK must be 0 (off),
   * at most 1024, or at least the row's length.
   */
  sampleToken?(x: Activation, choice: TokenChoice): Promise<number>;
  /** Frees the backend's own resources; its handles and activations become unusable. */
  dispose(): void;
  /**
   * Backends on a device that can go away (WebGPU): calls the listener once when it is lost or
   * out of memory; returns an unsubscribe function. `deviceLost` says why, once it happened.
   */
  onDeviceLost?(listener: (info: { reason: string; message: string }) => void): () => void;
  readonly deviceLost?: { reason: string; message: string } | undefined;

  // --- ops (shapes are checked; a mismatch throws INVALID_ARGUMENT)
  embed(table: EmbeddingHandle, ids: Uint32Array): Activation;
  linearForward(x: Activation, w: LinearHandle): Activation;
  /**
   * The same x through several layers (q / k / v, gate / up): exactly linearForward on each, in
   * one dispatch where the backend can (one wake-up of the CPU backend's threads).
   */
  linearForwardMany(x: Activation, ws: readonly LinearHandle[]): Activation[];
  /** x · tableᵀ: logits through a tied embedding. */
  project(x: Activation, table: EmbeddingHandle): Activation;
  rmsNorm(x: Activation, weight: VectorHandle, eps: number): Activation;
  /**
   * RMSNorm of each head: x [rows, nHeads * headDim] normalized over every run of headDim =
   * weight.length columns, with the one weight for all heads (Qwen3's q_norm / k_norm).
   */
  rmsNormHeads(x: Activation, weight: VectorHandle, eps: number): Activation;
  layerNorm(x: Activation, weight: VectorHandle, bias: VectorHandle | undefined, eps: number): Activation;
  add(a: Activation, b: Activation): Activation;
  silu(x: Activation): Activation;
  geluTanh(x: Activation): Activation;
  gelu(x: Activation): Activation;
  /** silu(gate) * up */
  swiglu(gate: Activation, up: Activation): Activation;
  /** geluTanh(gate) * up (Gemma's gated MLP, gelu_pytorch_tanh). */
  geglu(gate: Activation, up: Activation): Activation;
  /** x * s, elementwise, with s rounded to f32 (Gemma's embedding scale). */
  scale(x: Activation, s: number): Activation;
  /** cap * tanh(x / cap), elementwise (cap > 0; Gemma 2's final logit soft-capping). */
  softcap(x: Activation, cap: number): Activation;
  /**
   * swiglu(linearForward(x, gate), linearForward(x, up)), the first half of a gated MLP: one
   * dispatch where the backend can (WebGPU: 4-bit decode), else exactly those three ops.
   */
  linearSwiglu(x: Activation, gate: LinearHandle, up: LinearHandle): Activation;
  /**
   * add(residual, linearForward(x, w)), a residual connection after a projection: one dispatch
   * where the backend can (WebGPU: 4-bit decode), else exactly those two ops.
   */
  linearResidual(x: Activation, w: LinearHandle, residual: Activation): Activation;
  /** Rotates [rows = positions, cols = nHeads * headDim] in place semantics: returns the rotated copy. */
  rope(x: Activation, nHeads: number, positions: Uint32Array, spec: RopeSpec): Activation;
  /**
   * Writes k, v ([n, nKvHeads * headDim]) into the cache at positions [start, start + n), then
   * causal attention of q ([n, nHeads * headDim]) over positions [0, start + n): softmax(q·k *
   * scale) v, scale 1 / sqrt(headDim) by default; `extras`: soft-capping, sliding window.
   */
  attention(q: Activation, k: Activation, v: Activation, cache: KvCacheHandle, start: number, nHeads: number, scale?: number, extras?: AttentionExtras): Activation;
  /** Rows [from, to) of x. */
  rows(x: Activation, from: number, to: number): Activation;
}

/** What Backend.sampleToken needs: pickToken's options, the ids seen so far and the draw's number. */
export interface TokenChoice {
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  /** Ids the repetition penalty applies to (the prompt and the tokens generated so far). */
  seen?: ArrayLike<number>;
  /** The draw's uniform number in [0, 1), from the host's seeded generator (used when doSample). */
  random?: number;
}
