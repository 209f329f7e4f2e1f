/**
 * fromPretrained for GGUF files (llama.cpp's converter output) of any registered architecture:
 * `general.architecture` picks the architecture (its `gguf` declaration, architecture.ts), whose
 * `toConfig` reads the `<arch>.*` metadata (config.json is not read), `toHfName` renames llama.cpp
 * tensors to transformers' names, and `fixTensor` undoes what the converter changed in stored
 * values (llama's Q/K row permutation, Gemma's norm + 1). A tensor with a fix is loaded dense
 * (or a Q8_0 kept 8-bit), fixed, and only then quantized: quantization mixes rows within a block.
 * A `rope_freqs` tensor (llama.cpp's Llama 3.1-style rope scaling) replaces the model's rope
 * inverse frequencies (RopeOverridable).
 */
import { ropeInvFreq } from '../tensor/rope.js';
import { LowbitError } from '../errors.js';
import { GgufFile, type GgufTensorInfo } from '../loading/gguf.js';
import { FORMATS } from '../formats/index.js';
import { ggufLoadedFormat, isQuantizableLinear, loadWeights, type LoadedWeight, type TensorMeta } from '../loading/load-weights.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import type { ModelSource } from '../loading/sources/types.js';
import type { FromPretrainedOptions, Placer } from './auto.js';
import { streamInto } from './stream-build.js';
import { threadedQuantizer } from './make-backends.js';
import { moduleSizes } from './module-sizes.js';
import { resolveMaxPositions, validateConfig, validateTensors } from './validate.js';
import type { CausalLM } from './causal-lm.js';
import type { DecoderConfig } from './config.js';
import type { GgufArchitecture, RopeOverridable } from './architecture.js';
import { architectureOf, ggufArchitecture } from './architectures.js';
import { ggufArchitectureName, ggufFieldNames, type GgufMetadata, type GgufTensorShapes } from './gguf-config.js';
import { denseToF32, quantizeDense } from './weights.js';

export { SUPPORTED_GGUF_ARCHITECTURES } from './architectures.js';

/** The `DecoderConfig` of a GGUF, from its metadata (and tensor list: tied head, biases, vocab), by its architecture. */
export function ggufToConfig(metadata: GgufMetadata, tensors?: GgufTensorShapes): DecoderConfig {
  return ggufArchitecture(ggufArchitectureName(metadata)).toConfig(metadata, tensors);
}

/** llama.cpp's tensor name -> transformers', for a config read from a GGUF; undefined when its architecture has no such tensor. */
export function ggufToHfName(name: string, config: DecoderConfig): string | undefined {
  return ggufArchitecture(config.modelType).toHfName(name, config);
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
  let metadata: GgufMetadata;
  let infos: ReadonlyMap<string, GgufTensorInfo>;
  try {
    metadata = gg.metadata;
    infos = gg.tensors;
  } finally {
    await gg.source.close?.();
  }
  let config: DecoderConfig;
  let gguf: GgufArchitecture;
  try {
    gguf = ggufArchitecture(ggufArchitectureName(metadata));
    config = gguf.toConfig(metadata, infos);
    validateConfig(config, file, ggufFieldNames(config.modelType));
  } catch (e) {
    if (e instanceof LowbitError) throw new LowbitError(e.code, e.message.startsWith(`${file}: `) ? e.message : `${file}: ${e.message}`, { cause: e, file });
    throw e;
  }
  const hfName = (n: string) => gguf.toHfName(n, config);
  // A tensor the architecture has no name for would be dropped: refused instead.
  const knows = (n: string) => hfName(n) !== undefined;
  const unknown = [...infos.keys()].filter((n) => n !== 'rope_freqs.weight' && !knows(n));
  if (unknown.length > 0) throw new LowbitError('UNSUPPORTED_DTYPE', `${file}: tensors lowbit does not know for a ${config.modelType} model: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}`, { file });

  // Tensors stored unlike transformers' (llama's permuted Q / K, Gemma's norm + 1)
  const fixOf = (name: string) => gguf.fixTensor?.(name, config);
  const quantization = options.quantizationConfig?.quantizeOnLoad();
  const skip = quantization?.skipModules ?? ['lm_head'];
  const quantizable = (t: TensorMeta, hf: string) => isQuantizableLinear({ ...t, name: hf }, skip);
  // Tensors with a fix arrive dense: they are fixed before quantizing.
  const shouldQuantize = (t: TensorMeta) => {
    const hf = hfName(t.name);
    return hf !== undefined && fixOf(t.name) === undefined && quantizable(t, hf);
  };
  // The tensors must be the ones the metadata implies (a block_count one short would drop a layer).
  validateTensors(config, [...infos.values()].flatMap((t) => {
    const hf = hfName(t.name);
    return hf === undefined ? [] : [{ name: hf, shape: t.shape }];
  }), file, ggufFieldNames(config.modelType));
  const maxPositions = resolveMaxPositions(options.maxPositions, config);
  // A ggml-quantized tensor is dequantized to f32 in wasm memory (and quantized from there when asked).
  const quantizing = options.quantizationConfig !== undefined;
  const largestTensorBytes = [...infos.values()].reduce((m, t) => Math.max(m, quantizing || !['F32', 'F16', 'BF16'].includes(t.ggmlType) ? t.shape.reduce((a, b) => a * b, 1) * 4 : 0), 0);
  // Sizes from the tensor infos: quantized as asked, F32 / F16 / BF16 as stored, Q8_0 kept 8-bit
  // (int8 codes + an f32 scale per 32), other ggml types widened to f32.
  const { placement, options: modelOptions } = await placer(config, async () => {
    const infoSizes = [...infos.values()].flatMap((t) => {
      const hf = hfName(t.name);
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
  // rope_freqs is no module's: kept aside; fixed tensors are fixed (then quantized) on their way in.
  const quantize4bit = quantization ? threadedQuantizer(placement, architectureOf(config).moduleNames(config)) : undefined;
  const toHf = (w: LoadedWeight): LoadedWeight | undefined => {
    if (w.name === 'rope_freqs.weight') {
      if (w.kind === 'dense') ropeFreqs = Float32Array.from(denseToF32(w));
      return undefined;
    }
    const hf = hfName(w.name)!;
    let out: LoadedWeight = w;
    const fix = fixOf(w.name);
    if (fix !== undefined) {
      if (w.kind !== 'dense' && w.kind !== 'blockwise8') throw new LowbitError('INTERNAL', `${file}: ${w.name} needs a fix but arrived as ${w.kind}`);
      const plain = fix(w);
      out = quantization && plain.kind === 'dense' && quantizable(plain, hf) ? quantizeDense(plain, quantization, quantize4bit) : plain;
    }
    return { ...out, name: hf };
  };
  const model = await streamInto(
    config,
    (weights) => architectureOf(config).create(config, { placement, weights, maxPositions, linear, options: modelOptions }),
    (o) => loadWeights(source, { file, ...(quantization ? { quantization } : {}), ...(quantize4bit ? { quantize4bit } : {}), shouldQuantize, ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(signal ? { signal } : {}), ...(options.allowNonFinite ? { allowNonFinite: true } : {}), ...o }),
    toHf,
    (n) => (n === 'rope_freqs.weight' ? undefined : hfName(n)),
  );
  try {
    if (ropeFreqs !== undefined) {
      // llama.cpp divides each rope angle by rope_freqs[i] (Llama 3.1-style scaling stored as a
      // tensor) and, for linear scaling, by the factor; DecoderConfig cannot say the first.
      const invFreq = ropeInvFreq(config.headDim, config.ropeTheta);
      if (ropeFreqs.length !== invFreq.length) throw new LowbitError('MALFORMED_FILE', `${file}: rope_freqs.weight has ${ropeFreqs.length} values, expected ${invFreq.length}`, { file });
      for (let i = 0; i < invFreq.length; i++) invFreq[i] = invFreq[i]! / ropeFreqs[i]! / (config.ropeLinearFactor ?? 1);
      const target = model as Partial<RopeOverridable>;
      if (typeof target.setRopeInvFreq !== 'function') throw new LowbitError('UNSUPPORTED_DTYPE', `${file}: a rope_freqs tensor is not supported for ${config.modelType} models`, { file });
      target.setRopeInvFreq(invFreq);
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
