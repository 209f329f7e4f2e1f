import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import type { FloatDType, FloatInput, FloatOutput } from '../tensor/dtypes.js';

/** The blocksizes `quantizeBlockwise` accepts. */
export const BLOCKSIZES_8BIT = [32, 64, 128, 256, 512, 1024, 2048, 4096] as const;

/** State of an 8-bit block-wise tensor (bitsandbytes' QuantState for `quantize_blockwise`). */
export interface BlockwiseState {
  absmax: Float32Array;
  /** The 256-entry code, sorted ascending (default: bitsandbytes' signed dynamic map). */
  code: Float32Array;
  blocksize: number;
}

/** Options of `quantizeBlockwise`. */
export interface QuantizeBlockwiseOptions {
  /** Default 4096, as in bitsandbytes' `quantize_blockwise`. */
  blocksize?: number;
  /** A sorted 256-entry code; default `dynamicMap(true)`. */
  code?: Float32Array;
  allowNonFinite?: boolean;
}

/**
 * 8-bit block-wise quantization (`bitsandbytes.functional.quantize_blockwise`): each value
 * becomes the index of the nearest code entry after scaling by its block's absmax.
 */
export function quantizeBlockwise(input: FloatInput, options: QuantizeBlockwiseOptions = {}): { q: Uint8Array; state: BlockwiseState } {
  const { blocksize = 4096, code, allowNonFinite = false } = options;
  if (!Number.isInteger(blocksize) || blocksize <= 0) throw new LowbitError('UNSUPPORTED_BLOCKSIZE', `blocksize must be one of ${BLOCKSIZES_8BIT.join(', ')}, got ${blocksize}`);
  if (code !== undefined && !(code instanceof Float32Array)) throw new LowbitError('INVALID_ARGUMENT', 'code must be a Float32Array of 256 entries');
  const r = callWasm(() =>
    input instanceof Float32Array
      ? wasm().quantizeBlockwiseF32(input, blocksize, code, allowNonFinite)
      : wasm().quantizeBlockwiseU16(input.data, input.dtype, blocksize, code, allowNonFinite),
  ) as { q: Uint8Array; absmax: Float32Array; code: Float32Array; blocksize: number };
  return { q: r.q, state: { absmax: r.absmax, code: r.code, blocksize: r.blocksize } };
}

/** `dequantize_blockwise`: out[k] = code[q[k]] * absmax[k / blocksize]. Default output float32. */
export function dequantizeBlockwise<D extends FloatDType = 'float32'>(q: Uint8Array, state: BlockwiseState, options: { outDtype?: D } = {}): FloatOutput<D> {
  const outDtype = options.outDtype ?? 'float32';
  return callWasm(() => wasm().dequantizeBlockwise(q, state.absmax, state.code, state.blocksize, outDtype)) as FloatOutput<D>;
}
