/** DenseWeight (raw safetensors bytes) -> typed arrays for the CPU backend. */
import { LowbitError } from '../../errors.js';
import type { DenseWeight } from '../../loading/load-weights.js';
import { fromHalf, type HalfDType } from '../../tensor/dtypes.js';

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
