/**
 * OLMo 2 (model_type olmo2): Llama's embedding, final norm, head and rope, with a decoder layer
 * of its own (transformers 5.23's Olmo2DecoderLayer / Olmo2Attention):
 *
 * - no pre-norms: attention and MLP read the residual stream directly;
 * - `post_attention_layernorm` / `post_feedforward_layernorm` (RMSNorm) on each sublayer's
 *   output before it is added to the residual: h += norm(attn(h)); h += norm(mlp(h));
 * - `self_attn.q_norm` / `k_norm`: RMSNorm over the whole projected q (num_heads * head_dim
 *   values) and k (num_kv_heads * head_dim), before rope — one norm per row, unlike Qwen3's per head.
 */
import type { Activation, Backend, KvCacheHandle } from '../backends/backend.js';
import type { Architecture, ExpectedTensor } from './architecture.js';
import type { BuiltModule } from './causal-lm.js';
import { parseLlamaStyleConfig, type DecoderConfig } from './config.js';
import { ggufDecoderConfig, ggufNameMapper, ggufReader, ggufUnsupported } from './gguf-config.js';
import { decoderTensors, LLAMA, LLAMA_GGUF_TOP, LlamaForCausalLM } from './llama.js';
import type { WeightMap } from './weights.js';

export class Olmo2ForCausalLM extends LlamaForCausalLM {
  protected override get architecture(): Architecture {
    return OLMO2;
  }

  protected override buildModule(name: string, b: Backend, weights: WeightMap): BuiltModule {
    if (!OLMO2.isLayer(name)) return super.buildModule(name, b, weights);
    const c = this.config;
    const p = name;
    const { handles, keep, lin, vec, free } = this.moduleTools(b, weights, this.linearOptions);
    const q = lin(`${p}.self_attn.q_proj`, c.qkvBias);
    const k = lin(`${p}.self_attn.k_proj`, c.qkvBias);
    const v = lin(`${p}.self_attn.v_proj`, c.qkvBias);
    const o = lin(`${p}.self_attn.o_proj`, c.oBias);
    const qNorm = vec(`${p}.self_attn.q_norm.weight`);
    const kNorm = vec(`${p}.self_attn.k_norm.weight`);
    const attnNorm = vec(`${p}.post_attention_layernorm.weight`);
    const gate = lin(`${p}.mlp.gate_proj`, false);
    const up = lin(`${p}.mlp.up_proj`, false);
    const down = lin(`${p}.mlp.down_proj`, false);
    const mlpNorm = vec(`${p}.post_feedforward_layernorm.weight`);
    const cache: KvCacheHandle = keep(`${p}.kv_cache`, b.kvCache(this.maxPositions, c.numKvHeads, c.headDim));
    return {
      run: (hIn, ctx) => {
        const h = hIn!;
        const [qp, kp, vp] = b.linearForwardMany(h, [q, k, v]) as [Activation, Activation, Activation];
        const qn = b.rmsNorm(qp, qNorm, c.normEps);
        const kn = b.rmsNorm(kp, kNorm, c.normEps);
        free(qp, kp);
        const rope = this.ropeOfStep(ctx);
        const qr = b.rope(qn, c.numHeads, ctx.positions, rope);
        const kr = b.rope(kn, c.numKvHeads, ctx.positions, rope);
        free(qn, kn);
        const a = b.attention(qr, kr, vp, cache, ctx.start, c.numHeads);
        free(qr, kr, vp);
        const ao = b.linearForward(a, o);
        free(a);
        const an = b.rmsNorm(ao, attnNorm, c.normEps);
        free(ao);
        const h1 = b.add(h, an);
        free(h, an);
        const g = b.linearSwiglu(h1, gate, up);
        const m = b.linearForward(g, down);
        free(g);
        const mn = b.rmsNorm(m, mlpNorm, c.normEps);
        free(m);
        const out = b.add(h1, mn);
        free(h1, mn);
        return out;
      },
      handles,
    };
  }
}

/** Every tensor of an OLMo 2 checkpoint (transformers' names) with the shape the config implies. */
export function olmo2Tensors(c: DecoderConfig): Map<string, ExpectedTensor> {
  return decoderTensors(c, (p, { H, I, q, kv }, set, lin) => {
    lin('self_attn.q_proj', q, H, c.qkvBias);
    lin('self_attn.k_proj', kv, H, c.qkvBias);
    lin('self_attn.v_proj', kv, H, c.qkvBias);
    lin('self_attn.o_proj', H, q, c.oBias);
    set(`${p}.self_attn.q_norm.weight`, { shape: [q] });
    set(`${p}.self_attn.k_norm.weight`, { shape: [kv] });
    set(`${p}.post_attention_layernorm.weight`, { shape: [H] });
    lin('mlp.gate_proj', I, H, false);
    lin('mlp.up_proj', I, H, false);
    lin('mlp.down_proj', H, I, false);
    set(`${p}.post_feedforward_layernorm.weight`, { shape: [H] });
  });
}

/**
 * llama.cpp's OLMo 2 names (gguf-py 0.19: MODEL_ARCH.OLMO2's tensors; convert_hf_to_gguf.py's
 * Olmo2Model writes no Q/K permutation): post_attention_norm / post_ffw_norm for the post-norms.
 */
const olmo2GgufName = ggufNameMapper(LLAMA_GGUF_TOP, {
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  attn_q_norm: 'self_attn.q_norm',
  attn_k_norm: 'self_attn.k_norm',
  post_attention_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
  post_ffw_norm: 'post_feedforward_layernorm',
});

/** OLMo 2 as the registry sees it: Llama's modules and config names, its own layer tensors. */
export const OLMO2: Architecture = {
  ...LLAMA,
  family: 'olmo2',
  modelTypes: ['olmo2'],
  parseConfig: (c) => parseLlamaStyleConfig(c, 'olmo2'),
  gguf: {
    names: ['olmo2'],
    toConfig(metadata, tensors) {
      // the converter writes OLMo 3 as olmo2 too, with sliding-window layers lowbit does not run
      const sliding = ggufReader(metadata).get('attention.sliding_window');
      if (sliding !== undefined && sliding > 0) throw ggufUnsupported(`olmo2 with attention.sliding_window ${sliding} (OLMo 3's sliding-window layers) is not supported`);
      return ggufDecoderConfig(metadata, tensors, 'olmo2');
    },
    toHfName: (name) => olmo2GgufName(name),
  },
  expectedTensors: olmo2Tensors,
  create: (config, c) => new Olmo2ForCausalLM(config, c.placement, c.weights, c.maxPositions, c.linear, c.options),
};
