/** config.json -> the few numbers a decoder needs, for each supported architecture. */
import { LowbitError } from '../errors.js';
import { show } from './validate.js';
import type { Llama3RopeScaling } from '../backends/backend.js';

/** The layer layout a DecoderConfig describes. */
export type Family = 'llama' | 'gpt2' | 'qwen3';

/** A decoder's config.json (or GGUF metadata), parsed and checked: sizes, norms, rope, vocabulary, special tokens. */
export interface DecoderConfig {
  family: Family;
  /** config.json model_type ('llama', 'mistral', 'qwen2', 'gpt2'). */
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
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v (Qwen2: always; Llama: attention_bias, which also covers o_proj). */
  qkvBias: boolean;
  oBias: boolean;
  activation: 'silu' | 'gelu_new' | 'gelu';
  bosTokenId?: number;
  eosTokenIds: number[];
}

function num(c: Record<string, unknown>, key: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new LowbitError('MALFORMED_FILE', `config.json: '${key}' must be a number, got ${show(v)}`, { file: 'config.json' });
  return v;
}

function eosList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3', 'gpt2'] as const;

export function parseConfig(c: Record<string, unknown>): DecoderConfig {
  const modelType = String(c.model_type ?? '');
  if (modelType === 'gpt2') {
    const hidden = num(c, 'n_embd');
    const heads = num(c, 'n_head');
    return {
      family: 'gpt2', modelType, hiddenSize: hidden, numLayers: num(c, 'n_layer'), numHeads: heads, numKvHeads: heads, headDim: hidden / heads,
      intermediateSize: typeof c.n_inner === 'number' ? c.n_inner : 4 * hidden, vocabSize: num(c, 'vocab_size'), maxPositions: num(c, 'n_positions'),
      normEps: num(c, 'layer_norm_epsilon', 1e-5), ropeTheta: 0, tieWordEmbeddings: c.tie_word_embeddings !== false, qkvBias: true, oBias: true,
      activation: c.activation_function === 'gelu' ? 'gelu' : 'gelu_new', ...(typeof c.bos_token_id === 'number' ? { bosTokenId: c.bos_token_id } : {}), eosTokenIds: eosList(c.eos_token_id),
    };
  }
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new LowbitError('UNSUPPORTED_DTYPE', `config.json: model_type '${modelType}' is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`, { file: 'config.json' });
  }
  const hidden = num(c, 'hidden_size');
  const heads = num(c, 'num_attention_heads');
  // transformers 5 writes rope settings as rope_parameters; hub checkpoints use rope_theta + rope_scaling.
  const rp = (c.rope_parameters ?? c.rope_scaling ?? {}) as Record<string, unknown>;
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
    family: modelType === 'qwen3' ? 'qwen3' : 'llama', modelType, hiddenSize: hidden, numLayers: num(c, 'num_hidden_layers'), numHeads: heads, numKvHeads: num(c, 'num_key_value_heads', heads),
    headDim: typeof c.head_dim === 'number' ? c.head_dim : hidden / heads, intermediateSize: num(c, 'intermediate_size'), vocabSize: num(c, 'vocab_size'),
    maxPositions: num(c, 'max_position_embeddings', 2048), normEps: num(c, 'rms_norm_eps', 1e-6), ropeTheta: theta, ...(llama3 ? { llama3 } : {}),
    tieWordEmbeddings: c.tie_word_embeddings === true, qkvBias: modelType === 'qwen2' || attentionBias, oBias: attentionBias,
    activation: 'silu', ...(typeof c.bos_token_id === 'number' ? { bosTokenId: c.bos_token_id } : {}), eosTokenIds: eosList(c.eos_token_id),
  };
}
