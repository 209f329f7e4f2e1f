/**
 * Phi-3 (model_type phi3: Phi-3-mini, Phi-3.5-mini, Phi-4-mini): the Llama decoder (RMSNorm,
 * rotary GQA attention, SwiGLU) with
 *
 * - fused projections: `self_attn.qkv_proj` ([q | k | v] rows) and `mlp.gate_up_proj`
 *   ([gate | up] rows; transformers' Phi3MLP chunks its output in two, silu on the first). They
 *   are split when the layer is built by slicing the loaded weight's rows (WeightFormat.sliceRows),
 *   quantized or not: the loader quantizes the fused tensor as bitsandbytes does (so nf4 / int8
 *   blocks and double-quant statistics are bitsandbytes' own, and pre-quantized bnb checkpoints
 *   load), and the halves then run the Llama path (one linearForwardMany for q / k / v, the
 *   fused gate / up / SwiGLU kernel). The model never quantizes. A 4-bit slice must start on a
 *   block boundary (rows * hidden a multiple of the blocksize): true of every Phi-3 shape.
 * - partial rotary (`partial_rotary_factor`, Phi-4-mini 0.75): rope turns the first
 *   int(head_dim * factor) values of each head (Backend.rope's rotaryDim); the rest pass through.
 * - LongRoPE (rope type `longrope`, or `su` / `yarn`, which Phi3Config renames to longrope):
 *   inv_freq = 1 / (factor_i * theta^(2i / rotaryDim)) with factor = short_factor while the
 *   sequence (the last position + 1 of a forward) is at most original_max_position_embeddings,
 *   long_factor past it; cos and sin times the attention factor (rope_parameters'
 *   attention_factor, else sqrt(1 + ln(s) / ln(original)) with s = factor or max_position /
 *   original, 1 when s <= 1) — transformers 5.23's _compute_longrope_parameters and
 *   dynamic_rope_update. When a generation crosses the original length transformers drops the
 *   cache and runs the whole sequence again with the long factors
 *   (Phi3ForCausalLM.prepare_inputs_for_generation); recomputesCache does the same here.
 * - sliding_window (Phi-3-mini-4k: 2047): every layer's attention sees the last `window`
 *   positions (Backend.attention's extras.window), as transformers' sliding-window mask.
 */
import type { AttentionExtras, Backend, LinearHandle, LinearOptions, RopeSpec } from '../backends/backend.js';
import { LowbitError } from '../errors.js';
import { formatOf, type LoadedWeight } from '../formats/index.js';
import { ropeInvFreq } from '../tensor/rope.js';
import type { Architecture, ExpectedTensor } from './architecture.js';
import type { BuiltModule, CausalLMOptions, ModelWeights, Placement, StepContext } from './causal-lm.js';
import { num, ropeParameters, tokenIds, type ConfigJson, type DecoderConfig } from './config.js';
import { ggufBad, ggufDecoderConfig, ggufNameMapper, ggufReader, ggufUnsupported } from './gguf-config.js';
import { denseToF32 } from './weights.js';
import { decoderTensors, LLAMA, LLAMA_CONFIG_FIELDS, LLAMA_GGUF_TOP, LlamaForCausalLM, type LlamaLayer } from './llama.js';
import type { DenseWeight } from '../loading/load-weights.js';
import type { WeightMap } from './weights.js';

/** LongRoPE scaling (rope type longrope / su). */
export interface LongRopeScaling {
  /** One factor per rotary frequency (rotaryDim / 2), for sequences up to originalMaxPositions. */
  shortFactor: readonly number[];
  /** The same for longer sequences. */
  longFactor: readonly number[];
  originalMaxPositions: number;
  /** cos and sin are multiplied by it. */
  attentionFactor: number;
  /**
   * The factors are tensors of the checkpoint (a GGUF's rope_factors_short / rope_factors_long,
   * read as `model.rope_factors_*.weight`, which ride with the embedding module), not numbers
   * of the config: shortFactor / longFactor are empty until the model has them.
   */
  factorsFromTensors?: boolean;
}

/** What a Phi-3 config has beyond DecoderConfig. */
export interface Phi3Config extends DecoderConfig {
  /** Values of each head that rope turns: int(head_dim * partial_rotary_factor). */
  rotaryDim: number;
  longRope?: LongRopeScaling;
  /** Attention looks back at most this many positions (sliding_window; Phi-3-mini-4k: 2047), as transformers masks it. */
  slidingWindow?: number;
}

function phi3(config: DecoderConfig): Phi3Config {
  const c = config as Phi3Config;
  return typeof c.rotaryDim === 'number' ? c : { ...config, rotaryDim: config.headDim };
}

/** LongRoPE's inverse frequencies in f32, as transformers computes them: 1 / (factor_i * theta^(f32(2i) / dim)). */
export function longRopeInvFreq(rotaryDim: number, theta: number, factors: readonly number[]): Float32Array {
  const out = new Float32Array(rotaryDim / 2);
  for (let i = 0; i < out.length; i++) {
    const exponent = Math.fround(Math.fround(2 * i) / rotaryDim);
    out[i] = Math.fround(1 / Math.fround(Math.fround(factors[i]!) * Math.fround(Math.pow(theta, exponent))));
  }
  return out;
}

export class Phi3ForCausalLM extends LlamaForCausalLM {
  // `declare` fields: set while the base constructor builds the modules, so no field initializer may reset them.
  /** The rope up to the original length (short factors, or plain rope) and past it (long factors). */
  private declare shortRope: RopeSpec | undefined;
  private declare longRope: RopeSpec | undefined;
  /** LongRoPE factors read from tensors (GGUF), when the config has none. */
  private declare factorTensors: { short: readonly number[]; long: readonly number[] } | undefined;

  constructor(config: DecoderConfig, placement: Placement, weights: ModelWeights, maxPositions: number, linearOptions: LinearOptions = {}, options: CausalLMOptions = {}) {
    super(phi3(config), placement, weights, maxPositions, linearOptions, options);
  }

  protected override get architecture(): Architecture {
    return PHI3;
  }

  private get phi3Config(): Phi3Config {
    return this.config as Phi3Config;
  }

  /** Slices of the fused qkv_proj and gate_up_proj (see the header). */
  protected override projections(p: string, weights: WeightMap, linear: (name: string, w: LoadedWeight, bias?: DenseWeight) => LinearHandle): Pick<LlamaLayer, 'q' | 'k' | 'v' | 'gate' | 'up'> {
    const c = this.config;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    const rows = (w: LoadedWeight, r0: number, r1: number, name: string) => formatOf(w).sliceRows(w, r0, r1, name);
    const qkv = weights.take(`${p}.self_attn.qkv_proj.weight`);
    const gateUp = weights.take(`${p}.mlp.gate_up_proj.weight`);
    return {
      q: linear(`${p}.self_attn.qkv_proj[q]`, rows(qkv, 0, q, `${qkv.name}[q]`)),
      k: linear(`${p}.self_attn.qkv_proj[k]`, rows(qkv, q, q + kv, `${qkv.name}[k]`)),
      v: linear(`${p}.self_attn.qkv_proj[v]`, rows(qkv, q + kv, q + 2 * kv, `${qkv.name}[v]`)),
      gate: linear(`${p}.mlp.gate_up_proj[gate]`, rows(gateUp, 0, I, `${gateUp.name}[gate]`)),
      up: linear(`${p}.mlp.gate_up_proj[up]`, rows(gateUp, I, 2 * I, `${gateUp.name}[up]`)),
    };
  }

  /** A GGUF's LongRoPE factors arrive with the embedding (see LongRopeScaling.factorsFromTensors). */
  protected override buildModule(name: string, b: Backend, weights: WeightMap): BuiltModule {
    const lr = this.phi3Config.longRope;
    if (name === LLAMA.embeddingModule && lr?.factorsFromTensors) {
      const want = this.phi3Config.rotaryDim / 2;
      const take = (n: string) => {
        const v = Array.from(denseToF32(weights.takeDense(n)));
        if (v.length !== want || !v.every((f) => Number.isFinite(f) && f > 0)) throw new LowbitError('MALFORMED_FILE', `${n}: LongRoPE needs ${want} positive factors (rotary dims / 2), got ${v.length}`);
        return v;
      };
      this.factorTensors = { short: take(ROPE_FACTORS.short), long: take(ROPE_FACTORS.long) };
      this.shortRope = undefined;
    }
    return super.buildModule(name, b, weights);
  }

  private ropes(): { short: RopeSpec; long: RopeSpec | undefined } {
    if (this.shortRope === undefined) {
      const c = this.phi3Config;
      const spec = (invFreq: Float32Array, attentionScaling: number): RopeSpec => ({ headDim: c.headDim, rotaryDim: c.rotaryDim, invFreq, attentionScaling });
      const lr = c.longRope;
      const factors = lr?.factorsFromTensors ? this.factorTensors : lr ? { short: lr.shortFactor, long: lr.longFactor } : undefined;
      if (lr && factors === undefined) throw new LowbitError('INTERNAL', 'LongRoPE factors from tensors were not loaded');
      this.shortRope = lr ? spec(longRopeInvFreq(c.rotaryDim, c.ropeTheta, factors!.short), lr.attentionFactor) : spec(ropeInvFreq(c.rotaryDim, c.ropeTheta, c.llama3), 1);
      this.longRope = lr ? spec(longRopeInvFreq(c.rotaryDim, c.ropeTheta, factors!.long), lr.attentionFactor) : undefined;
    }
    return { short: this.shortRope, long: this.longRope };
  }

  /** The long factors once the sequence (last position + 1) is past the original length. */
  protected override ropeOfStep(ctx: StepContext): RopeSpec {
    const c = this.phi3Config;
    const end = ctx.start + ctx.ids.length;
    const { short, long } = this.ropes();
    return long !== undefined && end > c.longRope!.originalMaxPositions ? long : short;
  }

  /** sliding_window: a query at position p sees positions (p - window, p], as transformers' mask. */
  protected override attentionExtras(): AttentionExtras | undefined {
    const w = this.phi3Config.slidingWindow;
    return w === undefined ? undefined : { window: w };
  }

  protected override recomputesCache(start: number, n: number): boolean {
    const lr = this.phi3Config.longRope;
    return lr !== undefined && start <= lr.originalMaxPositions && start + n > lr.originalMaxPositions;
  }
}

/** Every tensor of a Phi-3 checkpoint (transformers' names) with the shape the config implies. */
export function phi3Tensors(c: DecoderConfig): Map<string, ExpectedTensor> {
  const out = decoderTensors(c, (p, { H, I, q, kv }, set) => {
    set(`${p}.input_layernorm.weight`, { shape: [H] });
    set(`${p}.post_attention_layernorm.weight`, { shape: [H] });
    set(`${p}.self_attn.qkv_proj.weight`, { shape: [q + 2 * kv, H] });
    set(`${p}.self_attn.o_proj.weight`, { shape: [H, q] });
    set(`${p}.mlp.gate_up_proj.weight`, { shape: [2 * I, H] });
    set(`${p}.mlp.down_proj.weight`, { shape: [H, I] });
  });
  const lr = (c as Phi3Config).longRope;
  if (lr?.factorsFromTensors) {
    out.set(ROPE_FACTORS.short, { shape: [(c as Phi3Config).rotaryDim / 2] });
    out.set(ROPE_FACTORS.long, { shape: [(c as Phi3Config).rotaryDim / 2] });
  }
  return out;
}

/** A GGUF's LongRoPE factor tensors under the names the model takes them by (transformers has no such tensors). */
const ROPE_FACTORS = { short: 'model.rope_factors_short.weight', long: 'model.rope_factors_long.weight' } as const;

/** llama.cpp's Phi-3 names (gguf-py 0.19 TENSOR_NAMES / tensor_mapping): fused attn_qkv, gate_up_proj as ffn_up. */
const phi3GgufName = ggufNameMapper(
  { ...LLAMA_GGUF_TOP, rope_factors_short: 'model.rope_factors_short', rope_factors_long: 'model.rope_factors_long' },
  { attn_norm: 'input_layernorm', attn_qkv: 'self_attn.qkv_proj', attn_output: 'self_attn.o_proj', ffn_norm: 'post_attention_layernorm', ffn_up: 'mlp.gate_up_proj', ffn_down: 'mlp.down_proj' },
);

/**
 * The config of a phi3 GGUF as llama.cpp's convert_hf_to_gguf.py (Phi3MiniModel) writes it:
 * rope.dimension_count = int(partial_rotary_factor * hidden) / heads (the rotary values per
 * head), rope.scaling.original_context_length, rope.scaling.attn_factor (written with the
 * factors: sqrt(1 + ln(s) / ln(original)), s = context_length / original), the factors as
 * rope_factors_long / rope_factors_short tensors (present only for LongRoPE models), and
 * attention.sliding_window (0: none). No Q/K permutation (llama.cpp runs phi3 rope in NEOX
 * order). Like the config.json path, the factors are chosen by the sequence length as transformers
 * does (llama.cpp picks them once, by its context size).
 */
function phi3GgufConfig(metadata: Parameters<typeof ggufDecoderConfig>[0], tensors: Parameters<typeof ggufDecoderConfig>[1]): Phi3Config {
  const r = ggufReader(metadata);
  // ggufDecoderConfig refuses partial rope; the rotary width is read here instead
  const full = new Map(metadata);
  full.delete(`${r.arch}.rope.dimension_count`);
  const base = ggufDecoderConfig(full, tensors, 'phi3');
  const rotaryDim = r.get('rope.dimension_count') ?? base.headDim;
  const sliding = r.get('attention.sliding_window');
  const hasShort = tensors?.has('rope_factors_short.weight') === true;
  const hasLong = tensors?.has('rope_factors_long.weight') === true;
  if (hasShort !== hasLong) throw ggufUnsupported('a phi3 file with only one of rope_factors_short / rope_factors_long');
  const original = hasLong ? r.req('rope.scaling.original_context_length') : 0;
  const attentionFactor = r.get('rope.scaling.attn_factor') ?? 1;
  if (hasLong && !(Number.isInteger(original) && original >= 1)) throw ggufBad(`'${r.arch}.rope.scaling.original_context_length' must be a positive integer, got ${original}`);
  if (hasLong && !(Number.isFinite(attentionFactor) && attentionFactor > 0)) throw ggufBad(`'${r.arch}.rope.scaling.attn_factor' must be a positive number, got ${attentionFactor}`);
  const longRope: LongRopeScaling | undefined = hasLong ? { shortFactor: [], longFactor: [], factorsFromTensors: true, originalMaxPositions: original, attentionFactor } : undefined;
  return { ...base, rotaryDim, ...(longRope ? { longRope } : {}), ...(sliding !== undefined && sliding > 0 ? { slidingWindow: sliding } : {}) };
}

/** Phi-3 as the registry sees it: Llama's modules and checks, its fused tensors and rope. */
export const PHI3: Architecture = {
  ...LLAMA,
  family: 'phi3',
  modelTypes: ['phi3'],
  parseConfig: (c) => parsePhi3Config(c),
  gguf: {
    names: ['phi3'],
    toConfig: phi3GgufConfig,
    toHfName: (name) => phi3GgufName(name),
  },
  moduleOfTensor: (config, tensor) => (tensor === ROPE_FACTORS.short || tensor === ROPE_FACTORS.long ? LLAMA.embeddingModule : LLAMA.moduleOfTensor(config, tensor)),
  configFields: { ...LLAMA_CONFIG_FIELDS, maxPositions: 'max_position_embeddings' },
  expectedTensors: phi3Tensors,
  checkConfig(config, fail) {
    LLAMA.checkConfig!(config, fail);
    const c = phi3(config);
    if (!(Number.isInteger(c.rotaryDim) && c.rotaryDim >= 2 && c.rotaryDim % 2 === 0 && c.rotaryDim <= c.headDim)) fail('headDim', `partial_rotary_factor gives ${c.rotaryDim} rotary values of head_dim ${c.headDim}; lowbit needs an even number in [2, head_dim]`);
    // LongRoPE's numbers and sliding_window are checked where they are read (parsePhi3Config, phi3GgufConfig, the factor tensors)
  },
  create: (config, c) => new Phi3ForCausalLM(config, c.placement, c.weights, c.maxPositions, c.linear, c.options),
};

/** config.json of a Phi-3 (transformers' Phi3Config, hub configs with rope_scaling too). */
export function parsePhi3Config(c: ConfigJson): Phi3Config {
  const bad = (msg: string) => new LowbitError('MALFORMED_FILE', `config.json: ${msg}`, { file: 'config.json' });
  const hidden = num(c, 'hidden_size');
  const heads = num(c, 'num_attention_heads');
  const headDim = typeof c.head_dim === 'number' ? c.head_dim : hidden / heads;
  const rp = ropeParameters(c);
  const theta = typeof rp.rope_theta === 'number' ? rp.rope_theta : num(c, 'rope_theta', 10000);
  const partial = typeof rp.partial_rotary_factor === 'number' ? rp.partial_rotary_factor : num(c, 'partial_rotary_factor', 1);
  const maxPositions = num(c, 'max_position_embeddings', 4096);
  if (c.hidden_act !== undefined && c.hidden_act !== 'silu') throw new LowbitError('UNSUPPORTED_DTYPE', `config.json: phi3 with hidden_act '${String(c.hidden_act)}' is not supported (silu is)`, { file: 'config.json' });
  const slidingWindow = c.sliding_window == null ? undefined : num(c, 'sliding_window');
  if (slidingWindow !== undefined && !(Number.isInteger(slidingWindow) && slidingWindow >= 1)) throw bad(`sliding_window must be a positive integer, got ${slidingWindow}`);
  const ropeType = rp.rope_type ?? rp.type;
  let longRope: LongRopeScaling | undefined;
  if (ropeType === 'longrope' || ropeType === 'su' || ropeType === 'yarn') {
    // Phi3Config renames su and yarn to longrope; its original_max_position_embeddings (default
    // 4096) replaces the one in rope_parameters (standardize_rope_params).
    const factors = (key: string): number[] => {
      const v = rp[key];
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)) throw bad(`LongRoPE ${key} must be a list of positive numbers, got ${JSON.stringify(v)?.slice(0, 80)}`);
      // one per rotary frequency: int(head_dim * partial_rotary_factor) / 2
      const want = Math.floor(headDim * partial) / 2;
      if (Number.isInteger(want) && v.length !== want) throw bad(`LongRoPE ${key} needs ${want} values (rotary dims / 2), got ${v.length}`);
      return v as number[];
    };
    const original = num(c, 'original_max_position_embeddings', 4096);
    if (!(Number.isInteger(original) && original >= 1)) throw bad(`original_max_position_embeddings must be a positive integer, got ${original}`);
    const factor = typeof rp.factor === 'number' ? rp.factor : maxPositions / original;
    const attentionFactor = typeof rp.attention_factor === 'number' ? rp.attention_factor : factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original));
    if (!(Number.isFinite(attentionFactor) && attentionFactor > 0)) throw bad(`the LongRoPE attention factor must be a positive number, got ${attentionFactor}`);
    longRope = { shortFactor: factors('short_factor'), longFactor: factors('long_factor'), originalMaxPositions: original, attentionFactor };
  } else if (ropeType !== undefined && ropeType !== 'default') {
    throw new LowbitError('UNSUPPORTED_DTYPE', `config.json: phi3 rope type '${String(ropeType)}' is not supported (default and longrope are)`, { file: 'config.json' });
  }
  return {
    family: 'phi3', modelType: 'phi3', hiddenSize: hidden, numLayers: num(c, 'num_hidden_layers'), numHeads: heads, numKvHeads: num(c, 'num_key_value_heads', heads),
    headDim, intermediateSize: num(c, 'intermediate_size'), vocabSize: num(c, 'vocab_size'), maxPositions, normEps: num(c, 'rms_norm_eps', 1e-5), ropeTheta: theta,
    tieWordEmbeddings: c.tie_word_embeddings === true, qkvBias: false, oBias: false, activation: 'silu',
    ...tokenIds(c),
    rotaryDim: Math.floor(headDim * partial), ...(longRope ? { longRope } : {}), ...(slidingWindow !== undefined ? { slidingWindow } : {}),
  };
}
