/**
 * bitsandbytes 4-bit weights (nf4 / fp4, and lowbit's int4), optionally double-quantized.
 *
 * Layout, as bitsandbytes' Linear4bit keeps it: the [out, in] weight is flattened row-major and
 * cut into blocks of `blocksize` elements (blocks may span rows); each element is a 4-bit index
 * into the 16-value code, two per byte with element 2j in the HIGH nibble of byte j; each block
 * has one absmax scale. With double quantization the absmax are themselves stored as 8-bit codes
 * (blocks of 256) plus an f32 offset and nested scales — all of it in QuantState.
 */
import { LowbitError } from '../errors.js';
import { dequantize4bit } from '../quant/blockwise4.js';
import { QuantState } from '../quant/quant-state.js';
import type { StoredDType } from '../tensor/dtypes.js';
import { blockRowStep, type SavedTensor, type WeightFormat } from './types.js';

/** A 4-bit weight as bitsandbytes holds it: packed nibbles and its QuantState. */
export interface Bnb4bitWeight {
  kind: '4bit';
  /** "<module>.weight" */
  name: string;
  packed: Uint8Array;
  quantState: QuantState;
}

const TORCH_TO_STORED: Record<string, StoredDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', uint8: 'U8', int8: 'I8', int32: 'I32' };

/** A torch dtype name ('float16') as a stored dtype ('F16'). */
export function storedDTypeOfTorch(dtype: string): StoredDType {
  const t = TORCH_TO_STORED[dtype];
  if (!t) throw new LowbitError('UNSUPPORTED_DTYPE', `dtype ${dtype} has no safetensors name here`);
  return t;
}

/** The tensors a 4-bit weight is saved as (bnb's Linear4bit._save_to_state_dict), keyed by full name. */
export function bnb4bitTensors(weightName: string, packed: Uint8Array, quantState: QuantState): SavedTensor[] {
  const out: SavedTensor[] = [{ name: weightName, dtype: 'U8', shape: [packed.length, 1], data: packed }];
  for (const [k, t] of Object.entries(quantState.toDict())) out.push({ name: `${weightName}.${k}`, dtype: storedDTypeOfTorch(t.dtype), shape: t.shape, data: t.data });
  return out;
}

export const fourBitFormat: WeightFormat<Bnb4bitWeight> = {
  kind: '4bit',
  label: (w) => `4bit-${w.quantState.quantType}`,
  shape: (w) => [w.quantState.shape[0] ?? 0, w.quantState.shape[1] ?? 0],
  bytes(w) {
    const st = w.quantState;
    return w.packed.byteLength + st.absmax.byteLength + st.code.byteLength + (st.state2 ? st.state2.absmax.byteLength + st.state2.code.byteLength : 0);
  },
  // packed codes + one f32 absmax per block (double quantization makes it smaller; not counted)
  estimateBytes(shape, p) {
    const n = shape.reduce((a, b) => a * b, 1);
    return Math.ceil(n / 2) + Math.ceil(n / (p?.blocksize ?? 64)) * 4;
  },
  rowStep: (w) => blockRowStep(w.quantState.shape[1] ?? 1, w.quantState.blocksize),
  sliceRows(w, r0, r1, name = w.name) {
    const st = w.quantState;
    const [r, k] = st.shape as [number, number];
    const bs = st.blocksize;
    const e0 = r0 * k;
    const e1 = r1 * k;
    // blocksizes are even, so a block boundary is also a byte boundary
    if (e0 % bs !== 0 || (r1 !== r && e1 % bs !== 0)) throw new LowbitError('UNSUPPORTED_DTYPE', `${w.name}: rows [${r0}, ${r1}) of a 4-bit [${r}, ${k}] weight do not start and end on blocksize-${bs} boundaries`);
    // A plain-absmax state for the slice (double-quantized absmax are rebuilt to f32 first).
    const absmax = st.absmaxF32().slice(e0 / bs, Math.ceil(e1 / bs));
    const quantState = new QuantState({ quantType: st.quantType, blocksize: bs, dtype: st.dtype, shape: [r1 - r0, k], code: st.code, absmax });
    return { ...w, name, packed: w.packed.slice(e0 / 2, Math.ceil(e1 / 2)), quantState };
  },
  save(w) {
    if (w.quantState.quantType === 'int4') throw new LowbitError('UNSUPPORTED_QUANT_TYPE', `${w.name}: int4 is lowbit's own format; bitsandbytes checkpoints hold nf4 or fp4`);
    return bnb4bitTensors(w.name, w.packed, w.quantState);
  },
  toFloat32: (w) => dequantize4bit(w.packed, w.quantState, { outDtype: 'float32' }) as Float32Array,
};
