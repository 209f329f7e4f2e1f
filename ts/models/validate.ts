/**
 * A model is checked as a whole before anything is allocated from it (issue 11):
 *
 * - validateConfig: every number of a DecoderConfig has the right type (integers where integers
 *   are meant) and sane bounds, and the numbers agree with each other (heads divide sizes).
 *   Bounds are far above any real decoder but low enough that nothing built from them can
 *   exhaust memory by itself (e.g. 4e9 layers, a 1e9 head_dim).
 * - validateTensors: the tensors a checkpoint holds are the ones the config implies — every
 *   layer's tensors with the shapes the config gives, no layer past num_layers, no empty
 *   dimension, vocab matching the embedding, each tensor once.
 * - checkRuntimeMemory: what the modules placed on the CPU need (weights, KV cache for
 *   maxPositions, activations of a full-length prompt, the largest tensor in flight while
 *   loading) fits wasm32's 4 GiB per instance; refused with OUT_OF_MEMORY otherwise, whether or
 *   not a maxMemory budget was given.
 *
 * Errors are MALFORMED_FILE naming the file and the field (or tensor); caller options that are
 * out of range (maxPositions) are INVALID_ARGUMENT.
 */
import { LowbitError } from '../errors.js';
import type { ExpectedTensor, FieldNames } from './architecture.js';
import { architectureOf } from './architectures.js';
import type { DecoderConfig } from './config.js';
import type { Device, ModuleSize } from './device-map.js';

export type { FieldNames } from './architecture.js';

/** Upper bounds of config fields (inclusive). */
export const MODEL_LIMITS = {
  layers: 1024,
  hiddenSize: 65536,
  heads: 4096,
  headDim: 4096,
  intermediateSize: 1 << 20,
  vocabSize: 1 << 22,
  /** A config's trained context length (the KV cache default is min(this, 4096)). */
  maxPositions: 1 << 24,
} as const;

/** Bytes one wasm32 instance can address: every CPU module of a model lives in one such memory. */
export const WASM32_MEMORY_BYTES = 4 * 2 ** 30;

/** config.json's names of a config's fields (from its architecture), for messages. */
export function configJsonFields(c: Pick<DecoderConfig, 'family' | 'modelType'>): FieldNames {
  return architectureOf(c).configFields;
}

const malformed = (file: string, msg: string) => new LowbitError('MALFORMED_FILE', `${file}: ${msg}`, { file });

/** Checks a config's numbers; throws MALFORMED_FILE naming the field (as the file spells it). */
export function validateConfig(c: DecoderConfig, file: string, names: FieldNames): void {
  const field = (k: keyof DecoderConfig) => `'${names[k] ?? k}'`;
  const int = (k: keyof DecoderConfig, max: number, min = 1) => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw malformed(file, `${field(k)} must be an integer in [${min}, ${max}], got ${show(v)}`);
    }
  };
  int('hiddenSize', MODEL_LIMITS.hiddenSize);
  int('numLayers', MODEL_LIMITS.layers);
  int('numHeads', MODEL_LIMITS.heads);
  int('numKvHeads', c.numHeads);
  if (c.numHeads % c.numKvHeads !== 0) throw malformed(file, `${field('numHeads')} (${c.numHeads}) is not a multiple of ${field('numKvHeads')} (${c.numKvHeads})`);
  int('headDim', MODEL_LIMITS.headDim);
  int('intermediateSize', MODEL_LIMITS.intermediateSize);
  int('vocabSize', MODEL_LIMITS.vocabSize);
  int('maxPositions', MODEL_LIMITS.maxPositions);
  if (!(Number.isFinite(c.normEps) && c.normEps > 0 && c.normEps < 1)) throw malformed(file, `${field('normEps')} must be a number in (0, 1), got ${c.normEps}`);
  architectureOf(c).checkConfig?.(c, (k, msg) => {
    throw malformed(file, `${field(k)} ${msg}`);
  });
  if (c.llama3) {
    for (const [k, v] of Object.entries(c.llama3)) {
      if (!(Number.isFinite(v) && v > 0)) throw malformed(file, `rope_scaling.${k} must be a positive number, got ${v}`);
    }
  }
  const tokenId = (k: 'bosTokenId' | 'eosTokenIds', v: unknown) => {
    if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) throw malformed(file, `${field(k)} must hold non-negative integer token ids, got ${String(v)}`);
  };
  if (c.bosTokenId !== undefined) tokenId('bosTokenId', c.bosTokenId);
  for (const id of c.eosTokenIds) tokenId('eosTokenIds', id);
}

/**
 * The KV-cache length a model gets: the caller's maxPositions (an integer >= 1; at most the architecture's maxPositionsLimit, e.g. GPT-2's
 * n_positions, the rows of its position table) or min(config, 4096).
 */
export function resolveMaxPositions(given: unknown, c: DecoderConfig): number {
  if (given === undefined) return Math.min(c.maxPositions, 4096);
  if (!(typeof given === 'number' && Number.isInteger(given) && given >= 1 && given <= MODEL_LIMITS.maxPositions)) {
    throw new LowbitError('INVALID_ARGUMENT', `maxPositions must be an integer in [1, ${MODEL_LIMITS.maxPositions}], got ${String(given)}`);
  }
  const arch = architectureOf(c);
  const limit = arch.maxPositionsLimit?.(c);
  if (limit !== undefined && given > limit) throw new LowbitError('INVALID_ARGUMENT', `maxPositions ${given} is past what ${c.modelType} can take (${arch.configFields.maxPositions ?? 'maxPositions'} ${limit}: its position table)`);
  return given;
}

/** A tensor as the checks see it: transformers' name, stored shape and dtype. */
export interface TensorShapeInfo {
  name: string;
  shape: readonly number[];
  /** Stored dtype: 'I8' is an LLM.int8 weight (checked by element count, as Conv1D ones are [out, in]). */
  dtype?: string;
  /** Stored bytes: a packed 4-bit weight (one with a quant_state) is checked by its byte count, whatever its storage dtype. */
  bytes?: number;
}

/** Every tensor a model of this config is built from, with its shape; `optional` ones may be absent. */
export function expectedTensors(c: DecoderConfig): Map<string, ExpectedTensor> {
  return architectureOf(c).expectedTensors(c);
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/**
 * Checks that the tensors (transformers' names; GPT-2's with or without 'transformer.') are the
 * ones the config implies. `fields` names the config fields in messages.
 */
export function validateTensors(c: DecoderConfig, tensors: Iterable<TensorShapeInfo>, file: string, names: FieldNames): void {
  const field = (k: keyof DecoderConfig) => `'${names[k] ?? k}'`;
  const arch = architectureOf(c);
  const expected = arch.expectedTensors(c);
  const seen = new Set<string>();
  const layerRe = arch.layerPattern;
  const all = [...tensors];
  // Pre-quantized 4-bit weights: '<name>.quant_state.bitsandbytes__nf4' (or fp4) next to them.
  const packed = new Set(all.flatMap((t) => {
    const i = t.name.indexOf('.quant_state.bitsandbytes__');
    return i < 0 ? [] : [t.name.slice(0, i)];
  }));
  for (const t of all) {
    const name = arch.canonicalName?.(t.name) ?? t.name;
    if (seen.has(name)) throw malformed(file, `tensor '${t.name}' is stored more than once (e.g. in two shards)`);
    seen.add(name);
    if (t.shape.some((d) => !(Number.isInteger(d) && d >= 1))) throw malformed(file, `tensor '${t.name}' has shape ${fmt(t.shape)}: every dimension must be at least 1`);
    const layer = layerRe.exec(name);
    if (layer && Number(layer[1]) >= c.numLayers) {
      throw malformed(file, `tensor '${t.name}' belongs to layer ${layer[1]}, but ${field('numLayers')} is ${c.numLayers}: the config and the tensors disagree`);
    }
    const want = expected.get(name);
    if (want === undefined) continue;
    const ok =
      packed.has(t.name) ? (t.bytes ?? numel(t.shape)) === Math.ceil(numel(want.shape) / 2) // packed 4-bit, any storage dtype
      : t.dtype === 'I8' ? numel(t.shape) === numel(want.shape) // LLM.int8 ([out, in], Conv1D too)
      : t.shape.length === want.shape.length && t.shape.every((d, i) => d === want.shape[i]);
    if (!ok) {
      const hint = name.endsWith('embed_tokens.weight') || name.endsWith('wte.weight') || name === 'lm_head.weight' ? ` (${field('vocabSize')} is ${c.vocabSize}, ${field('hiddenSize')} ${c.hiddenSize})` : '';
      throw malformed(file, `tensor '${t.name}' has shape ${fmt(t.shape)} (${t.dtype ?? 'dense'}), but the config implies ${fmt(want.shape)}${hint}`);
    }
  }
  for (const [name, want] of expected) {
    if (!want.optional && !seen.has(name)) {
      const layer = layerRe.exec(name);
      throw malformed(file, `tensor '${name}' is missing${layer ? ` (${field('numLayers')} is ${c.numLayers})` : ''}`);
    }
  }
}

/** Bytes of activations one forward of `rows` tokens holds at its peak on the CPU (f32). */
export function activationBytes(c: DecoderConfig, rows: number, maxPositions: number): number {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  // residual + norm + q/k/v/attn + MLP (gate, up, product) per row, the logits of the last
  // row, and one row of attention scores per head.
  const perRow = 3 * c.hiddenSize + 2 * q + 2 * kv + 3 * c.intermediateSize;
  return 4 * (rows * perRow + c.vocabSize * 2 + c.numHeads * maxPositions);
}

/**
 * Refuses with OUT_OF_MEMORY a model whose CPU part cannot fit one wasm32 memory (4 GiB per
 * instance). With `threads`, every thread's instance holds its slice of the weights (ts/backends/cpu);
 * the main thread's also holds the KV caches, the activations of a maxPositions-long prompt (last
 * row's logits) and the largest tensor being quantized or dequantized while loading (as f32). Sizes
 * come from moduleSizes (layer sizes include their cache).
 */
export function checkRuntimeMemory(c: DecoderConfig, sizes: readonly ModuleSize[], deviceOf: (module: string) => Device, maxPositions: number, largestTensorBytes: number, threads = 1): void {
  const kvHeads = architectureOf(c).kvHeads(c);
  const cachePerLayer = 2 * maxPositions * kvHeads * c.headDim * 4;
  let weights = 0;
  let caches = 0;
  for (const m of sizes) {
    if (deviceOf(m.name) !== 'cpu') continue;
    const layer = /\.(layers|h)\.\d+$/.test(m.name);
    if (layer) caches += cachePerLayer;
    const bytes = m.tiedTo !== undefined ? (deviceOf(m.tiedTo) === 'cpu' ? 0 : sizes.find((s) => s.name === m.tiedTo)?.bytes ?? 0) : m.bytes - (layer ? cachePerLayer : 0);
    weights += bytes;
  }
  if (weights + caches === 0) return;
  const n = Math.max(1, Math.floor(threads));
  const need = Math.ceil(weights / n) + caches + activationBytes(c, maxPositions, maxPositions) + largestTensorBytes;
  if (need > WASM32_MEMORY_BYTES) {
    const gib = (x: number) => `${(x / 2 ** 30).toFixed(2)} GiB`;
    throw new LowbitError(
      'OUT_OF_MEMORY',
      `the model's CPU part needs about ${gib(need)} in one wasm32 instance (weights ${gib(weights)}${n > 1 ? ` split over ${n} threads` : ''}, KV cache ${gib(caches)} for maxPositions ${maxPositions}, plus activations and loading), over the ${gib(WASM32_MEMORY_BYTES)} it can address: lower maxPositions, quantize (quantizationConfig), use more threads, or place modules on the GPU`,
    );
  }
}

/** A value for an error message: JSON where it can be (bigints, cycles and functions too), cut to 200 characters. */
export function show(v: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
  } catch {
    text = undefined;
  }
  text ??= String(v);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** The type name of a value, for messages. */
export function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/**
 * fromPretrained's options, checked before anything is read: a plain-object quantizationConfig
 * becomes a BitsAndBytesConfig (its constructor checks the fields); wrong types are INVALID_ARGUMENT.
 */
export function checkLoadOptions<T extends { quantizationConfig?: unknown; signal?: unknown; onProgress?: unknown; maxPositions?: unknown; tokenizer?: unknown }>(o: T, toBnb: (plain: object) => T['quantizationConfig']): T {
  if (typeof o !== 'object' || o === null) throw new LowbitError('INVALID_ARGUMENT', `fromPretrained options must be an object, got ${typeName(o)}`);
  checkSignal(o.signal, 'fromPretrained');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new LowbitError('INVALID_ARGUMENT', `onProgress must be a function, got ${typeName(o.onProgress)}`);
  if (o.tokenizer !== undefined && typeof o.tokenizer !== 'boolean') throw new LowbitError('INVALID_ARGUMENT', `fromPretrained's tokenizer option must be true or false, got ${typeName(o.tokenizer)}`);
  if (o.maxPositions !== undefined && !(typeof o.maxPositions === 'number' && Number.isInteger(o.maxPositions) && o.maxPositions >= 1 && o.maxPositions <= MODEL_LIMITS.maxPositions)) {
    throw new LowbitError('INVALID_ARGUMENT', `maxPositions must be an integer in [1, ${MODEL_LIMITS.maxPositions}], got ${String(o.maxPositions)}`);
  }
  const b = (o as { backend?: unknown }).backend;
  if (b !== undefined && !(typeof b === 'object' && b !== null && typeof (b as { device?: unknown }).device === 'string' && typeof (b as { linear?: unknown }).linear === 'function')) {
    throw new LowbitError('INVALID_ARGUMENT', `backend must be a lowbit Backend (CpuBackend.create(), WebGpuBackend.create()), got ${typeName(b)}`);
  }
  const q = o.quantizationConfig;
  if (q === undefined || q === null) return o;
  if (typeof q !== 'object') throw new LowbitError('INVALID_ARGUMENT', `quantizationConfig must be a BitsAndBytesConfig, got ${typeName(q)}`);
  if (typeof (q as { quantizeOnLoad?: unknown }).quantizeOnLoad === 'function') return o;
  return { ...o, quantizationConfig: toBnb(q) };
}

/** An AbortSignal or undefined; anything else is INVALID_ARGUMENT. */
export function checkSignal(s: unknown, where: string): void {
  if (s === undefined) return;
  const ok = typeof s === 'object' && s !== null && typeof (s as AbortSignal).aborted === 'boolean' && typeof (s as AbortSignal).addEventListener === 'function';
  if (!ok) throw new LowbitError('INVALID_ARGUMENT', `${where}: signal must be an AbortSignal, got ${typeName(s)}`);
}
