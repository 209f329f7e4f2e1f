/**
 * Gemma 3 text (transformers' Gemma3ForCausalLM, model_type gemma3_text): the Gemma 2 decoder
 * (gemma2.ts) plus an RMSNorm with (1 + weight) over each head of q and k before rope
 * (`self_attn.q_norm` / `k_norm`), and two rope bases: the sliding layers use the local base
 * (rope_parameters.sliding_attention / rope_local_base_freq, 10000), the global layers theirs
 * (rope_parameters.full_attention / rope_theta, 1e6), which may carry linear scaling. Every
 * sliding_window_pattern-th layer is global (default 6, or config.json's layer_types). No
 * soft-capping unless the config sets it.
 */
import type { VectorHandle } from '../backends/backend.js';
import { LowbitError } from '../errors.js';
import type { Architecture } from './architecture.js';
import { num, ropeParameters, type ConfigJson } from './config.js';
import { ggufNameMapper } from './gguf-config.js';
import { GEMMA2, GEMMA_GGUF_BLOCK, Gemma2ForCausalLM, gemmaGgufFix, gemmaTensors, ggufGemmaConfig, parseGemmaCommon, type GemmaConfig } from './gemma2.js';
import { LLAMA_GGUF_TOP } from './llama.js';

export class Gemma3ForCausalLM extends Gemma2ForCausalLM {
  protected override get architecture(): Architecture {
    return GEMMA3;
  }

  protected override qkNorms(p: string, vec: (name: string) => VectorHandle): { q: VectorHandle; k: VectorHandle } {
    return { q: vec(`${p}.self_attn.q_norm.weight`), k: vec(`${p}.self_attn.k_norm.weight`) };
  }
}

const unsupported = (msg: string) => new LowbitError('UNSUPPORTED_DTYPE', `config.json: ${msg}`, { file: 'config.json' });

/** A rope_parameters entry: its base and linear factor (default and linear rope only). */
function ropeOf(rp: Record<string, unknown>, what: string, theta: number, linearAllowed: boolean): { theta: number; factor?: number } {
  const type = rp.rope_type ?? rp.type ?? 'default';
  const base = typeof rp.rope_theta === 'number' ? rp.rope_theta : theta;
  if (type === 'default') return { theta: base };
  if (type === 'linear' && linearAllowed) return { theta: base, factor: num(rp, 'factor') };
  throw unsupported(`${what} rope type '${String(type)}' is not supported (default${linearAllowed ? ' and linear' : ''} are)`);
}

/** Gemma 3 text's config.json: transformers 5's nested rope_parameters, or the hub's rope_theta / rope_local_base_freq / rope_scaling. */
function parseGemma3Config(c: ConfigJson): GemmaConfig {
  const pattern = num(c, 'sliding_window_pattern', 6);
  const base = parseGemmaCommon(c, 'gemma3', pattern);
  const rp = ropeParameters(c);
  const nested = typeof rp.full_attention === 'object' || typeof rp.sliding_attention === 'object';
  const globalRp = (nested ? rp.full_attention : c.rope_scaling) ?? {};
  const localRp = (nested ? rp.sliding_attention : undefined) ?? {};
  const global = ropeOf(globalRp as Record<string, unknown>, 'full_attention', num(c, 'rope_theta', 1_000_000), true);
  const local = ropeOf(localRp as Record<string, unknown>, 'sliding_attention', num(c, 'rope_local_base_freq', 10_000), false);
  return {
    ...base,
    ropeTheta: global.theta,
    ...(global.factor !== undefined && global.factor !== 1 ? { ropeLinearFactor: global.factor } : {}),
    localRopeTheta: local.theta,
  };
}

const gemma3GgufName = ggufNameMapper(LLAMA_GGUF_TOP, { ...GEMMA_GGUF_BLOCK, attn_q_norm: 'self_attn.q_norm', attn_k_norm: 'self_attn.k_norm' });

/** Gemma 3 text as the registry sees it: Gemma 2's modules plus the q/k norms, two rope bases. */
export const GEMMA3: Architecture = {
  ...GEMMA2,
  family: 'gemma3',
  modelTypes: ['gemma3_text'],
  parseConfig: parseGemma3Config,
  gguf: {
    names: ['gemma3'],
    // llama.cpp: sliding layers by set_swa_pattern(6) when a sliding window is stored, local rope
    // base 10000 unscaled (rope_freq_base_train_swa); the 27B has 62 layers
    toConfig: (metadata, tensors) => ({ ...ggufGemmaConfig(metadata, tensors, 'gemma3', 6, 62), localRopeTheta: 10_000 }),
    toHfName: (name) => gemma3GgufName(name),
    fixTensor: (name) => gemmaGgufFix(name),
  },
  expectedTensors(config) {
    const out = gemmaTensors(config);
    for (let l = 0; l < config.numLayers; l++) {
      out.set(`model.layers.${l}.self_attn.q_norm.weight`, { shape: [config.headDim] });
      out.set(`model.layers.${l}.self_attn.k_norm.weight`, { shape: [config.headDim] });
    }
    return out;
  },
  create: (config, c) => new Gemma3ForCausalLM(config, c.placement, c.weights, c.maxPositions, c.linear, c.options),
};
