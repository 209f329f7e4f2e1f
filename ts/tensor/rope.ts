/**
 * Rotary position embedding frequencies: model code computes them once per model and hands them
 * to Backend.rope. Computed in wasm so that every backend rotates by the same f32 values.
 */
import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';

/** Llama 3 rope scaling (config.json rope_scaling / rope_parameters with rope_type "llama3"). */
export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * RoPE inverse frequencies (headDim / 2 of them) for base `theta`, with optional Llama 3 scaling,
 * as transformers computes them (see crates/lowbit-core/src/kernels/rope.rs).
 */
export function ropeInvFreq(headDim: number, theta: number, llama3?: Llama3RopeScaling | null): Float32Array {
  if (!(Number.isInteger(headDim) && headDim > 0 && headDim <= 0xffffffff)) throw new LowbitError('INVALID_ARGUMENT', `headDim must be a positive integer, got ${headDim}`);
  const s = llama3 ? new Float32Array([llama3.factor, llama3.lowFreqFactor, llama3.highFreqFactor, llama3.originalMaxPositionEmbeddings]) : undefined;
  return callWasm(() => wasm().ropeInvFreq(headDim, theta, s));
}
