/**
 * The one interface every compute backend implements (CPU = wasm SIMD128 now, WebGPU next).
 * Model code is written once against it.
 *
 * - Weights are uploaded once into handles that live on the backend's device (wasm memory for
 *   the CPU backend, GPU buffers for WebGPU) and stay there.
 * - Activations are 2-D f32 [rows, cols] row-major tensors that know their device. Ops return
 *   new activations without waiting (a GPU backend just records work); only `read` is async,
 *   so a GPU decode step can submit once and read back a few bytes.
 * - Transfers between devices happen only at module boundaries (`transfer`).
 */
import type { LoadedWeight, DenseWeight } from '../loading/load-weights.js';

export type DeviceKind = 'cpu' | 'webgpu';

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

export interface RopeSpec {
  headDim: number;
  /** inverse frequencies, headDim / 2 of them (see ropeInvFreq). */
  invFreq: Float32Array;
}

export interface Backend {
  readonly device: DeviceKind;
  readonly name: string;

  /** Releases what the backend itself holds (worker threads, devices); its handles become unusable. */
  dispose(): void;

  // --- weights
  linear(weight: LoadedWeight, bias?: DenseWeight, options?: { int8Threshold?: number }): LinearHandle;
  embedding(table: DenseWeight): EmbeddingHandle;
  vector(v: DenseWeight | Float32Array): VectorHandle;
  kvCache(maxPositions: number, nKvHeads: number, headDim: number): KvCacheHandle;

  // --- activations
  fromHost(data: Float32Array, rows: number, cols: number): Activation;
  read(x: Activation): Promise<Float32Array>;
  /** Moves an activation to this backend's device (a no-op when it is already there). */
  transfer(x: Activation, from: Backend): Promise<Activation>;
  release(x: Activation): void;

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
  layerNorm(x: Activation, weight: VectorHandle, bias: VectorHandle | undefined, eps: number): Activation;
  add(a: Activation, b: Activation): Activation;
  silu(x: Activation): Activation;
  geluTanh(x: Activation): Activation;
  gelu(x: Activation): Activation;
  /** silu(gate) * up */
  swiglu(gate: Activation, up: Activation): Activation;
  /** Rotates [rows = positions, cols = nHeads * headDim] in place semantics: returns the rotated copy. */
  rope(x: Activation, nHeads: number, positions: Uint32Array, spec: RopeSpec): Activation;
  /**
   * Writes k, v ([n, nKvHeads * headDim]) into the cache at positions [start, start + n), then
   * causal attention of q ([n, nHeads * headDim]) over positions [0, start + n).
   */
  attention(q: Activation, k: Activation, v: Activation, cache: KvCacheHandle, start: number, nHeads: number, scale?: number): Activation;
  /** Rows [from, to) of x. */
  rows(x: Activation, from: number, to: number): Activation;
}

/** Llama 3 rope scaling (config.json rope_scaling / rope_parameters with rope_type "llama3"). */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}
