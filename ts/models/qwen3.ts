/**
 * Qwen3: the Llama decoder (RMSNorm, rotary GQA attention, SwiGLU) plus an RMSNorm over each
 * head of q and k before rope (`self_attn.q_norm` / `k_norm`, one [head_dim] weight shared by
 * the heads), with head_dim given by the config rather than hidden / heads.
 */
import type { VectorHandle } from '../backends/backend.js';
import type { Architecture } from './architecture.js';
import { LLAMA, LlamaForCausalLM, llamaTensors } from './llama.js';

export class Qwen3ForCausalLM extends LlamaForCausalLM {
  protected override get architecture(): Architecture {
    return QWEN3;
  }

  protected override qkNorms(p: string, vec: (name: string) => VectorHandle): { q: VectorHandle; k: VectorHandle } {
    return { q: vec(`${p}.self_attn.q_norm.weight`), k: vec(`${p}.self_attn.k_norm.weight`) };
  }
}

/** Qwen3 as the registry sees it: Llama's modules and tensor names, its own model class. */
export const QWEN3: Architecture = {
  ...LLAMA,
  family: 'qwen3',
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
