/**
 * Bytes each module will take on its device, from tensor metadata (safetensors headers, GGUF
 * tensor infos) and the quantization choice, before any weight is read: packed 4-bit codes +
 * f32 absmax per block, LLM.int8 codes + f32 SCB per row, dense tensors as stored, and each
 * layer's f32 KV cache. Backends add a little (row padding, split parts); 'auto' budgets are
 * estimates at that precision.
 */
import { estimateBytesOn } from '../formats/capabilities.js';
import { FORMATS, type FormatKind } from '../formats/index.js';
import type { QuantizeOnLoad } from '../loading/load-weights.js';
import { SafetensorsFile } from '../loading/safetensors.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import type { ModelSource } from '../loading/sources/types.js';
import type { DecoderConfig } from './config.js';
import { architectureOf } from './architectures.js';
import { moduleNames, moduleOfTensor, type ModuleSize } from './device-map.js';

/** A tensor as a size estimate sees it: how it is stored and what it will become. */
export interface TensorSizeInfo {
  /** transformers' name */
  name: string;
  shape: readonly number[];
  /** bytes as stored */
  bytes: number;
  /** quantized on load (4-bit or int8 per `quantization`) */
  quantize: boolean;
  /** bytes once loaded when not quantized and not as stored (GGUF ggml types widened to f32, Q8_0 kept 8-bit) */
  loadedBytes?: number;
  /** The format it loads as when not quantized on load (default dense; GGUF Q8_0 linears: blockwise8). */
  format?: FormatKind;
  /** A label for messages (e.g. 'q8_0'). */
  label?: string;
  /** stored dtype (safetensors), for the shape checks of pre-quantized weights */
  dtype?: string;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** The format quantize-on-load gives. */
function quantizedFormat(q: QuantizeOnLoad): FormatKind {
  return q.quantType === 'int8' ? 'int8' : '4bit';
}

/** Bytes of one weight after quantize-on-load. */
export function quantizedBytes(shape: readonly number[], q: QuantizeOnLoad): number {
  return FORMATS[quantizedFormat(q)].estimateBytes(shape, { blocksize: q.blocksize ?? 64 });
}

/**
 * Per module, in forward order; a tied lm_head has no bytes of its own (tiedTo names its table).
 * Each module also says which weight formats it holds and, where the capability table converts
 * one of them on the GPU (GGUF Q8_0 -> f32), its bytes there.
 */
export function moduleSizes(config: DecoderConfig, tensors: Iterable<TensorSizeInfo>, quantization: QuantizeOnLoad | undefined, maxPositions: number): ModuleSize[] {
  const names = moduleNames(config);
  const bytes = new Map(names.map((n) => [n, 0]));
  const gpuBytes = new Map(names.map((n) => [n, 0]));
  const formats = new Map(names.map((n) => [n, new Map<string, { kind: FormatKind; label: string }>()]));
  for (const t of tensors) {
    const m = moduleOfTensor(config, t.name);
    if (m === undefined || !bytes.has(m)) continue;
    const quantized = t.quantize && quantization !== undefined;
    const kind = quantized ? quantizedFormat(quantization) : t.format ?? 'dense';
    const b = quantized ? quantizedBytes(t.shape, quantization) : t.loadedBytes ?? t.bytes;
    // what the GPU holds: the same, unless the table converts this format there
    const g = kind === 'dense' || quantized ? b : estimateBytesOn(kind, 'webgpu', t.shape);
    bytes.set(m, bytes.get(m)! + b);
    gpuBytes.set(m, gpuBytes.get(m)! + g);
    const label = t.label ?? (quantized ? (quantization.quantType === 'int8' ? 'int8' : `4bit-${quantization.quantType}`) : kind);
    formats.get(m)!.set(label, { kind, label });
  }
  const arch = architectureOf(config);
  const cache = kvCacheBytesPerLayer(config, maxPositions);
  const embed = arch.embeddingModule;
  return names.map((name) => {
    if (name === 'lm_head' && bytes.get(name) === 0) return { name, bytes: 0, tiedTo: embed };
    const extra = arch.isLayer(name) ? cache : 0;
    const fm = [...formats.get(name)!.values()];
    const gpu = gpuBytes.get(name)! + extra;
    const b = bytes.get(name)! + extra;
    return { name, bytes: b, ...(gpu !== b ? { gpuBytes: gpu } : {}), formats: fm };
  });
}

/** Bytes of one decoder layer's f32 KV cache for `maxPositions` positions. */
export function kvCacheBytesPerLayer(config: DecoderConfig, maxPositions: number): number {
  return 2 * maxPositions * architectureOf(config).kvHeads(config) * config.headDim * 4;
}

/** Tensor metadata of a safetensors checkpoint (headers only; nothing else is read). */
export async function safetensorsInfos(source: ModelSource, quantize: (t: { name: string; dtype: string; shape: number[] }) => boolean, signal?: AbortSignal): Promise<TensorSizeInfo[]> {
  const files = await listWeightFiles(source);
  const out: TensorSizeInfo[] = [];
  for (const name of files.files) {
    const st = await SafetensorsFile.open(await source.open(name), signal);
    try {
      for (const t of st.tensors.values()) out.push({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.end - t.start, quantize: quantize(t) });
    } finally {
      await st.source.close?.();
    }
  }
  return out;
}
