/**
 * What an architecture declares about itself (llama.ts, gpt2.ts, qwen3.ts, …): the config.json
 * model_types it reads and how (parseConfig), how it reads GGUF files (gguf: metadata keys,
 * llama.cpp tensor names, stored-value fixes), its modules and tensor names for device maps and
 * streaming, its layout quirks the loader applies, what validation checks, and how to make the
 * model. architectures.ts lists them; nothing else in ts/models names an architecture.
 */
import type { LinearOptions } from '../backends/backend.js';
import type { Blockwise8Weight } from '../formats/blockwise8.js';
import type { DenseWeight } from '../loading/load-weights.js';
import type { CausalLM, CausalLMOptions, ModelWeights, Placement } from './causal-lm.js';
import type { ConfigJson, DecoderConfig } from './config.js';
import type { GgufMetadata, GgufTensorShapes } from './gguf-config.js';

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

/** A weight as a GGUF fix sees it: dense, or a Q8_0 tensor kept 8-bit (rows move with their scales). */
export type GgufFixable = DenseWeight | Blockwise8Weight;

/**
 * How an architecture reads a GGUF file as llama.cpp's convert_hf_to_gguf.py writes it
 * (helpers: gguf-config.ts; the loader: gguf-model.ts).
 */
export interface GgufArchitecture {
  /** The `general.architecture` values it reads (the registry dispatches on them). */
  readonly names: readonly string[];
  /** The config from `<arch>.*` metadata (and the tensor list: tied head, biases); usually ggufDecoderConfig plus overrides. */
  toConfig(metadata: GgufMetadata, tensors?: GgufTensorShapes): DecoderConfig;
  /** llama.cpp's tensor name -> transformers' ('blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj.weight'); undefined: not one of its tensors. */
  toHfName(name: string, config: DecoderConfig): string | undefined;
  /**
   * A tensor whose stored values differ from transformers' (llama's Q/K rows permuted for GGML's
   * rope; Gemma's norm weights stored with 1 added): the function that undoes it, applied to
   * the llama.cpp-named tensor before any quantization (such a tensor is loaded dense, or as a
   * Q8_0 kept 8-bit, fixed, then quantized if asked). Undefined: stored as transformers has it.
   */
  fixTensor?(name: string, config: DecoderConfig): ((w: GgufFixable) => GgufFixable) | undefined;
}

/** A model whose rope inverse frequencies a loader may replace (a GGUF's rope_freqs tensor). */
export interface RopeOverridable {
  setRopeInvFreq(invFreq: Float32Array): void;
}

export interface Architecture {
  /** Its name in the registry; DecoderConfig.family of the configs it parses. */
  readonly family: string;
  /** The config.json model_types it reads (the registry dispatches on them). */
  readonly modelTypes: readonly string[];
  /**
   * config.json -> its typed config (family = this.family). Shared helpers for the common
   * numbers are in config.ts (parseLlamaStyleConfig, num, tokenIds); fields only this
   * architecture has go in its own config type that extends DecoderConfig.
   */
  parseConfig(c: ConfigJson): DecoderConfig;
  /** How it reads GGUF files; absent: it does not load from GGUF. */
  readonly gguf?: GgufArchitecture;
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
