/**
 * bitsandbytes checkpoints as transformers saves them (../shared/spec/bnb-format.md §5–6):
 *
 *   4-bit: <module>.weight (uint8 packed, or the quant_storage dtype), <module>.weight.absmax,
 *          .quant_map, [.nested_absmax, .nested_quant_map], .quant_state.bitsandbytes__nf4|fp4
 *   8-bit: <module>.weight (int8, [out, in]), <module>.SCB (f32, [out]), <module>.weight_format (uint8 0 = row)
 *
 * and config.json's `quantization_config`. Reading gives lowbit's QuantState bit for bit;
 * writing produces files transformers + bitsandbytes load (scripts/fixtures/check_lowbit_checkpoint.py).
 */
import { LowbitError } from '../errors.js';
import { QuantState, type StateDict } from '../quant/quant-state.js';
import type { SafetensorsFile } from './safetensors.js';

const QS_MARK = '.quant_state.bitsandbytes__';
const QS_SUFFIXES = ['absmax', 'quant_map', 'nested_absmax', 'nested_quant_map'] as const;

// The weight types and their checkpoint form are the formats' (ts/formats): re-exported here.
export type { Bnb4bitWeight, Bnb8bitWeight, BnbWeight } from '../formats/index.js';
export { bnb4bitTensors } from '../formats/four-bit.js';
export { bnb8bitTensors } from '../formats/int8.js';
import type { Bnb4bitWeight, Bnb8bitWeight } from '../formats/index.js';

/** transformers' `quantization_config` for bitsandbytes, as config.json stores it. */
export interface BnbQuantizationConfigJson {
  quant_method: 'bitsandbytes';
  load_in_4bit?: boolean;
  load_in_8bit?: boolean;
  bnb_4bit_quant_type?: 'nf4' | 'fp4';
  bnb_4bit_use_double_quant?: boolean;
  bnb_4bit_compute_dtype?: string;
  bnb_4bit_quant_storage?: string;
  llm_int8_threshold?: number;
  llm_int8_skip_modules?: string[] | null;
  llm_int8_has_fp16_weight?: boolean;
  llm_int8_enable_fp32_cpu_offload?: boolean;
  [k: string]: unknown;
}

/** Names of the quantized weights in a file ("<module>.weight"), 4-bit and 8-bit. */
export function findBnbWeights(file: SafetensorsFile): { fourBit: string[]; eightBit: string[]; stateKeys: Map<string, string> } {
  const fourBit: string[] = [];
  const eightBit: string[] = [];
  /** 4-bit weight name -> the full name of its quant_state tensor. */
  const stateKeys = new Map<string, string>();
  for (const name of file.tensors.keys()) {
    const i = name.indexOf(QS_MARK);
    if (i >= 0) {
      fourBit.push(name.slice(0, i));
      stateKeys.set(name.slice(0, i), name);
    } else if (name.endsWith('.SCB')) eightBit.push(name.slice(0, -'.SCB'.length) + '.weight');
  }
  return { fourBit: fourBit.sort(), eightBit: eightBit.sort(), stateKeys };
}

/** Every tensor that belongs to a quantized weight (so a loader can skip them as plain tensors). */
export function bnbAuxiliaryTensor(name: string): boolean {
  return name.includes(QS_MARK) || QS_SUFFIXES.some((s) => name.endsWith(`.weight.${s}`)) || name.endsWith('.SCB') || name.endsWith('.weight_format');
}

/** Reads one 4-bit weight ("<module>.weight") into packed codes + QuantState. */
export async function readBnb4bit(file: SafetensorsFile, weightName: string, signal?: AbortSignal, stateKey?: string): Promise<Bnb4bitWeight> {
  const dict: StateDict = {};
  // Looked up by name (not a scan of every tensor per weight, which made loads quadratic).
  // The quant_state key ('quant_state.bitsandbytes__nf4' …): given by findBnbWeights' stateKeys, else found by a scan.
  stateKey ??= [...file.tensors.keys()].find((n) => n.startsWith(weightName + QS_MARK));
  const stateSuffix = stateKey?.slice(weightName.length + 1);
  for (const suffix of [...QS_SUFFIXES, ...(stateSuffix === undefined ? [] : [stateSuffix])]) {
    const name = `${weightName}.${suffix}`;
    const info = file.tensors.get(name);
    if (info === undefined) continue;
    dict[suffix] = { dtype: safetensorsToTorch(info.dtype), shape: info.shape, data: await file.read(name, signal) };
  }
  let quantState: QuantState;
  try {
    quantState = QuantState.fromDict(dict);
  } catch (e) {
    if (e instanceof LowbitError) throw new LowbitError(e.code, `${file.name}: ${weightName}: ${e.message}`, { cause: e, file: file.name });
    throw e;
  }
  // The packed codes may be stored as another dtype (bnb_4bit_quant_storage): the bytes are the same.
  const packed = await file.read(weightName, signal);
  const expected = Math.ceil(quantState.numel / 2);
  if (packed.length !== expected) {
    throw new LowbitError('INCONSISTENT_STATE', `${file.name}: ${weightName} holds ${packed.length} bytes but its quant state (shape [${quantState.shape.join(', ')}]) needs ${expected}`, { file: file.name });
  }
  return { kind: '4bit', name: weightName, packed, quantState };
}

/** Reads one LLM.int8 weight ("<module>.weight" + "<module>.SCB" + "<module>.weight_format"). */
export async function readBnb8bit(file: SafetensorsFile, weightName: string, signal?: AbortSignal): Promise<Bnb8bitWeight> {
  const module = weightName.replace(/\.weight$/, '');
  const w = file.info(weightName);
  const scb = file.info(`${module}.SCB`);
  const fail = (msg: string): never => {
    throw new LowbitError('INCONSISTENT_STATE', `${file.name}: ${weightName}: ${msg}`, { file: file.name });
  };
  if (w.dtype !== 'I8') fail(`an 8-bit weight must be I8, found ${w.dtype}`);
  if (w.shape.length !== 2) fail(`an 8-bit weight must be 2-D, found shape [${w.shape.join(', ')}]`);
  if (scb.dtype !== 'F32' || scb.shape.length !== 1 || scb.shape[0] !== w.shape[0]) fail(`SCB must be F32 [${w.shape[0]}], found ${scb.dtype} [${scb.shape.join(', ')}]`);
  if (file.tensors.has(`${module}.weight_format`)) {
    const fmt = await file.read(`${module}.weight_format`, signal);
    // 0 = "row"; col32 / col_turing / col_ampere tiles are gone from bitsandbytes >= 0.45.
    if (fmt.length !== 1 || fmt[0] !== 0) fail(`weight_format ${fmt[0]} is a tiled layout; only 0 (row) is supported, as in bitsandbytes >= 0.45`);
  }
  const cb = await file.read(weightName, signal);
  const sc = await file.read(`${module}.SCB`, signal);
  return { kind: 'int8', name: weightName, CB: new Int8Array(cb.buffer, cb.byteOffset, cb.byteLength), SCB: new Float32Array(sc.buffer, sc.byteOffset, sc.byteLength / 4), shape: [w.shape[0]!, w.shape[1]!] };
}

/** safetensors dtype -> the torch name QuantState.fromDict expects. */
export function safetensorsToTorch(dtype: string): string {
  const m: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', U8: 'uint8', I8: 'int8', I32: 'int32' };
  const t = m[dtype];
  if (!t) throw new LowbitError('UNSUPPORTED_DTYPE', `dtype ${dtype} cannot appear in a bitsandbytes quant state`);
  return t;
}

/** torch dtype name -> safetensors dtype (bitsandbytes quant-state tensors). */
export { storedDTypeOfTorch as torchToSafetensors } from '../formats/four-bit.js';
