/**
 * Gemma 2 (transformers' Gemma2ForCausalLM), and the decoder Gemma 3 (gemma3.ts) extends:
 *
 * - the embedding output times sqrt(hidden_size) (rounded to f32, the hidden dtype, as
 *   Gemma2TextScaledWordEmbedding does); the head is tied to the embedding table;
 * - RMSNorm with (1 + weight): every `*norm.weight` gets 1 added (in f32) as it is loaded, then
 *   the plain RMSNorm op runs. llama.cpp stores these weights with the 1 already added
 *   (convert_hf_to_gguf.py Gemma2Model / Gemma3Model: `data_torch + 1` for names ending in
 *   "norm.weight"): the GGUF side subtracts it again, exactly (w + 1 lies in [0.5, 2] for real
 *   weights, where f32 subtraction is exact), so both paths meet in transformers' values;
 * - four norms per layer: input_layernorm -> attention -> post_attention_layernorm -> residual,
 *   pre_feedforward_layernorm -> GeGLU MLP (gelu_pytorch_tanh(gate) * up) -> post_feedforward_layernorm
 *   -> residual;
 * - attention scale query_pre_attn_scalar^-0.5, attention logit soft-capping
 *   (attn_logit_softcapping), final logit soft-capping (final_logit_softcapping);
 * - sliding-window attention on the layers config.json's layer_types marks "sliding_attention"
 *   (default: every other layer, starting with layer 0).
 */
import type { Activation, Backend, KvCacheHandle, RopeSpec } from '../backends/backend.js';
import { LowbitError } from '../errors.js';
import type { DenseWeight } from '../loading/load-weights.js';
import { ropeInvFreq } from '../tensor/rope.js';
import type { Architecture, ExpectedTensor, GgufArchitecture, GgufFixable } from './architecture.js';
import type { BuiltModule } from './causal-lm.js';
import { num, optionalNum, parseLlamaStyleConfig, type ConfigJson, type DecoderConfig } from './config.js';
import { ggufBad, ggufDecoderConfig, ggufNameMapper, ggufReader, type GgufMetadata, type GgufTensorShapes } from './gguf-config.js';
import { LLAMA, LLAMA_GGUF_TOP, LlamaForCausalLM, llamaTensors } from './llama.js';
import { denseToF32, WeightMap } from './weights.js';

/** What Gemma 2 / 3 add to DecoderConfig (parseConfig / gguf.toConfig of gemma2.ts and gemma3.ts make it). */
export interface GemmaConfig extends DecoderConfig {
  /** Attention scores are scaled by queryPreAttnScalar^-0.5. */
  queryPreAttnScalar: number;
  /** Attention logit soft-capping (Gemma 2: 50); absent: none. */
  attnSoftcap?: number;
  /** Final logit soft-capping (Gemma 2: 30); absent: none. */
  finalSoftcap?: number;
  /** Positions a sliding layer sees (the query's and the window - 1 before it). */
  slidingWindow?: number;
  /** Per layer: true for a sliding-window layer. */
  slidingLayers: boolean[];
  /** Rope base of the sliding layers when it differs from ropeTheta (Gemma 3's rope_local_base_freq); not scaled by ropeLinearFactor. */
  localRopeTheta?: number;
}

/** The GemmaConfig a Gemma architecture's own parser made (the registry hands `create` only those). */
export function asGemma(config: DecoderConfig): GemmaConfig {
  const g = config as Partial<GemmaConfig>;
  if (!Array.isArray(g.slidingLayers) || typeof g.queryPreAttnScalar !== 'number') throw new LowbitError('INTERNAL', `a ${config.modelType} config without Gemma's fields`);
  return config as GemmaConfig;
}

/** A norm weight with 1 added in f32 (Gemma's RMSNorm computes x̂ * (1 + w)). */
function onePlus(w: DenseWeight): DenseWeight {
  const f = denseToF32(w);
  const out = new Float32Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = f[i]! + 1;
  return { ...w, dtype: 'F32', data: new Uint8Array(out.buffer) };
}

const NORM = /norm\.weight$/;

/** The module's tensors with every norm weight as (1 + w). */
function withOnePlusNorms(weights: WeightMap): WeightMap {
  return new (class extends WeightMap {
    override has(name: string) {
      return weights.has(name);
    }
    override take(name: string) {
      const w = weights.take(name);
      return NORM.test(name) && w.kind === 'dense' ? onePlus(w) : w;
    }
    override takeOptional(name: string) {
      return weights.has(name) ? this.takeDense(name) : undefined;
    }
    override remaining() {
      return weights.remaining();
    }
  })(new Map());
}

export class Gemma2ForCausalLM extends LlamaForCausalLM {
  protected override get architecture(): Architecture {
    return GEMMA2;
  }

  override setRopeInvFreq(): void {
    throw new LowbitError('UNSUPPORTED_DTYPE', `${this.config.modelType}: replacing the rope frequencies (a GGUF rope_freqs tensor) is not supported`);
  }

  /** Rope of a layer: one base for all in Gemma 2; Gemma 3's sliding layers have their own. */
  protected ropeOf(layer: number): RopeSpec {
    const c = asGemma(this.config);
    const local = c.slidingLayers[layer] === true && c.localRopeTheta !== undefined;
    const invFreq = ropeInvFreq(c.headDim, local ? c.localRopeTheta! : c.ropeTheta);
    if (!local && c.ropeLinearFactor !== undefined) for (let i = 0; i < invFreq.length; i++) invFreq[i] = invFreq[i]! / c.ropeLinearFactor;
    return { headDim: c.headDim, invFreq };
  }

  protected override buildModule(name: string, b: Backend, raw: WeightMap): BuiltModule {
    const c = asGemma(this.config);
    const weights = withOnePlusNorms(raw);
    const free = (...xs: Activation[]) => xs.forEach((x) => b.release(x));
    if (name === 'model.embed_tokens' || name === 'lm_head' || name === 'model.norm') {
      const inner = super.buildModule(name, b, weights);
      // the embedding times sqrt(hidden) in f32; the logits soft-capped
      const after =
        name === 'model.embed_tokens' ? (x: Activation) => b.scale(x, Math.fround(Math.sqrt(c.hiddenSize))) : name === 'lm_head' && c.finalSoftcap !== undefined ? (x: Activation) => b.softcap(x, c.finalSoftcap!) : undefined;
      if (after === undefined) return inner;
      return {
        run: (h, ctx) => {
          const x = inner.run(h, ctx);
          const out = after(x);
          free(x);
          return out;
        },
        handles: inner.handles,
      };
    }
    const layer = Number(/\.(\d+)$/.exec(name)![1]);
    const { handles, keep, lin, vec } = this.moduleTools(b, weights, this.linearOptions);
    const p = name;
    const L = {
      inNorm: vec(`${p}.input_layernorm.weight`),
      q: lin(`${p}.self_attn.q_proj`, c.qkvBias),
      k: lin(`${p}.self_attn.k_proj`, c.qkvBias),
      v: lin(`${p}.self_attn.v_proj`, c.qkvBias),
      o: lin(`${p}.self_attn.o_proj`, c.oBias),
      postAttnNorm: vec(`${p}.post_attention_layernorm.weight`),
      preFfnNorm: vec(`${p}.pre_feedforward_layernorm.weight`),
      postFfnNorm: vec(`${p}.post_feedforward_layernorm.weight`),
      gate: lin(`${p}.mlp.gate_proj`, false),
      up: lin(`${p}.mlp.up_proj`, false),
      down: lin(`${p}.mlp.down_proj`, false),
      qkNorm: this.qkNorms(p, vec),
    };
    const cache: KvCacheHandle = keep(`${p}.kv_cache`, b.kvCache(this.maxPositions, c.numKvHeads, c.headDim));
    const rope = this.ropeOf(layer);
    const scale = Math.fround(c.queryPreAttnScalar ** -0.5);
    const extras = {
      ...(c.attnSoftcap !== undefined ? { softcap: c.attnSoftcap } : {}),
      ...(c.slidingLayers[layer] && c.slidingWindow !== undefined ? { window: c.slidingWindow } : {}),
    };
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
        const q = b.rope(q0, c.numHeads, ctx.positions, rope);
        const k = b.rope(k0, c.numKvHeads, ctx.positions, rope);
        free(q0, k0);
        const a = b.attention(q, k, v, cache, ctx.start, c.numHeads, scale, extras);
        free(q, k, v);
        const o = b.linearForward(a, L.o);
        free(a);
        const on = b.rmsNorm(o, L.postAttnNorm, c.normEps);
        free(o);
        const h1 = b.add(h, on);
        free(h, on);
        const y = b.rmsNorm(h1, L.preFfnNorm, c.normEps);
        const [g, u] = b.linearForwardMany(y, [L.gate, L.up]) as [Activation, Activation];
        free(y);
        const m = b.geglu(g, u);
        free(g, u);
        const d = b.linearForward(m, L.down);
        free(m);
        const dn = b.rmsNorm(d, L.postFfnNorm, c.normEps);
        free(d);
        const out = b.add(h1, dn);
        free(h1, dn);
        return out;
      },
      handles,
    };
  }
}

/** Layer i's kind from config.json's layer_types, or every `pattern`-th layer global (transformers' default). */
export function slidingLayersOf(c: ConfigJson, numLayers: number, pattern: number): boolean[] {
  const types = c.layer_types;
  if (types === undefined || types === null) return Array.from({ length: numLayers }, (_, i) => (i + 1) % pattern !== 0);
  if (!Array.isArray(types) || types.length !== numLayers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
    throw new LowbitError('MALFORMED_FILE', `config.json: 'layer_types' must list 'sliding_attention' / 'full_attention' for each of the ${numLayers} layers`, { file: 'config.json' });
  }
  return types.map((t) => t === 'sliding_attention');
}

/** The fields every Gemma config.json has on top of the Llama-style numbers. */
export function parseGemmaCommon(c: ConfigJson, family: string, pattern: number): GemmaConfig {
  const base = parseLlamaStyleConfig({ ...c, rope_scaling: null }, family);
  const act = c.hidden_activation ?? c.hidden_act ?? 'gelu_pytorch_tanh';
  if (act !== 'gelu_pytorch_tanh' && act !== 'gelu_tanh') throw new LowbitError('UNSUPPORTED_DTYPE', `config.json: hidden_activation '${String(act)}' is not supported (gelu_pytorch_tanh is)`, { file: 'config.json' });
  if (c.use_bidirectional_attention === true) throw new LowbitError('UNSUPPORTED_DTYPE', 'config.json: use_bidirectional_attention (an embedding model) is not supported', { file: 'config.json' });
  const attnSoftcap = optionalNum(c, 'attn_logit_softcapping');
  const finalSoftcap = optionalNum(c, 'final_logit_softcapping');
  const slidingWindow = optionalNum(c, 'sliding_window');
  return {
    ...base,
    activation: 'gelu_pytorch_tanh',
    tieWordEmbeddings: c.tie_word_embeddings !== false,
    queryPreAttnScalar: num(c, 'query_pre_attn_scalar', 256),
    ...(attnSoftcap !== undefined ? { attnSoftcap } : {}),
    ...(finalSoftcap !== undefined ? { finalSoftcap } : {}),
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
    slidingLayers: slidingLayersOf(c, base.numLayers, pattern),
  };
}

/** Checks of the Gemma fields (and Llama's rotary ones). */
export function checkGemmaConfig(config: DecoderConfig, fail: (field: keyof DecoderConfig, message: string) => never): void {
  LLAMA.checkConfig!(config, fail);
  const c = asGemma(config);
  const positive = (v: number | undefined) => v === undefined || (Number.isFinite(v) && v > 0);
  if (!positive(c.queryPreAttnScalar)) fail('headDim', `query_pre_attn_scalar must be a positive number, got ${c.queryPreAttnScalar}`);
  if (!positive(c.attnSoftcap)) fail('headDim', `attn_logit_softcapping must be a positive number, got ${c.attnSoftcap}`);
  if (!positive(c.finalSoftcap)) fail('vocabSize', `final_logit_softcapping must be a positive number, got ${c.finalSoftcap}`);
  if (c.slidingWindow !== undefined && !(Number.isInteger(c.slidingWindow) && c.slidingWindow >= 1 && c.slidingWindow <= 0xffffffff)) fail('maxPositions', `sliding_window must be an integer >= 1, got ${c.slidingWindow}`);
  if (c.slidingLayers.length !== c.numLayers) fail('numLayers', `has ${c.numLayers} layers but layer_types lists ${c.slidingLayers.length}`);
  if (c.localRopeTheta !== undefined && !positive(c.localRopeTheta)) fail('ropeTheta', `the local rope base must be a positive number, got ${c.localRopeTheta}`);
}

/** Every tensor of a Gemma 2 checkpoint: Llama's plus the pre / post feed-forward norms. */
export function gemmaTensors(c: DecoderConfig): Map<string, ExpectedTensor> {
  const out = llamaTensors(c);
  for (let l = 0; l < c.numLayers; l++) {
    out.set(`model.layers.${l}.pre_feedforward_layernorm.weight`, { shape: [c.hiddenSize] });
    out.set(`model.layers.${l}.post_feedforward_layernorm.weight`, { shape: [c.hiddenSize] });
  }
  return out;
}

/** llama.cpp's names of a Gemma 2 block (gguf-py TENSOR_NAMES, MODEL_TENSORS[GEMMA2]). */
export const GEMMA_GGUF_BLOCK: Readonly<Record<string, string>> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  post_attention_norm: 'post_attention_layernorm',
  ffn_norm: 'pre_feedforward_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
  post_ffw_norm: 'post_feedforward_layernorm',
};

/** llama.cpp stores Gemma norm weights as 1 + w: back to transformers' w. */
export function gemmaGgufFix(name: string): ((w: GgufFixable) => GgufFixable) | undefined {
  if (!NORM.test(name)) return undefined;
  return (w) => {
    if (w.kind !== 'dense') throw ggufBad(`${name}: a norm weight must be a plain tensor, got ${w.kind}`);
    const f = denseToF32(w);
    const out = new Float32Array(f.length);
    for (let i = 0; i < f.length; i++) out[i] = f[i]! - 1;
    return { ...w, dtype: 'F32', data: new Uint8Array(out.buffer) };
  };
}

/**
 * The Gemma fields of a GGUF (llama.cpp's llama-model.cpp reads the same): no
 * query_pre_attn_scalar is stored, llama.cpp scales by head_dim^-0.5 (hidden / heads for the
 * 27B models, which llama.cpp tells by their layer count: `layers27B`); sliding layers by a fixed
 * pattern (set_swa_pattern), or `<arch>.attention.sliding_window_pattern` when present.
 */
export function ggufGemmaConfig(metadata: GgufMetadata, tensors: GgufTensorShapes | undefined, family: string, pattern: number, layers27B: number): GemmaConfig {
  const base = ggufDecoderConfig(metadata, tensors, family);
  const { get } = ggufReader(metadata);
  const window = get('attention.sliding_window');
  const swaPattern = get('attention.sliding_window_pattern') ?? pattern;
  if (!(Number.isInteger(swaPattern) && swaPattern >= 1)) throw ggufBad(`sliding_window_pattern must be an integer >= 1, got ${swaPattern}`);
  const attnSoftcap = get('attn_logit_softcapping');
  const finalSoftcap = get('final_logit_softcapping');
  // an explicit attention.scale (not written by the converter today) wins
  const scale = get('attention.scale');
  if (scale !== undefined && !(Number.isFinite(scale) && scale > 0)) throw ggufBad(`'${base.modelType}.attention.scale' must be a positive number, got ${scale}`);
  return {
    ...base,
    activation: 'gelu_pytorch_tanh',
    queryPreAttnScalar: scale !== undefined ? 1 / (scale * scale) : base.numLayers === layers27B ? base.hiddenSize / base.numHeads : base.headDim,
    ...(attnSoftcap !== undefined && attnSoftcap > 0 ? { attnSoftcap } : {}),
    ...(finalSoftcap !== undefined && finalSoftcap > 0 ? { finalSoftcap } : {}),
    ...(window !== undefined && window > 0 ? { slidingWindow: window } : {}),
    slidingLayers: Array.from({ length: base.numLayers }, (_, i) => window !== undefined && window > 0 && (i + 1) % swaPattern !== 0),
  };
}

const gemma2GgufName = ggufNameMapper(LLAMA_GGUF_TOP, GEMMA_GGUF_BLOCK);

const GEMMA2_GGUF: GgufArchitecture = {
  names: ['gemma2'],
  // llama.cpp: Gemma 2 swa pattern 2; the 27B has 46 layers
  toConfig: (metadata, tensors) => ggufGemmaConfig(metadata, tensors, 'gemma2', 2, 46),
  toHfName: (name) => gemma2GgufName(name),
  fixTensor: (name) => gemmaGgufFix(name),
};

/** Gemma 2 as the registry sees it: Llama's modules and module names, Gemma's tensors and model. */
export const GEMMA2: Architecture = {
  ...LLAMA,
  family: 'gemma2',
  modelTypes: ['gemma2'],
  // transformers' Gemma2Config: every other layer sliding (layer 0 first)
  parseConfig: (c) => parseGemmaCommon(c, 'gemma2', 2),
  gguf: GEMMA2_GGUF,
  expectedTensors: gemmaTensors,
  checkConfig: checkGemmaConfig,
  create: (config, c) => new Gemma2ForCausalLM(config, c.placement, c.weights, c.maxPositions, c.linear, c.options),
};
