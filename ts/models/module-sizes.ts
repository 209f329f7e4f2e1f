/**
 * Bytes each module will take on its device, from tensor metadata (safetensors headers, GGUF
 * tensor infos) and the quantization choice, before any weight is read: packed 4-bit codes +
 * f32 absmax per block, LLM.int8 codes + f32 SCB per row, dense tensors as stored, and each
 * layer's f32 KV cache. Backends add a little (row padding, split parts); 'auto' budgets are
 * estimates at that precision.
 */
import type { QuantizeOnLoad } from '../loading/load-weights.js';
import { SafetensorsFile } from '../loading/safetensors.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import type { ModelSource } from '../loading/sources/types.js';
import type { DecoderConfig } from './config.js';
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
  /** stored dtype (safetensors), for the shape checks of pre-quantized weights */
  dtype?: string;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Bytes of one weight after quantize-on-load. */
export function quantizedBytes(shape: readonly number[], q: QuantizeOnLoad): number {
  const n = numel(shape);
  if (q.quantType === 'int8') return n + shape[0]! * 4;
  return Math.ceil(n / 2) + Math.ceil(n / (q.blocksize ?? 64)) * 4;
}

/** Per module, in forward order; a tied lm_head has no bytes of its own (tiedTo names its table). */
export function moduleSizes(config: DecoderConfig, tensors: Iterable<TensorSizeInfo>, quantization: QuantizeOnLoad | undefined, maxPositions: number): ModuleSize[] {
  const names = moduleNames(config);
  const bytes = new Map(names.map((n) => [n, 0]));
  for (const t of tensors) {
    const m = moduleOfTensor(config, t.name);
    if (m === undefined || !bytes.has(m)) continue;
    const b = t.quantize && quantization ? quantizedBytes(t.shape, quantization) : t.loadedBytes ?? t.bytes;
    bytes.set(m, bytes.get(m)! + b);
  }
  const kvHeads = config.family === 'gpt2' ? config.numHeads : config.numKvHeads;
  const cache = 2 * maxPositions * kvHeads * config.headDim * 4;
  const embed = config.family === 'gpt2' ? 'transformer.wte' : 'model.embed_tokens';
  return names.map((name) => {
    if (name === 'lm_head' && bytes.get(name) === 0) return { name, bytes: 0, tiedTo: embed };
    return { name, bytes: bytes.get(name)! + (/\.(layers|h)\.\d+$/.test(name) ? cache : 0) };
  });
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
