import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import { lengthOf, type FloatInput } from '../tensor/dtypes.js';

/** What `int8VectorwiseQuant` returns (LLM.int8): int8 rows, their absmax and the outlier columns. */
export interface Int8Vectorwise {
  /** int8 codes, row-major, same shape as the input. */
  CB: Int8Array;
  /** Row absmax (bitsandbytes' SCB): W ≈ CB * SCB / 127. */
  SCB: Float32Array;
  /** Columns holding an outlier (|x| >= threshold), ascending; null when threshold is 0. */
  outlierCols: Uint32Array | null;
}

/**
 * LLM.int8() vector-wise quantization (`bitsandbytes.functional.int8_vectorwise_quant`).
 * Rows are scaled by 127 / absmax and rounded half to even. With `threshold > 0`, outliers are
 * kept out of the absmax, quantized as 0, and their columns zeroed and reported so a matmul can
 * take them in floating point. bitsandbytes' Linear8bitLt casts weights to float16 first; do the
 * same (`toHalf(w, 'float16')`) to get its exact codes.
 */
export function int8VectorwiseQuant(input: FloatInput, options: { shape?: readonly number[]; threshold?: number } = {}): Int8Vectorwise {
  const n = lengthOf(input);
  const shape = options.shape ?? [n];
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new LowbitError('INVALID_ARGUMENT', `shape entries must be non-negative integers, got ${JSON.stringify(shape)}`);
  const threshold = options.threshold ?? 0;
  const s = Uint32Array.from(shape);
  return callWasm(() =>
    input instanceof Float32Array ? wasm().int8VectorwiseQuantF32(input, s, threshold) : wasm().int8VectorwiseQuantU16(input.data, input.dtype, s, threshold),
  ) as Int8Vectorwise;
}

/** W ≈ CB * SCB * (1/127), row-major with `cols` columns. */
export function int8VectorwiseDequant(CB: Int8Array, SCB: Float32Array, cols: number): Float32Array {
  return callWasm(() => wasm().int8VectorwiseDequant(CB, SCB, cols));
}
