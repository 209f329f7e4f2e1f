/**
 * What an architecture declares about itself (llama.ts, gpt2.ts): its modules and tensor names
 * for device maps and streaming, its layout quirks the loader applies, and how to make the model.
 * architectures.ts lists them; nothing else in ts/models names an architecture.
 */
import type { LinearOptions } from '../backends/backend.js';
import type { CausalLM, CausalLMOptions, ModelWeights, Placement } from './causal-lm.js';
import type { DecoderConfig, Family } from './config.js';

/** Names of DecoderConfig fields in the file they came from (config.json keys, GGUF metadata keys), for messages. */
export type FieldNames = Partial<Record<keyof DecoderConfig, string>>;

/** A tensor the config implies (validate.ts checks a checkpoint against them). */
export interface ExpectedTensor {
  shape: number[];
  /** May be absent (a tied lm_head, a bias the config does not ask for). */
  optional?: boolean;
  /** Stored [in, out] (GPT-2's Conv1D). */
  conv1d?: boolean;
}

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

  // --- what validate.ts checks a checkpoint against, before anything is allocated
  /** config.json's names of the config fields. */
  readonly configFields: FieldNames;
  /** Every tensor the config implies, by transformers' name, with its shape. */
  expectedTensors(config: DecoderConfig): Map<string, ExpectedTensor>;
  /** A stored tensor name as expectedTensors spells it (GPT-2 checkpoints may omit 'transformer.'). */
  canonicalName?(name: string): string;
  /** Matches a decoder layer's tensor names; group 1 is the layer index. */
  readonly layerPattern: RegExp;
  /** Checks the config numbers only this architecture needs; `fail(field, message)` throws. */
  checkConfig?(config: DecoderConfig, fail: (field: keyof DecoderConfig, message: string) => never): void;
  /** The longest KV cache a model can have (GPT-2: its position table); unbounded when absent. */
  maxPositionsLimit?(config: DecoderConfig): number;
}
