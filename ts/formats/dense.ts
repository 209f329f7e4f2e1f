/**
 * Dense weights: f32, f16 or bf16 as stored (norms, embeddings, lm_head, biases, and linears that
 * are not quantized). The bytes stay as read from the file; `denseData` views them as typed
 * arrays (what every backend uploads), `denseToFloat32` widens them exactly.
 */
import { LowbitError } from '../errors.js';
import { fromHalf, type HalfDType, type StoredDType } from '../tensor/dtypes.js';
import type { WeightFormat } from './types.js';

/** A tensor kept as stored. */
export interface DenseWeight {
  kind: 'dense';
  name: string;
  dtype: StoredDType;
  shape: number[];
  data: Uint8Array;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A view of `bytes` as `T`, copying first when the offset or length is misaligned. */
function view<T>(bytes: Uint8Array, size: number, make: (b: ArrayBufferLike, off: number, len: number) => T): T {
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return make(b.buffer, b.byteOffset, b.byteLength / size);
}

function checkBytes(w: DenseWeight, size: number): number {
  const n = numel(w.shape);
  if (w.data.byteLength !== n * size) {
    throw new LowbitError('LENGTH_MISMATCH', `${w.name}: ${w.dtype} tensor of shape [${w.shape.join(', ')}] needs ${n * size} bytes, found ${w.data.byteLength}`);
  }
  return n;
}

/** Bytes per element of the float dtypes a dense weight may have (0: not a float dtype). */
export function floatSize(dtype: StoredDType): number {
  return dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 0;
}

/** The weight as stored: f32 values, or f16 / bf16 bit patterns. */
export function denseData(w: DenseWeight): Float32Array | { dtype: HalfDType; data: Uint16Array } {
  switch (w.dtype) {
    case 'F32':
      checkBytes(w, 4);
      return view(w.data, 4, (b, o, l) => new Float32Array(b, o, l));
    case 'F16':
    case 'BF16':
      checkBytes(w, 2);
      return { dtype: w.dtype === 'F16' ? 'float16' : 'bfloat16', data: view(w.data, 2, (b, o, l) => new Uint16Array(b, o, l)) };
    default:
      throw new LowbitError('UNSUPPORTED_DTYPE', `${w.name}: dtype ${w.dtype} is not supported here (F32, F16 or BF16)`);
  }
}

/** The weight widened to f32 (exact for F16 / BF16). May share memory with `w.data` for F32. */
export function denseToFloat32(w: DenseWeight): Float32Array {
  const d = denseData(w);
  return d instanceof Float32Array ? d : fromHalf(d);
}

const LABELS: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export const denseFormat: WeightFormat<DenseWeight> = {
  kind: 'dense',
  label: (w) => LABELS[w.dtype] ?? w.dtype.toLowerCase(),
  shape: (w) => [w.shape[0] ?? 0, w.shape[1] ?? 0],
  bytes: (w) => w.data.byteLength,
  estimateBytes: (shape, p) => numel(shape) * (floatSize(p?.dtype ?? 'F32') || 4),
  rowStep: () => 1,
  sliceRows(w, r0, r1, name = w.name) {
    const [r, k] = w.shape as [number, number];
    const size = w.data.length / (r * k);
    return { ...w, name, shape: [r1 - r0, k], data: w.data.slice(r0 * k * size, r1 * k * size) };
  },
  save: (w) => [{ name: w.name, dtype: w.dtype, shape: w.shape, data: w.data }],
  toFloat32: (w) => denseToFloat32(w),
};
