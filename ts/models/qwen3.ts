/**
 * Qwen3: the Llama decoder (RMSNorm, rotary GQA attention, SwiGLU) plus an RMSNorm over each
 * head of q and k before rope (`self_attn.q_norm` / `k_norm`, one [head_dim] weight shared by
 * the heads), with head_dim given by the config rather than hidden / heads.
 */
import type { VectorHandle } from '../backends/backend.js';
import type { Architecture } from './architecture.js';
import { parseLlamaStyleConfig } from './config.js';
import { ggufDecoderConfig, ggufNameMapper } from './gguf-config.js';
import { LLAMA, LLAMA_GGUF_BLOCK, LLAMA_GGUF_TOP, LlamaForCausalLM, llamaTensors } from './llama.js';

export class Qwen3ForCausalLM extends LlamaForCausalLM {
  protected override get architecture(): Architecture {
    return QWEN3;
  }

  protected override qkNorms(p: string, vec: (name: string) => VectorHandle): { q: VectorHandle; k: VectorHandle } {
    return { q: vec(`${p}.self_attn.q_norm.weight`), k: vec(`${p}.self_attn.k_norm.weight`) };
  }
}

/** llama.cpp's Qwen3 names: Llama's plus the q/k norms (no Q/K permutation: NEOX rope). */
const qwen3GgufName = ggufNameMapper(LLAMA_GGUF_TOP, { ...LLAMA_GGUF_BLOCK, attn_q_norm: 'self_attn.q_norm', attn_k_norm: 'self_attn.k_norm' });

/** Qwen3 as the registry sees it: Llama's modules and tensor names, its own model class. */
export const QWEN3: Architecture = {
  ...LLAMA,
  family: 'qwen3',
  modelTypes: ['qwen3'],
  parseConfig: (c) => parseLlamaStyleConfig(c, 'qwen3'),
  gguf: {
    names: ['qwen3'],
    toConfig: (metadata, tensors) => ggufDecoderConfig(metadata, tensors, 'qwen3'),
    toHfName: (name) => qwen3GgufName(name),
  },
  expectedTensors(config) {
    const out = llamaTensors(config);
    for (let l = 0; l < config.numLayers; l++) {
      out.set(`model.layers.${l}.self_attn.q_norm.weight`, { shape: [config.headDim] });
      out.set(`model.layers.${l}.self_attn.k_norm.weight`, { shape: [config.headDim] });
    }
    return out;
  },
  create: (config, c) => new Qwen3ForCausalLM(config, c.placement, c.weights, c.maxPositions, c.linear, c.options),
};
