/**
 * Llama-, Qwen2- and Qwen3-architecture GGUF files (llama.cpp's converter output) -> the registry's model.
 *
 * - Qwen2 / Qwen3 (`qwen2.*` / `qwen3.*` metadata) have the same tensor names plus the q/k/v
 *   biases (Qwen2) or attn_q_norm / attn_k_norm (Qwen3), and no Q/K permutation (llama.cpp runs
 *   their rope in NEOX order, transformers' own layout).
 * - The config comes from the `llama.*` metadata (ggufToConfig); config.json is not read.
 * - Tensors are renamed from llama.cpp's names to transformers' (ggufToHfName).
 * - llama.cpp's converter permutes the rows of attn_q / attn_k within each head for GGML's
 *   interleaved-pair rope (convert_hf_to_gguf.py, LlamaModel.permute:
 *   `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`, with
 *   n_head = head_count for Q and head_count_kv for K). unpermuteHeadRows inverts it, as
 *   transformers' GGUF loader does (modeling_gguf_pytorch_utils.py,
 *   LlamaTensorProcessor._reverse_permute_weights: reshape(n_head, dim, 2, cols).swapaxes(2, 1)).
 *   Quantization mixes rows within a block, so Q and K are loaded dense, un-permuted, and only
 *   then quantized. Q8_0 weights kept 8-bit (no quantization config) have whole blocks per row
 *   (ggml requires in % 32 == 0), so their rows move with their scales.
 */
import { ropeInvFreq } from '../tensor/rope.js';
import { LowbitError } from '../errors.js';
import { GgufFile, type GgufTensorInfo, type GgufValue } from '../loading/gguf.js';
import { permuteRowsBlockwise8, type Blockwise8Weight } from '../formats/blockwise8.js';
import { FORMATS } from '../formats/index.js';
import { ggufLoadedFormat, isQuantizableLinear, loadWeights, type DenseWeight, type LoadedWeight, type TensorMeta } from '../loading/load-weights.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import type { ModelSource } from '../loading/sources/types.js';
import type { FromPretrainedOptions, Placer } from './auto.js';
import { streamInto } from './stream-build.js';
import { moduleSizes } from './module-sizes.js';
import { ggufFields, resolveMaxPositions, validateConfig, validateTensors } from './validate.js';
import type { CausalLM } from './causal-lm.js';
import type { DecoderConfig } from './config.js';
import { architectureOf } from './architectures.js';
import { LlamaForCausalLM } from './llama.js';
import { denseToF32, quantizeDense } from './weights.js';

export const SUPPORTED_GGUF_ARCHITECTURES = ['llama', 'qwen2', 'qwen3'] as const;

/** llama.cpp's converter permutes the rows of attn_q / attn_k for GGML's interleaved rope only for these. */
const PERMUTES_QK: ReadonlySet<string> = new Set(['llama']);

type Metadata = ReadonlyMap<string, GgufValue>;
type TensorShapes = ReadonlyMap<string, Pick<GgufTensorInfo, 'shape'>>;

const bad = (msg: string) => new LowbitError('MALFORMED_FILE', `GGUF: ${msg}`);
const unsupported = (msg: string) => new LowbitError('UNSUPPORTED_DTYPE', `GGUF: ${msg}`);

function numberOf(v: GgufValue | undefined, key: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  // Per-layer arrays (head_count_kv of some models): fine when every layer agrees.
  if (typeof v === 'object' && v !== null && typeof (v as ArrayLike<unknown>).length === 'number') {
    const a = Array.from(v as ArrayLike<unknown>, (x) => (typeof x === 'bigint' ? Number(x) : x));
    if (a.length > 0 && a.every((x) => typeof x === 'number' && x === a[0])) return a[0] as number;
    throw unsupported(`'${key}' varies per layer (${a.slice(0, 8).join(', ')}${a.length > 8 ? ', …' : ''}); only uniform layers are supported`);
  }
  throw bad(`'${key}' must be a number, got ${JSON.stringify(v)}`);
}

function arch(metadata: Metadata): string {
  const a = metadata.get('general.architecture');
  if (typeof a !== 'string') throw bad(`'general.architecture' is missing`);
  return a;
}

/** Rope settings DecoderConfig cannot express. */
export interface GgufRopeExtra {
  /** Every inverse frequency is divided by this (rope.scaling.type 'linear'). */
  linearFactor?: number;
}

/** The `DecoderConfig` of a llama-architecture GGUF, from its metadata (and tensor list: tied head, biases, vocab). */
export function ggufToConfig(metadata: Metadata, tensors?: TensorShapes): DecoderConfig {
  const a = arch(metadata);
  if (!(SUPPORTED_GGUF_ARCHITECTURES as readonly string[]).includes(a)) {
    throw unsupported(`architecture '${a}' is not supported (supported: ${SUPPORTED_GGUF_ARCHITECTURES.join(', ')})`);
  }
  const get = (k: string) => numberOf(metadata.get(`${a}.${k}`), `${a}.${k}`);
  const req = (k: string) => {
    const v = get(k);
    if (v === undefined) throw bad(`'${a}.${k}' is missing`);
    return v;
  };
  const hidden = req('embedding_length');
  const heads = req('attention.head_count');
  const kvHeads = get('attention.head_count_kv') ?? heads;
  const headDim = get('attention.key_length') ?? hidden / heads;
  const valueDim = get('attention.value_length') ?? headDim;
  if (valueDim !== headDim) throw unsupported(`key_length ${headDim} != value_length ${valueDim}`);
  const ropeDim = get('rope.dimension_count') ?? headDim;
  if (ropeDim !== headDim) throw unsupported(`partial rope (rope.dimension_count ${ropeDim} of head_dim ${headDim}) is not supported`);
  const tokens = metadata.get('tokenizer.ggml.tokens');
  const vocabSize =
    (tokens !== undefined && typeof tokens === 'object' ? (tokens as ArrayLike<unknown>).length : undefined) ?? get('vocab_size') ?? tensors?.get('token_embd.weight')?.shape[0];
  if (vocabSize === undefined) throw bad('no vocabulary size (tokenizer.ggml.tokens, vocab_size or token_embd.weight)');
  const id = (k: string) => numberOf(metadata.get(`tokenizer.ggml.${k}`), `tokenizer.ggml.${k}`);
  const bos = id('bos_token_id');
  // llama.cpp stops at any end-of-generation token: eos, and eot / eom where a model has them.
  const eos = [...new Set([id('eos_token_id'), id('eot_token_id'), id('eom_token_id')].filter((x): x is number => x !== undefined))];
  const scaling = metadata.get(`${a}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== 'none' && scaling !== 'linear') throw unsupported(`rope scaling '${String(scaling)}' is not supported (none, linear and llama3 rope_freqs are)`);
  return {
    family: a === 'qwen3' ? 'qwen3' : 'llama', modelType: a, hiddenSize: hidden, numLayers: req('block_count'), numHeads: heads, numKvHeads: kvHeads, headDim,
    intermediateSize: req('feed_forward_length'), vocabSize, maxPositions: get('context_length') ?? 2048, normEps: get('attention.layer_norm_rms_epsilon') ?? 1e-5,
    ropeTheta: get('rope.freq_base') ?? 10000,
    tieWordEmbeddings: tensors ? !tensors.has('output.weight') : false,
    qkvBias: tensors?.has('blk.0.attn_q.bias') ?? false, oBias: tensors?.has('blk.0.attn_output.bias') ?? false,
    activation: 'silu', ...(bos !== undefined ? { bosTokenId: bos } : {}), eosTokenIds: eos,
  };
}

/** Rope settings a GGUF has beyond DecoderConfig: linear scaling (rope.scaling.type 'linear' or the older rope.scale_linear). */
export function ggufRopeExtra(metadata: Metadata): GgufRopeExtra {
  const a = arch(metadata);
  const type = metadata.get(`${a}.rope.scaling.type`);
  const factor = numberOf(metadata.get(`${a}.rope.scaling.factor`), `${a}.rope.scaling.factor`) ?? numberOf(metadata.get(`${a}.rope.scale_linear`), `${a}.rope.scale_linear`);
  if ((type === 'linear' || (type === undefined && metadata.has(`${a}.rope.scale_linear`))) && factor !== undefined && factor !== 1 && factor > 0) return { linearFactor: factor };
  return {};
}

const BLOCK: Record<string, string> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
  attn_q_norm: 'self_attn.q_norm',
  attn_k_norm: 'self_attn.k_norm',
};
const TOP: Record<string, string> = { token_embd: 'model.embed_tokens', output_norm: 'model.norm', output: 'lm_head' };

/** llama.cpp's tensor name -> transformers' ('blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj.weight'); undefined when unknown. */
export function ggufToHfName(name: string): string | undefined {
  const m = /^(?:blk\.(\d+)\.)?([a-z_]+)\.(weight|bias)$/.exec(name);
  if (!m) return undefined;
  const [, layer, module, kind] = m;
  if (layer !== undefined) {
    const hf = BLOCK[module!];
    return hf === undefined ? undefined : `model.layers.${layer}.${hf}.${kind}`;
  }
  const hf = TOP[module!];
  return hf === undefined ? undefined : `${hf}.${kind}`;
}

const PERMUTED = /^blk\.\d+\.attn_[qk]\.weight$/;

/**
 * Inverts llama.cpp's LlamaModel.permute on the rows of a [rows, cols] weight of `nHead` heads:
 * GGUF row h*D + 2r + i holds transformers' row h*D + i*(D/2) + r (D = rows / nHead, i in {0, 1}).
 * Works on the stored bytes, so any dense dtype; a block-wise 8-bit weight (GGUF Q8_0 kept 8-bit)
 * moves its codes and per-row blocks of absmax together.
 */
export function unpermuteHeadRows<W extends DenseWeight | Blockwise8Weight>(w: W, nHead: number): W {
  if (w.shape.length !== 2) throw bad(`${w.name}: expected a 2-D weight, got shape [${w.shape.join(', ')}]`);
  const [rows, cols] = w.shape as [number, number];
  if (rows % (2 * nHead) !== 0) throw bad(`${w.name}: ${rows} rows do not split into ${nHead} heads of an even size`);
  const d = rows / nHead;
  const half = d / 2;
  // transformers' row dst = h*D + i*half + r comes from GGUF row h*D + 2r + i.
  const srcRow = (dst: number) => {
    const h = Math.floor(dst / d);
    const i = Math.floor((dst % d) / half);
    return h * d + 2 * ((dst % d) % half) + i;
  };
  if (w.kind === 'blockwise8') {
    if (w.q.length !== rows * cols) throw bad(`${w.name}: ${w.q.length} codes do not hold [${rows}, ${cols}]`);
    return permuteRowsBlockwise8(w, srcRow) as W;
  }
  const rowBytes = w.data.length / rows;
  if (rowBytes !== Math.floor(rowBytes) || rowBytes % cols !== 0) throw bad(`${w.name}: ${w.data.length} bytes do not hold [${rows}, ${cols}]`);
  const out = new Uint8Array(w.data.length);
  for (let dst = 0; dst < rows; dst++) {
    const src = srcRow(dst);
    out.set(w.data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
  }
  return { ...w, data: out };
}

/** The GGUF file a source's weights are, or undefined when they are not a GGUF (or cannot be listed). */
export async function ggufWeightFile(source: ModelSource): Promise<string | undefined> {
  if (source.weightFile !== undefined) return /\.gguf$/i.test(source.weightFile) ? source.weightFile : undefined;
  try {
    const w = await listWeightFiles(source, { checkFiles: false });
    return w.format === 'gguf' ? w.files[0] : undefined;
  } catch (e) {
    // Without config.json the listing's error (no weights, several .gguf files) says more than a missing config.json.
    if (e instanceof LowbitError && !(await source.exists('config.json'))) throw e;
    return undefined;
  }
}

/** AutoModelForCausalLM.fromPretrained for a GGUF file: metadata -> config, llama.cpp tensors -> the architecture's model. */
export async function fromGguf(source: ModelSource, file: string, options: FromPretrainedOptions, placer: Placer): Promise<CausalLM> {
  const { signal } = options;
  const gg = await GgufFile.open(await source.open(file), signal === undefined ? {} : { signal });
  let metadata: Metadata;
  let infos: ReadonlyMap<string, GgufTensorInfo>;
  try {
    metadata = gg.metadata;
    infos = gg.tensors;
  } finally {
    await gg.source.close?.();
  }
  let config: DecoderConfig;
  try {
    config = ggufToConfig(metadata, infos);
    validateConfig(config, file, ggufFields(config.modelType));
  } catch (e) {
    if (e instanceof LowbitError) throw new LowbitError(e.code, e.message.startsWith(`${file}: `) ? e.message : `${file}: ${e.message}`, { cause: e, file });
    throw e;
  }
  const ropeExtra = ggufRopeExtra(metadata);
  // q/k norms are Qwen3's: in a llama file they would be dropped, so they are unknown there
  const knows = (n: string) => ggufToHfName(n) !== undefined && (config.family === 'qwen3' || !/\.attn_[qk]_norm\./.test(n));
  const unknown = [...infos.keys()].filter((n) => n !== 'rope_freqs.weight' && !knows(n));
  if (unknown.length > 0) throw new LowbitError('UNSUPPORTED_DTYPE', `${file}: tensors lowbit does not know for a ${config.modelType} model: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}`, { file });

  // Q and K rows to un-permute (llama only)
  const permuted = (name: string) => PERMUTES_QK.has(config.modelType) && PERMUTED.test(name);
  const quantization = options.quantizationConfig?.quantizeOnLoad();
  const skip = quantization?.skipModules ?? ['lm_head'];
  const quantizable = (t: TensorMeta, hf: string) => isQuantizableLinear({ ...t, name: hf }, skip);
  // Q and K arrive dense: their rows are un-permuted before quantizing.
  const shouldQuantize = (t: TensorMeta) => {
    const hf = ggufToHfName(t.name);
    return hf !== undefined && !permuted(t.name) && quantizable(t, hf);
  };
  // The tensors must be the ones the metadata implies (a block_count one short would drop a layer).
  validateTensors(config, [...infos.values()].flatMap((t) => {
    const hf = ggufToHfName(t.name);
    return hf === undefined ? [] : [{ name: hf, shape: t.shape }];
  }), file, ggufFields(config.modelType));
  const maxPositions = resolveMaxPositions(options.maxPositions, config);
  // A ggml-quantized tensor is dequantized to f32 in wasm memory (and quantized from there when asked).
  const quantizing = options.quantizationConfig !== undefined;
  const largestTensorBytes = [...infos.values()].reduce((m, t) => Math.max(m, quantizing || !['F32', 'F16', 'BF16'].includes(t.ggmlType) ? t.shape.reduce((a, b) => a * b, 1) * 4 : 0), 0);
  // Sizes from the tensor infos: quantized as asked, F32 / F16 / BF16 as stored, Q8_0 kept 8-bit
  // (int8 codes + an f32 scale per 32), other ggml types widened to f32.
  const { placement, options: modelOptions } = await placer(config, async () => {
    const infoSizes = [...infos.values()].flatMap((t) => {
      const hf = ggufToHfName(t.name);
      if (hf === undefined) return [];
      const n = t.shape.reduce((a, b) => a * b, 1);
      const meta = { name: hf, dtype: t.ggmlType === 'F16' || t.ggmlType === 'BF16' || t.ggmlType === 'F32' ? t.ggmlType : 'F32', shape: t.shape };
      const quantize = quantization !== undefined && quantizable(meta, hf) && t.shape.length === 2;
      const format = ggufLoadedFormat(t, quantization);
      const loadedBytes = format !== 'dense' ? FORMATS[format].estimateBytes(t.shape) : ['F32', 'F16', 'BF16'].includes(t.ggmlType) ? t.nBytes : n * 4;
      return [{ name: hf, shape: t.shape, bytes: t.nBytes, quantize, loadedBytes, format, ...(format === 'blockwise8' ? { label: 'q8_0' } : {}) }];
    });
    return moduleSizes(config, infoSizes, quantization, maxPositions);
  }, { maxPositions, largestTensorBytes });
  let ropeFreqs: Float32Array | undefined;
  const q = options.quantizationConfig;
  const linear = { int8Threshold: q?.llmInt8Threshold ?? 6, computeDtype: q?.bnb4bitComputeDtype ?? 'float32' } as const;
  // rope_freqs is no module's: kept aside; Q and K are un-permuted (then quantized) on their way in.
  const toHf = (w: LoadedWeight): LoadedWeight | undefined => {
    if (w.name === 'rope_freqs.weight') {
      if (w.kind === 'dense') ropeFreqs = Float32Array.from(denseToF32(w));
      return undefined;
    }
    const hf = ggufToHfName(w.name)!;
    let out: LoadedWeight = w;
    if (permuted(w.name) && (w.kind === 'dense' || w.kind === 'blockwise8')) {
      const nHead = w.name.includes('.attn_q.') ? config.numHeads : config.numKvHeads;
      const plain = unpermuteHeadRows(w, nHead);
      out = quantization && plain.kind === 'dense' && quantizable(plain, hf) ? quantizeDense(plain, quantization) : plain;
    }
    return { ...out, name: hf };
  };
  const model = await streamInto(
    config,
    (weights) => architectureOf(config).create(config, { placement, weights, maxPositions, linear, options: modelOptions }),
    (o) => loadWeights(source, { file, ...(quantization ? { quantization } : {}), shouldQuantize, ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(signal ? { signal } : {}), ...(options.allowNonFinite ? { allowNonFinite: true } : {}), ...o }),
    toHf,
    (n) => (n === 'rope_freqs.weight' ? undefined : ggufToHfName(n)),
  );
  try {
    if (ropeFreqs !== undefined || ropeExtra.linearFactor !== undefined) {
      // llama.cpp divides each rope angle by rope_freqs[i] (Llama 3.1-style scaling stored as a
      // tensor) and, for linear scaling, by the factor; DecoderConfig cannot say either.
      const invFreq = ropeInvFreq(config.headDim, config.ropeTheta);
      if (ropeFreqs !== undefined && ropeFreqs.length !== invFreq.length) throw new LowbitError('MALFORMED_FILE', `${file}: rope_freqs.weight has ${ropeFreqs.length} values, expected ${invFreq.length}`, { file });
      for (let i = 0; i < invFreq.length; i++) invFreq[i] = invFreq[i]! / (ropeFreqs?.[i] ?? 1) / (ropeExtra.linearFactor ?? 1);
      if (!(model instanceof LlamaForCausalLM)) throw new LowbitError('INTERNAL', `${file}: rope_freqs / linear rope scaling need a Llama-family model`);
      model.setRopeInvFreq(invFreq);
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
