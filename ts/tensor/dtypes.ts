import { callWasm } from '../errors.js';
import { wasm } from '../runtime/wasm.js';

/**
 * How a stored tensor's elements are encoded, as safetensors headers name them (GGUF F32 / F16 /
 * BF16 use the same names). Defined here, below every layer that reads or writes tensors.
 */
export type StoredDType = 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'I16' | 'U16' | 'F16' | 'BF16' | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64' | (string & {});

/** Floating dtypes, named as torch names them (and as bitsandbytes writes them in its JSON). */
export type FloatDType = 'float32' | 'float16' | 'bfloat16';
/** The 16-bit float dtypes, carried as Uint16Array bit patterns. */
export type HalfDType = 'float16' | 'bfloat16';

/** A 16-bit float tensor: raw bit patterns plus which format they are in. */
export interface HalfArray {
  dtype: HalfDType;
  data: Uint16Array;
}

/** Input accepted by the quantizers: a Float32Array (float32) or 16-bit bit patterns. */
export type FloatInput = Float32Array | HalfArray;

/** Output of the dequantizers: Float32Array for float32, Uint16Array bit patterns otherwise. */
export type FloatOutput<D extends FloatDType> = D extends 'float32' ? Float32Array : Uint16Array;

export function dtypeOf(x: FloatInput): FloatDType {
  return x instanceof Float32Array ? 'float32' : x.dtype;
}

export function lengthOf(x: FloatInput): number {
  return x instanceof Float32Array ? x.length : x.data.length;
}

/** f32 -> float16 / bfloat16 bit patterns with round-to-nearest-even (torch's `.to()`). */
export function toHalf(values: Float32Array | number[], dtype: HalfDType): HalfArray {
  const f = values instanceof Float32Array ? values : Float32Array.from(values);
  return { dtype, data: callWasm(() => wasm().toHalfBits(f, dtype)) };
}

/** float16 / bfloat16 bit patterns -> f32 (exact). */
export function fromHalf(x: HalfArray): Float32Array {
  return callWasm(() => wasm().fromHalfBits(x.data, x.dtype));
}
