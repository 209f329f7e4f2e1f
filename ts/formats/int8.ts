/**
 * LLM.int8 weights (bitsandbytes Linear8bitLt): CB [out, in] int8 row-major and SCB [out], the
 * absmax of each row (W ≈ CB * SCB / 127). Activations' outlier columns (|x| > threshold) are
 * computed in f32 against the dequantized columns; the rest as int8 x int8 products.
 */
import { int8VectorwiseDequant } from '../quant/int8.js';
import type { SavedTensor, WeightFormat } from './types.js';

/** An LLM.int8 weight as bitsandbytes holds it: int8 rows (CB) and their absmax (SCB). */
export interface Bnb8bitWeight {
  kind: 'int8';
  name: string;
  /** [out, in] row-major. */
  CB: Int8Array;
  SCB: Float32Array;
  shape: [number, number];
}

/** The tensors an 8-bit weight is saved as (Linear8bitLt._save_to_state_dict). */
export function bnb8bitTensors(weightName: string, CB: Int8Array, SCB: Float32Array, shape: [number, number]): SavedTensor[] {
  const module = weightName.replace(/\.weight$/, '');
  return [
    { name: weightName, dtype: 'I8', shape, data: new Uint8Array(CB.buffer, CB.byteOffset, CB.byteLength) },
    { name: `${module}.SCB`, dtype: 'F32', shape: [SCB.length], data: new Uint8Array(SCB.buffer, SCB.byteOffset, SCB.byteLength) },
    { name: `${module}.weight_format`, dtype: 'U8', shape: [], data: new Uint8Array([0]) },
  ];
}

export const int8Format: WeightFormat<Bnb8bitWeight> = {
  kind: 'int8',
  label: () => 'int8',
  shape: (w) => w.shape,
  bytes: (w) => w.CB.byteLength + w.SCB.byteLength,
  // one byte per weight + an f32 scale per row
  estimateBytes: (shape) => shape.reduce((a, b) => a * b, 1) + (shape[0] ?? 0) * 4,
  rowStep: () => 1,
  sliceRows(w, r0, r1, name = w.name) {
    const k = w.shape[1];
    return { ...w, name, shape: [r1 - r0, k], CB: w.CB.slice(r0 * k, r1 * k), SCB: w.SCB.slice(r0, r1) };
  },
  save: (w) => bnb8bitTensors(w.name, w.CB, w.SCB, w.shape),
  toFloat32: (w) => int8VectorwiseDequant(w.CB, w.SCB, w.shape[1]),
};
