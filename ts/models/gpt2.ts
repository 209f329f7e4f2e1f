/**
 * GPT-2: learned positions, pre-norm blocks with LayerNorm, fused q/k/v (split here into three
 * linears), GELU (tanh) MLP, tied output. Its Conv1D weights are stored [in, out]; like
 * transformers + bitsandbytes we transpose them to [out, in] before quantizing.
 */
import type { Activation, Backend, LinearOptions, EmbeddingHandle, KvCacheHandle, LinearHandle, VectorHandle } from '../backends/backend.js';
import type { DenseWeight, LoadedWeight, QuantizeOnLoad } from '../loading/load-weights.js';
import { CausalLM } from './causal-lm.js';
import type { DecoderConfig } from './config.js';
import { quantizeDense, splitRows, splitVector, transposeDense, type WeightMap } from './weights.js';

interface Block {
  ln1w: VectorHandle;
  ln1b: VectorHandle;
  q: LinearHandle;
  k: LinearHandle;
  v: LinearHandle;
  proj: LinearHandle;
  ln2w: VectorHandle;
  ln2b: VectorHandle;
  fc: LinearHandle;
  out: LinearHandle;
}

/** GPT-2 tensors that are Conv1D weights (stored [in, out]). */
export const GPT2_CONV1D = /(^|\.)h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;

export class GPT2LMHeadModel extends CausalLM {
  private readonly wte: EmbeddingHandle;
  private readonly wpe: EmbeddingHandle;
  private readonly blocks: Block[] = [];
  private readonly lnfW: VectorHandle;
  private readonly lnfB: VectorHandle;

  constructor(config: DecoderConfig, backend: Backend, weights: WeightMap, maxPositions: number, quantization?: QuantizeOnLoad, linearOptions: LinearOptions = {}) {
    super(config, backend, maxPositions);
    const b = backend;
    const pre = weights.has('transformer.wte.weight') ? 'transformer.' : '';
    const skip = quantization?.skipModules ?? [];
    // A plain Conv1D weight is transposed (and quantized if asked); a bitsandbytes one is already [out, in].
    const weightOf = (name: string) => {
      const w = weights.take(name);
      if (w.kind !== 'dense') return w;
      const t = transposeDense(w);
      return quantization && !skip.some((s) => name.startsWith(s)) ? quantizeDense(t, quantization) : t;
    };
    const vec = (name: string) => {
      const h = b.vector(weights.takeDense(name));
      this.record(name, h);
      return h;
    };
    const lin = (w: LoadedWeight, bias: DenseWeight, name: string) => {
      const h = b.linear(w, bias, linearOptions);
      this.record(name, h);
      return h;
    };
    this.wte = b.embedding(weights.takeDense(`${pre}wte.weight`));
    this.wpe = b.embedding(weights.takeDense(`${pre}wpe.weight`));
    this.record('transformer.wte', this.wte);
    this.record('transformer.wpe', this.wpe);
    for (let i = 0; i < config.numLayers; i++) {
      const p = `${pre}h.${i}`;
      const [q, k, v] = splitRows(weightOf(`${p}.attn.c_attn.weight`), 3) as [LoadedWeight, LoadedWeight, LoadedWeight];
      const [bq, bk, bv] = splitVector(weights.takeDense(`${p}.attn.c_attn.bias`), 3) as [DenseWeight, DenseWeight, DenseWeight];
      this.blocks.push({
        ln1w: vec(`${p}.ln_1.weight`),
        ln1b: vec(`${p}.ln_1.bias`),
        q: lin(q, bq, `${p}.attn.q`),
        k: lin(k, bk, `${p}.attn.k`),
        v: lin(v, bv, `${p}.attn.v`),
        proj: lin(weightOf(`${p}.attn.c_proj.weight`), weights.takeDense(`${p}.attn.c_proj.bias`), `${p}.attn.c_proj`),
        ln2w: vec(`${p}.ln_2.weight`),
        ln2b: vec(`${p}.ln_2.bias`),
        fc: lin(weightOf(`${p}.mlp.c_fc.weight`), weights.takeDense(`${p}.mlp.c_fc.bias`), `${p}.mlp.c_fc`),
        out: lin(weightOf(`${p}.mlp.c_proj.weight`), weights.takeDense(`${p}.mlp.c_proj.bias`), `${p}.mlp.c_proj`),
      });
      const cache: KvCacheHandle = b.kvCache(maxPositions, config.numHeads, config.headDim);
      this.caches.push(cache);
      this.record(`${p}.kv_cache`, cache);
    }
    this.lnfW = vec(`${pre}ln_f.weight`);
    this.lnfB = vec(`${pre}ln_f.bias`);
  }

  protected hidden(ids: Uint32Array, start: number): Activation {
    const b = this.backend;
    const c = this.config;
    const positions = Uint32Array.from(ids, (_, i) => start + i);
    // Intermediates are released as soon as they are used (see LlamaForCausalLM.hidden).
    const free = (...xs: Activation[]) => xs.forEach((x) => b.release(x));
    const te = b.embed(this.wte, ids);
    const pe = b.embed(this.wpe, positions);
    let h = b.add(te, pe);
    free(te, pe);
    for (const [i, B] of this.blocks.entries()) {
      const x = b.layerNorm(h, B.ln1w, B.ln1b, c.normEps);
      const [q, k, v] = b.linearForwardMany(x, [B.q, B.k, B.v]) as [Activation, Activation, Activation];
      free(x);
      const a = b.attention(q, k, v, this.caches[i]!, start, c.numHeads);
      free(q, k, v);
      const p = b.linearForward(a, B.proj);
      const h1 = b.add(h, p);
      free(a, p, h);
      const y = b.layerNorm(h1, B.ln2w, B.ln2b, c.normEps);
      const f = b.linearForward(y, B.fc);
      free(y);
      const g = c.activation === 'gelu' ? b.gelu(f) : b.geluTanh(f);
      free(f);
      const o = b.linearForward(g, B.out);
      h = b.add(h1, o);
      free(g, o, h1);
    }
    const out = b.layerNorm(h, this.lnfW, this.lnfB, c.normEps);
    free(h);
    return out;
  }

  protected logits(h: Activation): Activation {
    return this.backend.project(h, this.wte);
  }

  protected disposeModules(): void {
    for (const B of this.blocks) for (const x of Object.values(B)) x.dispose();
    for (const c of this.caches) c.dispose();
    this.wte.dispose();
    this.wpe.dispose();
    this.lnfW.dispose();
    this.lnfB.dispose();
  }
}
