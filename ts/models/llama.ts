/**
 * The Llama family (Llama 2 / 3, SmolLM2, TinyLlama, Mistral) and Qwen2 (q/k/v bias): pre-norm
 * decoder blocks with RMSNorm, rotary attention with grouped-query heads and a SwiGLU MLP.
 */
import type { Activation, AttentionExtras, Backend, LinearOptions, EmbeddingHandle, KvCacheHandle, LinearHandle, RopeSpec, VectorHandle } from '../backends/backend.js';
import type { LoadedWeight } from '../formats/index.js';
import { LowbitError } from '../errors.js';
import type { DenseWeight } from '../loading/load-weights.js';
import { ropeInvFreq } from '../tensor/rope.js';
import { CausalLM, type BuiltModule, type CausalLMOptions, type ModelWeights, type Placement, type StepContext } from './causal-lm.js';
import type { Architecture, ExpectedTensor, FieldNames, GgufArchitecture, GgufFixable, RopeOverridable } from './architecture.js';
import { parseLlamaStyleConfig, type ConfigJson, type DecoderConfig } from './config.js';
import { permuteRowsBlockwise8 } from '../formats/blockwise8.js';
import { ggufBad, ggufDecoderConfig, ggufNameMapper } from './gguf-config.js';
import type { WeightMap } from './weights.js';

/** A decoder layer's handles. */
export interface LlamaLayer {
  inNorm: VectorHandle;
  q: LinearHandle;
  k: LinearHandle;
  v: LinearHandle;
  o: LinearHandle;
  postNorm: VectorHandle;
  gate: LinearHandle;
  up: LinearHandle;
  down: LinearHandle;
  /** Per-head RMSNorm of q and k before rope (Qwen3); absent for Llama. */
  qkNorm?: { q: VectorHandle; k: VectorHandle };
}

export class LlamaForCausalLM extends CausalLM implements RopeOverridable {
  private embed: EmbeddingHandle | undefined;
  /** The embedding table, kept while a tied lm_head on another device still needs its copy made. */
  private tiedTable: DenseWeight | undefined;
  private rope: RopeSpec;

  constructor(config: DecoderConfig, placement: Placement, weights: ModelWeights, maxPositions: number, protected readonly linearOptions: LinearOptions = {}, options: CausalLMOptions = {}) {
    super(config, placement, maxPositions, options);
    const invFreq = ropeInvFreq(config.headDim, config.ropeTheta, config.llama3);
    if (config.ropeLinearFactor !== undefined) for (let i = 0; i < invFreq.length; i++) invFreq[i] = invFreq[i]! / config.ropeLinearFactor;
    this.rope = { headDim: config.headDim, invFreq };
    this.buildModules(weights);
  }

  protected get architecture(): Architecture {
    return LLAMA;
  }

  /**
   * Replaces the rope inverse frequencies (headDim / 2 of them): for scalings the config cannot
   * express, such as a GGUF's rope_freqs tensor or linear scaling. Takes effect on the next forward.
   */
  setRopeInvFreq(invFreq: Float32Array): void {
    const want = this.config.headDim / 2;
    if (!(invFreq instanceof Float32Array) || invFreq.length !== want) throw new LowbitError('INVALID_ARGUMENT', `rope needs ${want} inverse frequencies (headDim ${this.config.headDim} / 2), got ${invFreq instanceof Float32Array ? invFreq.length : typeof invFreq}`);
    this.rope = { headDim: this.config.headDim, invFreq: invFreq.slice() };
  }

  /**
   * The q / k / v / gate / up weights of decoder layer `p` (transformers' names), made into
   * handles by `linear(name, weight, bias?)`. Phi-3 overrides it: its checkpoints fuse them
   * (qkv_proj, gate_up_proj) and it slices the loaded weights by rows.
   */
  protected projections(p: string, weights: WeightMap, linear: (name: string, w: LoadedWeight, bias?: DenseWeight) => LinearHandle): Pick<LlamaLayer, 'q' | 'k' | 'v' | 'gate' | 'up'> {
    const c = this.config;
    const lin = (n: string, bias: boolean) => linear(n, weights.take(`${n}.weight`), bias ? weights.takeDense(`${n}.bias`) : weights.takeOptional(`${n}.bias`));
    return {
      q: lin(`${p}.self_attn.q_proj`, c.qkvBias),
      k: lin(`${p}.self_attn.k_proj`, c.qkvBias),
      v: lin(`${p}.self_attn.v_proj`, c.qkvBias),
      gate: lin(`${p}.mlp.gate_proj`, false),
      up: lin(`${p}.mlp.up_proj`, false),
    };
  }

  /** The rope of a forward over `ctx` (Phi-3's LongRoPE picks its factors by the sequence length). */
  protected ropeOfStep(_ctx: StepContext): RopeSpec {
    return this.rope;
  }

  /** Soft-capping / sliding window of the attention (Phi-3's sliding_window); none in Llama. */
  protected attentionExtras(): AttentionExtras | undefined {
    return undefined;
  }

  /** Per-head norms of q and k (applied before rope) of decoder layer `p`: none in Llama; Qwen3 overrides. */
  protected qkNorms(_p: string, _vec: (name: string) => VectorHandle): { q: VectorHandle; k: VectorHandle } | undefined {
    return undefined;
  }

  /** lm_head tied to the embedding (no lm_head.weight of its own). */
  private get tied(): boolean {
    return this.config.tieWordEmbeddings && !this.hasTensor('lm_head.weight');
  }

  protected override dependsOn(name: string): string[] {
    // A tied head uses the embedding's handle, or a copy of its table on another device.
    return name === 'lm_head' && this.tied ? ['model.embed_tokens'] : [];
  }

  protected buildModule(name: string, b: Backend, weights: WeightMap): BuiltModule {
    const c = this.config;
    const { handles, keep, lin, vec, free } = this.moduleTools(b, weights, this.linearOptions);
    if (name === 'model.embed_tokens') {
      const table = weights.takeDense('model.embed_tokens.weight');
      const embed = keep(name, b.embedding(table));
      this.embed = embed;
      if (this.tied && this.backendOf('lm_head') !== b) this.tiedTable = table;
      return { run: (_h, ctx) => b.embed(embed, ctx.ids), handles };
    }
    if (name === 'model.norm') {
      const norm = vec('model.norm.weight');
      return {
        run: (h) => {
          const out = b.rmsNorm(h!, norm, c.normEps);
          free(h!);
          return out;
        },
        handles,
      };
    }
    if (name === 'lm_head') {
      let project: (x: Activation) => Activation;
      if (!this.tied) {
        const head = lin('lm_head', false);
        project = (x) => b.linearForward(x, head);
      } else if (this.backendOf('model.embed_tokens') === b) {
        project = (x) => b.project(x, this.embed!);
      } else {
        // Tied to an embedding on another device: a copy of the table lives here.
        if (this.tiedTable === undefined) throw new LowbitError('INTERNAL', 'a tied lm_head away from its embedding needs the table kept');
        const table = keep('lm_head', b.embedding(this.tiedTable));
        this.tiedTable = undefined;
        project = (x) => b.project(x, table);
      }
      return {
        run: (h, ctx) => {
          const x = ctx.lastRow && h!.rows > 1 ? b.rows(h!, h!.rows - 1, h!.rows) : h!;
          const out = project(x);
          if (x !== h) free(x);
          free(h!);
          return out;
        },
        handles,
      };
    }
    const p = name;
    const linear = (n: string, w: LoadedWeight, bias?: DenseWeight) => keep(n, b.linear(w, bias, this.linearOptions));
    const L: LlamaLayer = {
      inNorm: vec(`${p}.input_layernorm.weight`),
      ...this.projections(p, weights, linear),
      o: lin(`${p}.self_attn.o_proj`, c.oBias),
      postNorm: vec(`${p}.post_attention_layernorm.weight`),
      down: lin(`${p}.mlp.down_proj`, false),
    };
    const qkNorm = this.qkNorms(p, vec);
    if (qkNorm) L.qkNorm = qkNorm;
    const cache: KvCacheHandle = keep(`${p}.kv_cache`, b.kvCache(this.maxPositions, c.numKvHeads, c.headDim));
    return {
      run: (hIn, ctx) => {
        const h = hIn!;
        const x = b.rmsNorm(h, L.inNorm, c.normEps);
        const [qp, kp, v] = b.linearForwardMany(x, [L.q, L.k, L.v]) as [Activation, Activation, Activation];
        free(x);
        const n = L.qkNorm;
        const q0 = n ? b.rmsNormHeads(qp, n.q, c.normEps) : qp;
        const k0 = n ? b.rmsNormHeads(kp, n.k, c.normEps) : kp;
        if (n) free(qp, kp);
        const rope = this.ropeOfStep(ctx);
        const q = b.rope(q0, c.numHeads, ctx.positions, rope);
        const k = b.rope(k0, c.numKvHeads, ctx.positions, rope);
        free(q0, k0);
        const a = b.attention(q, k, v, cache, ctx.start, c.numHeads, undefined, this.attentionExtras());
        free(q, k, v);
        const h1 = b.linearResidual(a, L.o, h);
        free(a, h);
        const y = b.rmsNorm(h1, L.postNorm, c.normEps);
        const g = b.linearSwiglu(y, L.gate, L.up);
        free(y);
        const out = b.linearResidual(g, L.down, h1);
        free(g, h1);
        return out;
      },
      handles,
    };
  }
}

/** config.json names of the Llama-family fields (Mistral, Qwen2 and Qwen3 use them too). */
export const LLAMA_CONFIG_FIELDS: FieldNames = {
  hiddenSize: 'hidden_size', numLayers: 'num_hidden_layers', numHeads: 'num_attention_heads', numKvHeads: 'num_key_value_heads', headDim: 'head_dim',
  intermediateSize: 'intermediate_size', vocabSize: 'vocab_size', maxPositions: 'max_position_embeddings', normEps: 'rms_norm_eps', ropeTheta: 'rope_theta',
  bosTokenId: 'bos_token_id', eosTokenIds: 'eos_token_id',
};

/** The sizes a decoder layer's tensors have: hidden, MLP, q and k/v projection widths. */
export interface LayerDims {
  H: number;
  I: number;
  q: number;
  kv: number;
}

/**
 * Every tensor of a decoder with Llama's outer layout (transformers' names, the shapes the config
 * implies): the embedding, the final norm, the head unless tied, and each layer's tensors from
 * `layer(prefix, dims, set, linear)`; `linear(name, rows, cols, bias)` adds a weight and its bias
 * (optional unless `bias`).
 */
export function decoderTensors(
  c: DecoderConfig,
  layer: (p: string, d: LayerDims, set: (name: string, t: ExpectedTensor) => void, linear: (name: string, rows: number, cols: number, bias: boolean) => void) => void,
): Map<string, ExpectedTensor> {
  const out = new Map<string, ExpectedTensor>();
  const [H, V] = [c.hiddenSize, c.vocabSize];
  const d: LayerDims = { H, I: c.intermediateSize, q: c.numHeads * c.headDim, kv: c.numKvHeads * c.headDim };
  out.set('model.embed_tokens.weight', { shape: [V, H] });
  out.set('model.norm.weight', { shape: [H] });
  out.set('lm_head.weight', { shape: [V, H], optional: c.tieWordEmbeddings });
  const set = (name: string, t: ExpectedTensor) => void out.set(name, t);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    layer(p, d, set, (n, rows, cols, bias) => {
      out.set(`${p}.${n}.weight`, { shape: [rows, cols] });
      out.set(`${p}.${n}.bias`, { shape: [rows], optional: !bias });
    });
  }
  return out;
}

/** Every tensor of a Llama-family checkpoint (transformers' names) with the shape the config implies. */
export function llamaTensors(c: DecoderConfig): Map<string, ExpectedTensor> {
  return decoderTensors(c, (p, { H, I, q, kv }, set, lin) => {
    set(`${p}.input_layernorm.weight`, { shape: [H] });
    set(`${p}.post_attention_layernorm.weight`, { shape: [H] });
    lin('self_attn.q_proj', q, H, c.qkvBias);
    lin('self_attn.k_proj', kv, H, c.qkvBias);
    lin('self_attn.v_proj', kv, H, c.qkvBias);
    lin('self_attn.o_proj', H, q, c.oBias);
    lin('mlp.gate_proj', I, H, false);
    lin('mlp.up_proj', I, H, false);
    lin('mlp.down_proj', H, I, false);
  });
}

/** config.json of a Llama-family model: the shared Llama-style numbers; Qwen2 always has q/k/v biases. */
function parseLlamaConfig(c: ConfigJson): DecoderConfig {
  const config = parseLlamaStyleConfig(c, 'llama');
  return c.model_type === 'qwen2' ? { ...config, qkvBias: true } : config;
}

/** llama.cpp's names outside the blocks (convert_hf_to_gguf.py / gguf-py's TENSOR_NAMES). */
export const LLAMA_GGUF_TOP: Readonly<Record<string, string>> = { token_embd: 'model.embed_tokens', output_norm: 'model.norm', output: 'lm_head' };
/** llama.cpp's names of a Llama block's tensors. */
export const LLAMA_GGUF_BLOCK: Readonly<Record<string, string>> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};

/**
 * Inverts llama.cpp's LlamaModel.permute on the rows of a [rows, cols] weight of `nHead` heads.
 * Its converter permutes attn_q / attn_k within each head for GGML's interleaved-pair rope
 * (convert_hf_to_gguf.py: `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2)
 * .reshape(rows, cols)`, n_head = head_count for Q and head_count_kv for K); transformers' GGUF
 * loader undoes it the same way (LlamaTensorProcessor._reverse_permute_weights). GGUF row
 * h*D + 2r + i holds transformers' row h*D + i*(D/2) + r (D = rows / nHead, i in {0, 1}).
 * Works on the stored bytes, so any dense dtype; a block-wise 8-bit weight (GGUF Q8_0 kept 8-bit,
 * whole blocks per row since ggml requires in % 32 == 0) moves its codes and scales together.
 */
export function unpermuteHeadRows<W extends GgufFixable>(w: W, nHead: number): W {
  if (w.shape.length !== 2) throw ggufBad(`${w.name}: expected a 2-D weight, got shape [${w.shape.join(', ')}]`);
  const [rows, cols] = w.shape as [number, number];
  if (rows % (2 * nHead) !== 0) throw ggufBad(`${w.name}: ${rows} rows do not split into ${nHead} heads of an even size`);
  const d = rows / nHead;
  const half = d / 2;
  // transformers' row dst = h*D + i*half + r comes from GGUF row h*D + 2r + i.
  const srcRow = (dst: number) => {
    const h = Math.floor(dst / d);
    const i = Math.floor((dst % d) / half);
    return h * d + 2 * ((dst % d) % half) + i;
  };
  if (w.kind === 'blockwise8') {
    if (w.q.length !== rows * cols) throw ggufBad(`${w.name}: ${w.q.length} codes do not hold [${rows}, ${cols}]`);
    return permuteRowsBlockwise8(w, srcRow) as W;
  }
  const rowBytes = w.data.length / rows;
  if (rowBytes !== Math.floor(rowBytes) || rowBytes % cols !== 0) throw ggufBad(`${w.name}: ${w.data.length} bytes do not hold [${rows}, ${cols}]`);
  const out = new Uint8Array(w.data.length);
  for (let dst = 0; dst < rows; dst++) {
    const src = srcRow(dst);
    out.set(w.data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
  }
  return { ...w, data: out };
}

const llamaGgufName = ggufNameMapper(LLAMA_GGUF_TOP, LLAMA_GGUF_BLOCK);

/**
 * Llama- and Qwen2-architecture GGUF files. Qwen2 has the q/k/v biases (found from the tensor
 * list) and no Q/K permutation: llama.cpp runs its rope in NEOX order, transformers' own layout.
 */
export const LLAMA_GGUF: GgufArchitecture = {
  names: ['llama', 'qwen2'],
  toConfig: (metadata, tensors) => ggufDecoderConfig(metadata, tensors, 'llama'),
  toHfName: (name) => llamaGgufName(name),
  fixTensor(name, config) {
    if (config.modelType !== 'llama') return undefined;
    const m = /^blk\.\d+\.attn_([qk])\.weight$/.exec(name);
    if (!m) return undefined;
    const nHead = m[1] === 'q' ? config.numHeads : config.numKvHeads;
    return (w) => unpermuteHeadRows(w, nHead);
  },
};

/** Llama / Mistral / Qwen2 as the registry sees them (transformers' LlamaForCausalLM names). */
export const LLAMA: Architecture = {
  family: 'llama',
  modelTypes: ['llama', 'mistral', 'qwen2'],
  parseConfig: parseLlamaConfig,
  gguf: LLAMA_GGUF,
  configFields: LLAMA_CONFIG_FIELDS,
  expectedTensors: llamaTensors,
  layerPattern: /^model\.layers\.(\d+)\./,
  checkConfig(c, fail) {
    if (c.headDim % 2 !== 0) fail('headDim', `must be even for rotary embeddings, got ${c.headDim}`);
    if (!(Number.isFinite(c.ropeTheta) && c.ropeTheta > 0)) fail('ropeTheta', `must be a positive number, got ${c.ropeTheta}`);
  },
  moduleNames: (config) => ['model.embed_tokens', ...Array.from({ length: config.numLayers }, (_, i) => `model.layers.${i}`), 'model.norm', 'lm_head'],
  moduleOfTensor: (_config, tensor) => /^(model\.layers\.\d+|model\.embed_tokens|model\.norm|lm_head)\./.exec(tensor)?.[1],
  isLayer: (module) => /^model\.layers\.\d+$/.test(module),
  embeddingModule: 'model.embed_tokens',
  kvHeads: (config) => config.numKvHeads,
  create: (config, c) => new LlamaForCausalLM(config, c.placement, c.weights, c.maxPositions, c.linear, c.options),
};
