/**
 * The Llama family (Llama 2 / 3, SmolLM2, TinyLlama, Mistral) and Qwen2 (q/k/v bias): pre-norm
 * decoder blocks with RMSNorm, rotary attention with grouped-query heads and a SwiGLU MLP.
 */
import type { Activation, Backend, LinearOptions, EmbeddingHandle, KvCacheHandle, LinearHandle, RopeSpec, VectorHandle } from '../backends/backend.js';
import { ropeInvFreq } from '../backends/cpu/index.js';
import { CausalLM } from './causal-lm.js';
import type { DecoderConfig } from './config.js';
import type { WeightMap } from './weights.js';

interface Layer {
  inNorm: VectorHandle;
  q: LinearHandle;
  k: LinearHandle;
  v: LinearHandle;
  o: LinearHandle;
  postNorm: VectorHandle;
  gate: LinearHandle;
  up: LinearHandle;
  down: LinearHandle;
}

export class LlamaForCausalLM extends CausalLM {
  private readonly embed: EmbeddingHandle;
  private readonly layers: Layer[] = [];
  private readonly norm: VectorHandle;
  private readonly lmHead?: LinearHandle;
  private readonly rope: RopeSpec;

  constructor(config: DecoderConfig, backend: Backend, weights: WeightMap, maxPositions: number, linearOptions: LinearOptions = {}) {
    super(config, backend, maxPositions);
    const b = backend;
    const lin = (name: string, bias: boolean) => {
      const h = b.linear(weights.take(`${name}.weight`), bias ? weights.takeDense(`${name}.bias`) : weights.takeOptional(`${name}.bias`), linearOptions);
      this.record(name, h);
      return h;
    };
    const vec = (name: string) => {
      const h = b.vector(weights.takeDense(name));
      this.record(name, h);
      return h;
    };
    this.embed = b.embedding(weights.takeDense('model.embed_tokens.weight'));
    this.record('model.embed_tokens', this.embed);
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}`;
      this.layers.push({
        inNorm: vec(`${p}.input_layernorm.weight`),
        q: lin(`${p}.self_attn.q_proj`, config.qkvBias),
        k: lin(`${p}.self_attn.k_proj`, config.qkvBias),
        v: lin(`${p}.self_attn.v_proj`, config.qkvBias),
        o: lin(`${p}.self_attn.o_proj`, config.oBias),
        postNorm: vec(`${p}.post_attention_layernorm.weight`),
        gate: lin(`${p}.mlp.gate_proj`, false),
        up: lin(`${p}.mlp.up_proj`, false),
        down: lin(`${p}.mlp.down_proj`, false),
      });
      const cache = b.kvCache(maxPositions, config.numKvHeads, config.headDim);
      this.caches.push(cache);
      this.record(`${p}.kv_cache`, cache);
    }
    this.norm = vec('model.norm.weight');
    if (!config.tieWordEmbeddings || weights.has('lm_head.weight')) this.lmHead = lin('lm_head', false);
    this.rope = { headDim: config.headDim, invFreq: ropeInvFreq(config.headDim, config.ropeTheta, config.llama3) };
  }

  protected hidden(ids: Uint32Array, start: number): Activation {
    const b = this.backend;
    const c = this.config;
    const positions = Uint32Array.from(ids, (_, i) => start + i);
    // Intermediates are released as soon as they are used: on a GPU backend each is a device
    // buffer, reused by the next op (CausalLM also wraps the step in backend.tidy).
    const free = (...xs: Activation[]) => xs.forEach((x) => b.release(x));
    let h = b.embed(this.embed, ids);
    for (const [i, L] of this.layers.entries()) {
      const x = b.rmsNorm(h, L.inNorm, c.normEps);
      const [q0, k0, v] = b.linearForwardMany(x, [L.q, L.k, L.v]) as [Activation, Activation, Activation];
      free(x);
      const q = b.rope(q0, c.numHeads, positions, this.rope);
      const k = b.rope(k0, c.numKvHeads, positions, this.rope);
      free(q0, k0);
      const a = b.attention(q, k, v, this.caches[i]!, start, c.numHeads);
      free(q, k, v);
      const o = b.linearForward(a, L.o);
      const h1 = b.add(h, o);
      free(a, o, h);
      const y = b.rmsNorm(h1, L.postNorm, c.normEps);
      const [gate, up] = b.linearForwardMany(y, [L.gate, L.up]) as [Activation, Activation];
      free(y);
      const g = b.swiglu(gate, up);
      free(gate, up);
      const d = b.linearForward(g, L.down);
      h = b.add(h1, d);
      free(g, d, h1);
    }
    const out = b.rmsNorm(h, this.norm, c.normEps);
    free(h);
    return out;
  }

  protected logits(h: Activation): Activation {
    return this.lmHead ? this.backend.linearForward(h, this.lmHead) : this.backend.project(h, this.embed);
  }

  protected disposeModules(): void {
    for (const L of this.layers) for (const x of Object.values(L)) x.dispose();
    for (const c of this.caches) c.dispose();
    this.embed.dispose();
    this.norm.dispose();
    this.lmHead?.dispose();
  }
}
