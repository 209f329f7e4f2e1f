/**
 * The typed config every decoder has (DecoderConfig) and the helpers architectures parse
 * config.json with. Which model_types exist and how each is read is the architectures' business
 * (each declares `modelTypes` and `parseConfig`; architectures.ts dispatches on model_type).
 */
import { LowbitError } from '../errors.js';
import { show } from './validate.js';
import type { Llama3RopeScaling } from '../backends/backend.js';

/** A decoder's config.json (or GGUF metadata), parsed and checked: sizes, norms, rope, vocabulary, special tokens. */
export interface DecoderConfig {
  /** The architecture that parsed it (its `name` in the registry, architectures.ts). */
  family: string;
  /** config.json model_type, or the GGUF `general.architecture`. */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
  normEps: number;
  ropeTheta: number;
  llama3?: Llama3RopeScaling;
  /** Every rope inverse frequency is divided by this (linear rope scaling, e.g. a GGUF's rope.scaling.factor). */
  ropeLinearFactor?: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v (some architectures always have one; attention_bias in Llama-style configs also covers o_proj). */
  qkvBias: boolean;
  oBias: boolean;
  activation: 'silu' | 'gelu_new' | 'gelu' | 'gelu_pytorch_tanh';
  bosTokenId?: number;
  eosTokenIds: number[];
}

/** config.json as parsed JSON. */
export type ConfigJson = Record<string, unknown>;

/** A number field of config.json (or `fallback` when absent); MALFORMED_FILE otherwise. */
export function num(c: ConfigJson, key: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new LowbitError('MALFORMED_FILE', `config.json: '${key}' must be a number, got ${show(v)}`, { file: 'config.json' });
  return v;
}

/** An optional number field: undefined when absent or null, MALFORMED_FILE when not a number. */
export function optionalNum(c: ConfigJson, key: string): number | undefined {
  return c[key] == null ? undefined : num(c, key);
}

/** eos_token_id as a list (one id or several). */
export function eosList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** bos / eos ids of config.json, as DecoderConfig holds them. */
export function tokenIds(c: ConfigJson): Pick<DecoderConfig, 'bosTokenId' | 'eosTokenIds'> {
  return { ...(typeof c.bos_token_id === 'number' ? { bosTokenId: c.bos_token_id } : {}), eosTokenIds: eosList(c.eos_token_id) };
}

/** Rope settings of config.json: transformers 5 writes rope_parameters; hub checkpoints use rope_theta + rope_scaling. */
export function ropeParameters(c: ConfigJson): Record<string, unknown> {
  const rp = c.rope_parameters ?? c.rope_scaling ?? {};
  return typeof rp === 'object' && rp !== null ? (rp as Record<string, unknown>) : {};
}

/**
 * The config of a transformers decoder written with the Llama names (hidden_size,
 * num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, intermediate_size,
 * rms_norm_eps, rope_theta / rope_parameters with default or llama3 rope): what most
 * architectures start from; they override what differs (biases, activation, family).
 */
export function parseLlamaStyleConfig(c: ConfigJson, family: string): DecoderConfig {
  const modelType = String(c.model_type ?? '');
  const hidden = num(c, 'hidden_size');
  const heads = num(c, 'num_attention_heads');
  const rp = ropeParameters(c);
  const theta = typeof rp.rope_theta === 'number' ? rp.rope_theta : num(c, 'rope_theta', 10000);
  const ropeType = rp.rope_type ?? rp.type;
  let llama3: Llama3RopeScaling | undefined;
  if (ropeType === 'llama3') {
    llama3 = { factor: num(rp, 'factor'), lowFreqFactor: num(rp, 'low_freq_factor'), highFreqFactor: num(rp, 'high_freq_factor'), originalMaxPositionEmbeddings: num(rp, 'original_max_position_embeddings') };
  } else if (ropeType !== undefined && ropeType !== 'default' && c.rope_scaling != null) {
    throw new LowbitError('UNSUPPORTED_DTYPE', `config.json: rope type '${String(ropeType)}' is not supported (default and llama3 are)`, { file: 'config.json' });
  }
  const attentionBias = c.attention_bias === true;
  return {
    family, modelType, hiddenSize: hidden, numLayers: num(c, 'num_hidden_layers'), numHeads: heads, numKvHeads: num(c, 'num_key_value_heads', heads),
    headDim: typeof c.head_dim === 'number' ? c.head_dim : hidden / heads, intermediateSize: num(c, 'intermediate_size'), vocabSize: num(c, 'vocab_size'),
    maxPositions: num(c, 'max_position_embeddings', 2048), normEps: num(c, 'rms_norm_eps', 1e-6), ropeTheta: theta, ...(llama3 ? { llama3 } : {}),
    tieWordEmbeddings: c.tie_word_embeddings === true, qkvBias: attentionBias, oBias: attentionBias,
    activation: 'silu', ...tokenIds(c),
  };
}
