/**
 * Helpers architectures read GGUF files with (as llama.cpp's convert_hf_to_gguf.py writes them):
 * `<arch>.*` metadata numbers to a DecoderConfig, and tables of llama.cpp tensor names.
 * Which `general.architecture` values exist and what each means is the architectures' business
 * (each declares `gguf` in its Architecture; gguf-model.ts asks the registry).
 */
import { LowbitError } from '../errors.js';
import type { GgufTensorInfo, GgufValue } from '../loading/gguf.js';
import type { FieldNames } from './architecture.js';
import type { DecoderConfig } from './config.js';

export type GgufMetadata = ReadonlyMap<string, GgufValue>;
export type GgufTensorShapes = ReadonlyMap<string, Pick<GgufTensorInfo, 'shape'>>;

export const ggufBad = (msg: string) => new LowbitError('MALFORMED_FILE', `GGUF: ${msg}`);
export const ggufUnsupported = (msg: string) => new LowbitError('UNSUPPORTED_DTYPE', `GGUF: ${msg}`);

/** A metadata value as a number (undefined when absent); a per-layer array is fine when every layer agrees. */
export function ggufNumber(v: GgufValue | undefined, key: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'object' && v !== null && typeof (v as ArrayLike<unknown>).length === 'number') {
    const a = Array.from(v as ArrayLike<unknown>, (x) => (typeof x === 'bigint' ? Number(x) : x));
    if (a.length > 0 && a.every((x) => typeof x === 'number' && x === a[0])) return a[0] as number;
    throw ggufUnsupported(`'${key}' varies per layer (${a.slice(0, 8).join(', ')}${a.length > 8 ? ', …' : ''}); only uniform layers are supported`);
  }
  throw ggufBad(`'${key}' must be a number, got ${JSON.stringify(v)}`);
}

/** `general.architecture`. */
export function ggufArchitectureName(metadata: GgufMetadata): string {
  const a = metadata.get('general.architecture');
  if (typeof a !== 'string') throw ggufBad(`'general.architecture' is missing`);
  return a;
}

/** Reads `<arch>.<key>` numbers of one file. */
export function ggufReader(metadata: GgufMetadata) {
  const a = ggufArchitectureName(metadata);
  const get = (k: string) => ggufNumber(metadata.get(`${a}.${k}`), `${a}.${k}`);
  const req = (k: string) => {
    const v = get(k);
    if (v === undefined) throw ggufBad(`'${a}.${k}' is missing`);
    return v;
  };
  return { arch: a, get, req, has: (k: string) => metadata.has(`${a}.${k}`), value: (k: string) => metadata.get(`${a}.${k}`) };
}

/**
 * The DecoderConfig numbers every llama.cpp decoder architecture writes with the same keys
 * (embedding_length, block_count, attention.head_count[_kv], key_length, feed_forward_length,
 * context_length, layer_norm_rms_epsilon, rope.freq_base, linear rope scaling, tokenizer ids),
 * the tied head from the tensor list (no output.weight) and biases (blk.0.attn_q.bias /
 * attn_output.bias). Architectures override what differs.
 */
export function ggufDecoderConfig(metadata: GgufMetadata, tensors: GgufTensorShapes | undefined, family: string): DecoderConfig {
  const { arch: a, get, req, value } = ggufReader(metadata);
  const hidden = req('embedding_length');
  const heads = req('attention.head_count');
  const kvHeads = get('attention.head_count_kv') ?? heads;
  const headDim = get('attention.key_length') ?? hidden / heads;
  const valueDim = get('attention.value_length') ?? headDim;
  if (valueDim !== headDim) throw ggufUnsupported(`key_length ${headDim} != value_length ${valueDim}`);
  const ropeDim = get('rope.dimension_count') ?? headDim;
  if (ropeDim !== headDim) throw ggufUnsupported(`partial rope (rope.dimension_count ${ropeDim} of head_dim ${headDim}) is not supported`);
  const tokens = metadata.get('tokenizer.ggml.tokens');
  const vocabSize =
    (tokens !== undefined && typeof tokens === 'object' ? (tokens as ArrayLike<unknown>).length : undefined) ?? get('vocab_size') ?? tensors?.get('token_embd.weight')?.shape[0];
  if (vocabSize === undefined) throw ggufBad('no vocabulary size (tokenizer.ggml.tokens, vocab_size or token_embd.weight)');
  const id = (k: string) => ggufNumber(metadata.get(`tokenizer.ggml.${k}`), `tokenizer.ggml.${k}`);
  const bos = id('bos_token_id');
  // llama.cpp stops at any end-of-generation token: eos, and eot / eom where a model has them.
  const eos = [...new Set([id('eos_token_id'), id('eot_token_id'), id('eom_token_id')].filter((x): x is number => x !== undefined))];
  const scaling = value('rope.scaling.type');
  if (scaling !== undefined && scaling !== 'none' && scaling !== 'linear') throw ggufUnsupported(`rope scaling '${String(scaling)}' is not supported (none, linear and llama3 rope_freqs are)`);
  // linear scaling: rope.scaling.type 'linear' + rope.scaling.factor, or the older rope.scale_linear
  const factor = get('rope.scaling.factor') ?? get('rope.scale_linear');
  const linear = (scaling === 'linear' || (scaling === undefined && value('rope.scale_linear') !== undefined)) && factor !== undefined && factor !== 1 && factor > 0 ? factor : undefined;
  return {
    family, modelType: a, hiddenSize: hidden, numLayers: req('block_count'), numHeads: heads, numKvHeads: kvHeads, headDim,
    intermediateSize: req('feed_forward_length'), vocabSize, maxPositions: get('context_length') ?? 2048, normEps: get('attention.layer_norm_rms_epsilon') ?? 1e-5,
    ropeTheta: get('rope.freq_base') ?? 10000, ...(linear !== undefined ? { ropeLinearFactor: linear } : {}),
    tieWordEmbeddings: tensors ? !tensors.has('output.weight') : false,
    qkvBias: tensors?.has('blk.0.attn_q.bias') ?? false, oBias: tensors?.has('blk.0.attn_output.bias') ?? false,
    activation: 'silu', ...(bos !== undefined ? { bosTokenId: bos } : {}), eosTokenIds: eos,
  };
}

/** The metadata keys of the DecoderConfig fields of a `general.architecture` (for messages). */
export function ggufFieldNames(arch: string): FieldNames {
  return {
    hiddenSize: `${arch}.embedding_length`, numLayers: `${arch}.block_count`, numHeads: `${arch}.attention.head_count`, numKvHeads: `${arch}.attention.head_count_kv`,
    headDim: `${arch}.attention.key_length`, intermediateSize: `${arch}.feed_forward_length`, vocabSize: 'tokenizer.ggml.tokens', maxPositions: `${arch}.context_length`,
    normEps: `${arch}.attention.layer_norm_rms_epsilon`, ropeTheta: `${arch}.rope.freq_base`, bosTokenId: 'tokenizer.ggml.bos_token_id', eosTokenIds: 'tokenizer.ggml.eos_token_id',
  };
}

/**
 * A llama.cpp → transformers tensor-name mapper from two tables: `top` for tensors outside the
 * blocks ('token_embd' -> 'model.embed_tokens') and `block` for `blk.N.*` ('attn_q' ->
 * 'self_attn.q_proj', placed under `${layerPrefix}.N`). Suffixes (.weight / .bias) carry over.
 */
export function ggufNameMapper(top: Readonly<Record<string, string>>, block: Readonly<Record<string, string>>, layerPrefix = 'model.layers'): (name: string) => string | undefined {
  return (name) => {
    const m = /^(?:blk\.(\d+)\.)?([a-z0-9_]+)\.(weight|bias)$/.exec(name);
    if (!m) return undefined;
    const [, layer, module, kind] = m;
    const hf = layer !== undefined ? Object.hasOwn(block, module!) ? `${layerPrefix}.${layer}.${block[module!]}` : undefined : Object.hasOwn(top, module!) ? top[module!] : undefined;
    return hf === undefined ? undefined : `${hf}.${kind}`;
  };
}
