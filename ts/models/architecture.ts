/**
 * What an architecture declares about itself (llama.ts, gpt2.ts): its modules and tensor names
 * for device maps and streaming, its layout quirks the loader applies, and how to make the model.
 * architectures.ts lists them; nothing else in ts/models names an architecture.
 */
import type { LinearOptions } from '../backends/backend.js';
import type { CausalLM, CausalLMOptions, ModelWeights, Placement } from './causal-lm.js';
import type { DecoderConfig, Family } from './config.js';

/** What a model is built from and on. */
export interface ModelContext {
  placement: Placement;
  weights: ModelWeights;
  maxPositions: number;
  linear?: LinearOptions;
  options?: CausalLMOptions;
}

export interface Architecture {
  /** The DecoderConfig family it implements (parseConfig maps config.json model_type to it). */
  readonly family: Family;
  /** Its modules in the order a forward pass runs them (transformers' names; deviceMap keys). */
  moduleNames(config: DecoderConfig): string[];
  /** The module a transformers-named tensor belongs to (undefined: none, e.g. a buffer). */
  moduleOfTensor(config: DecoderConfig, tensor: string): string | undefined;
  /** Whether a module is a decoder layer (it holds a KV cache). */
  isLayer(module: string): boolean;
  /** The module whose table a tied lm_head shares. */
  readonly embeddingModule: string;
  /** KV heads per layer (KV cache sizes). */
  kvHeads(config: DecoderConfig): number;
  /**
   * Linear weights the checkpoint stores [in, out] (GPT-2's Conv1D): the loader transposes them
   * to [out, in] before quantizing, so the model sees nn.Linear layouts only.
   */
  readonly transposedWeights?: RegExp;
  create(config: DecoderConfig, ctx: ModelContext): CausalLM;
}
