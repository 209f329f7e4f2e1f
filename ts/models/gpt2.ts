/**
 * GPT-2: learned positions, pre-norm blocks with LayerNorm, fused q/k/v (split here into three
 * linears), GELU (tanh) MLP, tied output. Its Conv1D weights are stored [in, out]; like
 * transformers + bitsandbytes the loader transposes them to [out, in] before quantizing
 * (GPT2.transposedWeights), so the model only sees nn.Linear layouts.
 */
import type { Activation, Backend, LinearOptions, EmbeddingHandle, KvCacheHandle, LinearHandle, VectorHandle } from '../backends/backend.js';
import type { DenseWeight, LoadedWeight } from '../loading/load-weights.js';
import type { Architecture, ExpectedTensor } from './architecture.js';
import { CausalLM, type BuiltModule, type CausalLMOptions, type ModelWeights, type Placement } from './causal-lm.js';
import { LowbitError } from '../errors.js';
import { num, tokenIds, type ConfigJson, type DecoderConfig } from './config.js';
import { splitRows, splitVector, WeightMap } from './weights.js';

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

/** GPT-2 tensors that are Conv1D weights (stored [in, out]); defined with the loader, which transposes them before quantizing. */
import { GPT2_CONV1D } from '../loading/load-weights.js';
export { GPT2_CONV1D };

export class GPT2LMHeadModel extends CausalLM {
  private wte: EmbeddingHandle | undefined;
  /** The token table, kept while the (tied) lm_head on another device still needs its copy. */
  private tiedTable: DenseWeight | undefined;
  /** '' or 'transformer.': how the checkpoint names its tensors. */
  private readonly pre: string;

  constructor(config: DecoderConfig, placement: Placement, weights: ModelWeights, maxPositions: number, private readonly linearOptions: LinearOptions = {}, options: CausalLMOptions = {}) {
    super(config, placement, maxPositions, options);
    const names = weights instanceof WeightMap ? weights.remaining() : [...weights.streamed];
    this.pre = names.includes('transformer.wte.weight') ? 'transformer.' : '';
    this.buildModules(weights);
  }

  protected get architecture(): Architecture {
    return GPT2;
  }

  /** The output is always tied to wte (a copy of its table when on another device). */
  protected override dependsOn(name: string): string[] {
    return name === 'lm_head' ? ['transformer.wte'] : [];
  }

  protected buildModule(name: string, b: Backend, weights: WeightMap): BuiltModule {
    const c = this.config;
    const pre = this.pre;
    const handles: { dispose(): void }[] = [];
    // Conv1D weights arrive as [out, in] (transposed, and quantized if asked, by the loader).
    const weightOf = (n: string) => weights.take(n);
    const vec = (n: string) => {
      const h = b.vector(weights.takeDense(n));
      this.record(n, h);
      handles.push(h);
      return h;
    };
    const lin = (w: LoadedWeight, bias: DenseWeight, n: string) => {
      const h = b.linear(w, bias, this.linearOptions);
      this.record(n, h);
      handles.push(h);
      return h;
    };
    const emb = (table: DenseWeight, n: string) => {
      const h = b.embedding(table);
      this.record(n, h);
      handles.push(h);
      return h;
    };
    // Intermediates are released as soon as they are used (see LlamaForCausalLM).
    const free = (...xs: Activation[]) => xs.forEach((x) => b.release(x));
    if (name === 'transformer.wte') {
      const table = weights.takeDense(`${pre}wte.weight`);
      const wte = emb(table, name);
      this.wte = wte;
      if (this.backendOf('lm_head') !== b) this.tiedTable = table;
      return { run: (_h, ctx) => b.embed(wte, ctx.ids), handles };
    }
    if (name === 'transformer.wpe') {
      const wpe = emb(weights.takeDense(`${pre}wpe.weight`), name);
      return {
        run: (h, ctx) => {
          const pe = b.embed(wpe, ctx.positions);
          const out = b.add(h!, pe);
          free(h!, pe);
          return out;
        },
        handles,
      };
    }
    if (name === 'transformer.ln_f') {
      const w = vec(`${pre}ln_f.weight`);
      const bias = vec(`${pre}ln_f.bias`);
      return {
        run: (h) => {
          const out = b.layerNorm(h!, w, bias, c.normEps);
          free(h!);
          return out;
        },
        handles,
      };
    }
    if (name === 'lm_head') {
      let table: EmbeddingHandle | undefined;
      if (this.backendOf('transformer.wte') !== b) {
        // Tied to wte on another device: a copy of the table lives here.
        if (this.tiedTable === undefined) throw new LowbitError('INTERNAL', 'a tied lm_head away from its embedding needs the table kept');
        table = emb(this.tiedTable, 'lm_head');
        this.tiedTable = undefined;
      }
      return {
        run: (h, ctx) => {
          const x = ctx.lastRow && h!.rows > 1 ? b.rows(h!, h!.rows - 1, h!.rows) : h!;
          const out = b.project(x, table ?? this.wte!);
          if (x !== h) free(x);
          free(h!);
          return out;
        },
        handles,
      };
    }
    const i = Number(/\.(\d+)$/.exec(name)![1]);
    const p = `${pre}h.${i}`;
    const [q, k, v] = splitRows(weightOf(`${p}.attn.c_attn.weight`), 3) as [LoadedWeight, LoadedWeight, LoadedWeight];
    const [bq, bk, bv] = splitVector(weights.takeDense(`${p}.attn.c_attn.bias`), 3) as [DenseWeight, DenseWeight, DenseWeight];
    const B: Block = {
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
    };
    const cache: KvCacheHandle = b.kvCache(this.maxPositions, c.numHeads, c.headDim);
    this.record(`${p}.kv_cache`, cache);
    handles.push(cache);
    return {
      run: (hIn, ctx) => {
        const h = hIn!;
        const x = b.layerNorm(h, B.ln1w, B.ln1b, c.normEps);
        const [q, k, v] = b.linearForwardMany(x, [B.q, B.k, B.v]) as [Activation, Activation, Activation];
        free(x);
        const a = b.attention(q, k, v, cache, ctx.start, c.numHeads);
        free(q, k, v);
        const h1 = b.linearResidual(a, B.proj, h);
        free(a, h);
        const y = b.layerNorm(h1, B.ln2w, B.ln2b, c.normEps);
        const f = b.linearForward(y, B.fc);
        free(y);
        const g = c.activation === 'gelu' ? b.gelu(f) : b.geluTanh(f);
        free(f);
        const out = b.linearResidual(g, B.out, h1);
        free(g, h1);
        return out;
      },
      handles,
    };
  }
}

/** GPT-2's config.json (n_embd, n_head, n_layer, n_positions; learned positions, no rope). */
function parseGpt2Config(c: ConfigJson): DecoderConfig {
  const hidden = num(c, 'n_embd');
  const heads = num(c, 'n_head');
  return {
    family: 'gpt2', modelType: 'gpt2', hiddenSize: hidden, numLayers: num(c, 'n_layer'), numHeads: heads, numKvHeads: heads, headDim: hidden / heads,
    intermediateSize: typeof c.n_inner === 'number' ? c.n_inner : 4 * hidden, vocabSize: num(c, 'vocab_size'), maxPositions: num(c, 'n_positions'),
    normEps: num(c, 'layer_norm_epsilon', 1e-5), ropeTheta: 0, tieWordEmbeddings: c.tie_word_embeddings !== false, qkvBias: true, oBias: true,
    activation: c.activation_function === 'gelu' ? 'gelu' : 'gelu_new', ...tokenIds(c),
  };
}

/** GPT-2 as the registry sees it; its tensors may lack the 'transformer.' prefix. */
export const GPT2: Architecture = {
  family: 'gpt2',
  modelTypes: ['gpt2'],
  parseConfig: parseGpt2Config,
  configFields: {
    hiddenSize: 'n_embd', numLayers: 'n_layer', numHeads: 'n_head', numKvHeads: 'n_head', headDim: 'n_embd / n_head', intermediateSize: 'n_inner',
    vocabSize: 'vocab_size', maxPositions: 'n_positions', normEps: 'layer_norm_epsilon', bosTokenId: 'bos_token_id', eosTokenIds: 'eos_token_id',
  },
  expectedTensors(c) {
    const out = new Map<string, ExpectedTensor>();
    const [H, I, V] = [c.hiddenSize, c.intermediateSize, c.vocabSize];
    out.set('transformer.wte.weight', { shape: [V, H] });
    out.set('transformer.wpe.weight', { shape: [c.maxPositions, H] });
    out.set('transformer.ln_f.weight', { shape: [H] });
    out.set('transformer.ln_f.bias', { shape: [H] });
    out.set('lm_head.weight', { shape: [V, H], optional: true });
    for (let l = 0; l < c.numLayers; l++) {
      const p = `transformer.h.${l}`;
      for (const n of ['ln_1', 'ln_2']) {
        out.set(`${p}.${n}.weight`, { shape: [H] });
        out.set(`${p}.${n}.bias`, { shape: [H] });
      }
      // Conv1D weights are stored [in, out].
      out.set(`${p}.attn.c_attn.weight`, { shape: [H, 3 * H], conv1d: true });
      out.set(`${p}.attn.c_attn.bias`, { shape: [3 * H] });
      out.set(`${p}.attn.c_proj.weight`, { shape: [H, H], conv1d: true });
      out.set(`${p}.attn.c_proj.bias`, { shape: [H] });
      out.set(`${p}.mlp.c_fc.weight`, { shape: [H, I], conv1d: true });
      out.set(`${p}.mlp.c_fc.bias`, { shape: [I] });
      out.set(`${p}.mlp.c_proj.weight`, { shape: [I, H], conv1d: true });
      out.set(`${p}.mlp.c_proj.bias`, { shape: [H] });
    }
    return out;
  },
  canonicalName: (name) => (!name.startsWith('transformer.') && !name.startsWith('lm_head.') ? `transformer.${name}` : name),
  layerPattern: /^transformer\.h\.(\d+)\./,
  checkConfig(c, fail) {
    if (c.hiddenSize % c.numHeads !== 0) fail('hiddenSize', `(${c.hiddenSize}) is not a multiple of the head count (${c.numHeads})`);
  },
  // its learned position table has n_positions rows
  maxPositionsLimit: (c) => c.maxPositions,
  moduleNames: (config) => ['transformer.wte', 'transformer.wpe', ...Array.from({ length: config.numLayers }, (_, i) => `transformer.h.${i}`), 'transformer.ln_f', 'lm_head'],
  moduleOfTensor(_config, tensor) {
    const t = !tensor.startsWith('transformer.') && !tensor.startsWith('lm_head.') ? `transformer.${tensor}` : tensor;
    return /^(transformer\.h\.\d+|transformer\.wte|transformer\.wpe|transformer\.ln_f|lm_head)\./.exec(t)?.[1];
  },
  isLayer: (module) => /^transformer\.h\.\d+$/.test(module),
  embeddingModule: 'transformer.wte',
  kvHeads: (config) => config.numHeads,
  transposedWeights: GPT2_CONV1D,
  create: (config, c) => new GPT2LMHeadModel(config, c.placement, c.weights, c.maxPositions, c.linear, c.options),
};
