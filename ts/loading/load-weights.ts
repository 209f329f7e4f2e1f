/**
 * Streams a checkpoint's tensors one at a time and quantizes them while they stream in, so a load
 * holds about the quantized model plus the tensor in flight — never the whole checkpoint.
 *
 *   for await (const w of loadWeights(await resolveSource('org/model'), { quantization: { quantType: 'nf4', doubleQuant: true } })) …
 *
 * Pre-quantized bitsandbytes checkpoints come out as they were saved (4-bit or LLM.int8 weights,
 * bit for bit); plain fp32/fp16/bf16 checkpoints are quantized as transformers + bitsandbytes
 * would: every 2-D `.weight` of a linear layer, except embeddings and `lm_head` (transformers'
 * default `llm_int8_skip_modules`).
 */
import { LowbitError } from '../errors.js';
import { quantize4bit, type Quantize4bitOptions, type Quantized4bit } from '../quant/blockwise4.js';
import { int8VectorwiseQuant } from '../quant/int8.js';
import type { QuantType4 } from '../quant/quant-state.js';
import { fromHalf, toHalf, type FloatInput } from '../tensor/dtypes.js';
import { q8_0ToBlockwise8 } from '../formats/blockwise8.js';
import type { BnbWeight, DenseWeight, FormatKind, LoadedWeight } from '../formats/index.js';
import { bnbAuxiliaryTensor, findBnbWeights, readBnb4bit, readBnb8bit } from './bnb-checkpoint.js';
import { dequantizeGguf, GgufFile, type GgufTensorInfo } from './gguf.js';
import { asAbortError } from '../runtime/scheduling.js';
import { checkFiniteWeight } from './finite-check.js';
import { SafetensorsFile, type SafetensorsDType, type SafetensorsTensorInfo } from './safetensors.js';
import { ProgressTracker, type ProgressCallback } from './sources/progress.js';
import { listWeightFiles } from './sources/sharding.js';
import type { ModelSource } from './sources/types.js';

// The weights a load yields are the formats' (ts/formats): re-exported for existing importers.
export type { DenseWeight, LoadedWeight } from '../formats/index.js';
export { weightBytes } from '../formats/index.js';

/** How `loadWeights` quantizes the linear weights while they stream in. */
export interface QuantizeOnLoad {
  /** 'nf4' | 'fp4' | 'int4' (4-bit block-wise) or 'int8' (LLM.int8 vector-wise). */
  quantType: QuantType4 | 'int8';
  /** 4-bit blocksize (default 64). */
  blocksize?: number;
  /** Double quantization of the 4-bit absmax (default false). */
  doubleQuant?: boolean;
  /** Module names (or name prefixes / last components) left unquantized; default ['lm_head'] (GGUF: ['output']). */
  skipModules?: string[];
}

/** Options of `loadWeights`. */
export interface LoadWeightsOptions {
  quantization?: QuantizeOnLoad;
  /**
   * Runs 4-bit quantization instead of quantize4bit() — the same bytes, faster (fromPretrained
   * passes CpuBackend.quantize4bit when the model's CPU backend has worker threads).
   */
  quantize4bit?: (input: FloatInput, options: Quantize4bitOptions) => Quantized4bit;
  /** Overrides which tensors are quantized (default: see isQuantizableLinear). */
  shouldQuantize?: (info: TensorMeta) => boolean;
  /**
   * GGUF without `quantization`: Q8_0 linear weights stay 8-bit as `{ kind: 'blockwise8' }` (int8
   * code, blocks of 32, exact) instead of being dequantized to f32. Default true.
   */
  keepQ8_0?: boolean;
  /** The weights file, when the source holds several. */
  file?: string;
  onProgress?: ProgressCallback;
  /**
   * Called once the headers are read, before the first tensor: the names of every tensor this
   * load will yield (so a model can tell when each module has all of its tensors).
   */
  onTensors?: (names: string[]) => void;
  /**
   * Read order: tensors by this key, then by file offset, within each file (default: file
   * offset). A model passes its module index, so that each module's tensors come together
   * whatever order the file has them in.
   */
  orderBy?: (name: string) => number;
  /**
   * Load weights holding NaN / Inf (default false: NON_FINITE naming the tensor, since such a
   * model computes NaN logits; see finite-check.ts). 4-bit quantization then keeps them as
   * bitsandbytes does; LLM.int8 always refuses them.
   */
  allowNonFinite?: boolean;
  /**
   * Which tensors are Conv1D weights stored [in, out] (GPT-2): when quantized they are transposed
   * first, so the quantized weight is [out, in] as bitsandbytes' Linear4bit / Linear8bitLt hold it
   * and saveBnbCheckpoint writes what transformers saves. Default: GPT-2's c_attn / c_proj / c_fc
   * weights when the source's config.json says model_type 'gpt2'.
   */
  conv1d?: (name: string) => boolean;
  /**
   * Plain (not pre-quantized) tensors not to read at all (safetensors): a model passes the
   * tensors of no module, so a file padded with junk tensors costs no reads.
   */
  skip?: (name: string) => boolean;
  /** Least ms between two progress events (default 100). */
  progressThrottleMs?: number;
  signal?: AbortSignal;
}

/** What the quantization choice looks at. */
export type TensorMeta = Pick<SafetensorsTensorInfo, 'name' | 'dtype' | 'shape'>;

// transformers names, then llama.cpp's GGUF names (token_embd).
const EMBEDDING = /(^|\.)(embed_tokens|embed_positions|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|shared|token_embd)\.weight$/;

/** Whether a module is named by a skip entry: the exact name, a prefix ("model.layers.0"), or its last component ("lm_head"). */
export function moduleMatches(module: string, skip: readonly string[]): boolean {
  return skip.some((s) => module === s || module.startsWith(s + '.') || module.endsWith('.' + s));
}

/** transformers' choice of bitsandbytes modules, by name: 2-D float `.weight`s that are not embeddings or skipped. */
export function isQuantizableLinear(info: TensorMeta, skipModules: readonly string[] = ['lm_head']): boolean {
  if (info.shape.length !== 2 || !['F32', 'F16', 'BF16'].includes(info.dtype) || !info.name.endsWith('.weight')) return false;
  if (EMBEDDING.test(info.name)) return false;
  return !moduleMatches(info.name.slice(0, -'.weight'.length), skipModules);
}

function halfOrFloat(info: TensorMeta, bytes: Uint8Array): Float32Array | { dtype: 'float16' | 'bfloat16'; data: Uint16Array } {
  // A read returns a fresh buffer, but make sure the view is aligned.
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (info.dtype === 'F32') return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return { dtype: info.dtype === 'F16' ? 'float16' : 'bfloat16', data: new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2) };
}

function quantizeTensor(info: TensorMeta, bytes: Uint8Array, q: QuantizeOnLoad, file: string, allowNonFinite = false, q4: LoadWeightsOptions['quantize4bit'] = quantize4bit): BnbWeight {
  const x = halfOrFloat(info, bytes);
  const shape = info.shape as [number, number];
  try {
    if (q.quantType === 'int8') {
      // Linear8bitLt quantizes float16 weights (Int8Params casts them first).
      const h = x instanceof Float32Array ? toHalf(x, 'float16') : x.dtype === 'float16' ? x : toHalf(fromHalf(x), 'float16');
      const r = int8VectorwiseQuant(h, { shape });
      return { kind: 'int8', name: info.name, CB: r.CB, SCB: r.SCB, shape };
    }
    const { packed, quantState } = q4(x, { quantType: q.quantType, blocksize: q.blocksize ?? 64, compressStatistics: q.doubleQuant ?? false, shape, allowNonFinite });
    return { kind: '4bit', name: info.name, packed, quantState };
  } catch (e) {
    if (e instanceof LowbitError) throw new LowbitError(e.code, `${file}: ${info.name}: ${e.message}`, { cause: e, file, ...(e.index === undefined ? {} : { index: e.index }) });
    throw e;
  }
}

/**
 * Yields every tensor of the checkpoint, quantized where asked, in file order. An abort
 * (`signal`) throws LowbitError('ABORTED') with the signal's reason as `cause`.
 */
export async function* loadWeights(source: ModelSource, options: LoadWeightsOptions = {}): AsyncGenerator<LoadedWeight> {
  try {
    yield* loadWeightsNow(source, options);
  } catch (e) {
    throw asAbortError(e, options.signal, 'loadWeights');
  }
}

async function* loadWeightsNow(source: ModelSource, options: LoadWeightsOptions): AsyncGenerator<LoadedWeight> {
  const { quantization, signal } = options;
  if (quantization && !['nf4', 'fp4', 'int4', 'int8'].includes(quantization.quantType)) {
    throw new LowbitError('UNSUPPORTED_QUANT_TYPE', `quantType must be 'nf4', 'fp4', 'int4' or 'int8', got '${quantization.quantType}'`);
  }
  const weights = await listWeightFiles(source, options.file === undefined ? {} : { file: options.file });
  const skip = quantization?.skipModules ?? (weights.format === 'gguf' ? ['output'] : ['lm_head']);
  const conv1d = options.conv1d ?? (quantization && weights.format !== 'gguf' ? await conv1dOf(source) : () => false);
  const shouldQuantize = options.shouldQuantize ?? ((info: TensorMeta) => isQuantizableLinear(info, skip));
  if (weights.format === 'gguf') {
    yield* loadGguf(source, weights.files[0]!, quantization, shouldQuantize, options);
    return;
  }
  const tracker = new ProgressTracker(options.onProgress, { throttleMs: options.progressThrottleMs ?? 100, phase: 'metadata' });
  // Headers first (a few KB each): totals are known before the first tensor is read.
  const files: SafetensorsFile[] = [];
  const bnb: ReturnType<typeof findBnbWeights>[] = [];
  const yielded: string[] = [];
  try {
    for (const name of weights.files) {
      const st = await SafetensorsFile.open(await source.open(name), signal);
      files.push(st);
      const found = findBnbWeights(st);
      bnb.push(found);
      const pre = new Set([...found.fourBit, ...found.eightBit]);
      for (const t of st.tensors.keys()) if (pre.has(t) || (!bnbAuxiliaryTensor(t) && !options.skip?.(t))) yielded.push(t);
      let bytes = 0;
      let tensors = 0;
      for (const t of st.tensors.values()) {
        bytes += t.end - t.start;
        if (!bnbAuxiliaryTensor(t.name)) tensors++;
      }
      tracker.addTotal({ bytes, tensors });
    }
    tracker.phase('weights');
    options.onTensors?.(yielded);
    for (const [f, st] of files.entries()) {
      const found = bnb[f]!;
      const fourBit = new Set(found.fourBit);
      const eightBit = new Set(found.eightBit);
      const pre = new Set([...fourBit, ...eightBit]);
      const order = [...st.tensors.values()].sort(byKeyThen(options.orderBy, (t) => t.start));
      const skipped = (t: SafetensorsTensorInfo) => !pre.has(t.name) && !bnbAuxiliaryTensor(t.name) && options.skip?.(t.name) === true;
      const plain = (t: SafetensorsTensorInfo) => !pre.has(t.name) && !bnbAuxiliaryTensor(t.name) && !skipped(t);
      // One read ahead: the next plain tensor streams in while this one is quantized (the
      // quantizer runs synchronously, file reads do not), at the cost of one more tensor in memory.
      const ahead = new Map<string, Promise<Uint8Array>>();
      // nextPlain[i]: the first plain tensor at or after i (one pass from the end, so a load stays
      // linear in the number of tensors; searching the rest of the order per tensor was quadratic).
      const nextPlain = new Int32Array(order.length + 1).fill(-1);
      for (let i = order.length - 1; i >= 0; i--) nextPlain[i] = plain(order[i]!) ? i : nextPlain[i + 1]!;
      const prefetch = (from: number) => {
        const k = nextPlain[from]!;
        const next = k < 0 ? undefined : order[k]!;
        if (next && !ahead.has(next.name)) {
          const p = st.read(next.name, signal);
          p.catch(() => {}); // awaited (and its error raised) when its turn comes
          ahead.set(next.name, p);
        }
      };
      for (const [i, info] of order.entries()) {
        signal?.throwIfAborted();
        if (bnbAuxiliaryTensor(info.name) && !pre.has(info.name)) {
          tracker.add({ bytes: info.end - info.start, file: st.name });
          continue;
        }
        if (skipped(info)) {
          tracker.add({ bytes: info.end - info.start, tensors: 1, file: st.name });
          continue;
        }
        let out: LoadedWeight;
        let bytesRead = info.end - info.start;
        if (fourBit.has(info.name)) {
          out = await readBnb4bit(st, info.name, signal, found.stateKeys.get(info.name));
          bytesRead = 0; // counted with the auxiliary tensors
        } else if (eightBit.has(info.name)) {
          out = await readBnb8bit(st, info.name, signal);
        } else {
          const data = await (ahead.get(info.name) ?? st.read(info.name, signal));
          ahead.delete(info.name);
          prefetch(i + 1);
          if (quantization && shouldQuantize(info)) {
            // A Conv1D weight ([in, out]) is quantized as the [out, in] weight bitsandbytes holds.
            const t = conv1d(info.name) && info.shape.length === 2 ? transposed(info, data) : { info, data };
            out = quantizeTensor(t.info, t.data, quantization, st.name, options.allowNonFinite, options.quantize4bit);
          } else out = { kind: 'dense', name: info.name, dtype: info.dtype, shape: info.shape, data };
        }
        if (!options.allowNonFinite) checkFiniteWeight(out, st.name);
        tracker.add({ bytes: bytesRead, tensors: 1, file: st.name });
        yield out;
      }
    }
    tracker.finish();
  } finally {
    for (const st of files) await st.source.close?.();
  }
}

/** GPT-2's Conv1D weight names, stored [in, out]. */
export const GPT2_CONV1D = /(^|\.)h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;

/** The Conv1D test for a source: GPT-2's names when its config.json says model_type 'gpt2'. */
async function conv1dOf(source: ModelSource): Promise<(name: string) => boolean> {
  if (!(await source.exists('config.json'))) return () => false;
  let c: unknown;
  try {
    c = await source.readJson<unknown>('config.json');
  } catch {
    return () => false; // the weights do not need it; a model load reports a bad config.json itself
  }
  const gpt2 = typeof c === 'object' && c !== null && (c as { model_type?: unknown }).model_type === 'gpt2';
  return gpt2 ? (name) => GPT2_CONV1D.test(name) : () => false;
}

/** A 2-D float tensor's bytes transposed: [r, c] -> [c, r]. */
function transposed(info: TensorMeta, data: Uint8Array): { info: TensorMeta; data: Uint8Array } {
  const [r, c] = info.shape as [number, number];
  const size = info.dtype === 'F32' ? 4 : 2;
  const out = new Uint8Array(data.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.set(data.subarray((i * c + j) * size, (i * c + j + 1) * size), (j * r + i) * size);
  return { info: { ...info, shape: [c, r] }, data: out };
}

/** A comparator: by `key` of the name (when given), then by `offset`. */
function byKeyThen<T extends { name: string }>(key: ((name: string) => number) | undefined, offset: (t: T) => number): (a: T, b: T) => number {
  if (key === undefined) return (a, b) => offset(a) - offset(b);
  // Keys are computed once per name, not once per comparison.
  const keys = new Map<string, number>();
  const k = (name: string) => {
    let v = keys.get(name);
    if (v === undefined) keys.set(name, (v = key(name)));
    return v;
  };
  return (a, b) => k(a.name) - k(b.name) || offset(a) - offset(b);
}

/**
 * The format a GGUF tensor is loaded as when it is not quantized on load: Q8_0 linear weights
 * stay block-wise 8-bit (unless `keepQ8_0` is false), everything else is dense (ggml-quantized
 * types widened to f32). What placement checks and sizes before anything is read.
 */
export function ggufLoadedFormat(t: Pick<GgufTensorInfo, 'name' | 'ggmlType' | 'shape'>, quantization: QuantizeOnLoad | undefined, keepQ8_0 = true): FormatKind {
  // A linear weight by name and shape (embeddings are not; lm_head / output is).
  return !quantization && keepQ8_0 && t.ggmlType === 'Q8_0' && isQuantizableLinear({ name: t.name, dtype: 'F32', shape: t.shape }, []) ? 'blockwise8' : 'dense';
}

const GGUF_PLAIN: Record<string, SafetensorsDType> = { F32: 'F32', F16: 'F16', BF16: 'BF16' };

/**
 * GGUF: F32/F16/BF16 tensors come out as they are (or quantized); ggml-quantized tensors are
 * dequantized to f32 first and then quantized as asked (or kept as f32) — except, without
 * `quantization`, Q8_0 linear weights, which stay 8-bit (`blockwise8`, bit-exact; `keepQ8_0`).
 * Tensors keep llama.cpp's names and layout (llama.cpp permutes the rows of Q and K for its
 * rope; model code undoes it).
 */
async function* loadGguf(source: ModelSource, file: string, quantization: QuantizeOnLoad | undefined, shouldQuantize: (info: TensorMeta) => boolean, options: LoadWeightsOptions): AsyncGenerator<LoadedWeight> {
  const { signal } = options;
  const tracker = new ProgressTracker(options.onProgress, { throttleMs: options.progressThrottleMs ?? 100, phase: 'metadata' });
  const gg = await GgufFile.open(await source.open(file), signal === undefined ? {} : { signal });
  try {
    const order = [...gg.tensors.values()].sort(byKeyThen(options.orderBy, (t) => t.offset));
    tracker.addTotal({ bytes: order.reduce((a, t) => a + t.nBytes, 0), tensors: order.length });
    tracker.phase('weights', file);
    options.onTensors?.(order.map((t) => t.name));
    let next = order.length > 0 ? gg.read(order[0]!.name, signal) : undefined;
    for (const [i, t] of order.entries()) {
      signal?.throwIfAborted();
      const data = await next!;
      next = i + 1 < order.length ? gg.read(order[i + 1]!.name, signal) : undefined;
      next?.catch(() => {});
      const plain = GGUF_PLAIN[t.ggmlType];
      if (ggufLoadedFormat(t, quantization, options.keepQ8_0) === 'blockwise8') {
        const out = q8_0ToBlockwise8(t.name, t.shape, data, gg.name);
        if (!options.allowNonFinite) checkFiniteWeight(out, gg.name);
        tracker.add({ bytes: t.nBytes, tensors: 1, file });
        yield out;
        continue;
      }
      let meta: TensorMeta;
      let bytes: Uint8Array;
      if (plain) {
        meta = { name: t.name, dtype: plain, shape: t.shape };
        bytes = data;
      } else {
        const f = dequantizeGguf(t, data, 'float32', gg.name);
        meta = { name: t.name, dtype: 'F32', shape: t.shape };
        bytes = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
      }
      const out: LoadedWeight = quantization && shouldQuantize(meta) ? quantizeTensor(meta, bytes, quantization, gg.name, options.allowNonFinite, options.quantize4bit) : { kind: 'dense', ...meta, data: bytes };
      if (!options.allowNonFinite) checkFiniteWeight(out, gg.name);
      tracker.add({ bytes: t.nBytes, tensors: 1, file });
      yield out;
    }
    tracker.finish();
  } finally {
    await gg.source.close?.();
  }
}
