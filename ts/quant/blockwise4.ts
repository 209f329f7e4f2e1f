import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import { dtypeOf, lengthOf, type FloatDType, type FloatInput, type FloatOutput } from '../tensor/dtypes.js';
import { QuantState, type QuantType4 } from './quant-state.js';

/** Blocksizes bitsandbytes 0.50 accepts for 4-bit quantization. */
export const BLOCKSIZES_4BIT = [32, 64, 128, 256, 512, 1024, 2048, 4096] as const;

/** Options of `quantize4bit` (bitsandbytes' quantize_4bit arguments). */
export interface Quantize4bitOptions {
  /** Default 'fp4', as in bitsandbytes' `quantize_4bit` (transformers users usually pick 'nf4'). */
  quantType?: QuantType4;
  /** Elements per absmax block. Default 64. */
  blocksize?: number;
  /** Double quantization of the absmax (bitsandbytes' `compress_statistics`). Default false. */
  compressStatistics?: boolean;
  /** Shape recorded in the QuantState (row-major). Default: 1-D. */
  shape?: readonly number[];
  /**
   * Quantize NaN / Inf as bitsandbytes does instead of throwing NON_FINITE (whose `index`
   * names the first bad element). Default false.
   */
  allowNonFinite?: boolean;
}

/** What `quantize4bit` returns: the packed nibbles and their QuantState. */
export interface Quantized4bit {
  /** Packed codes: byte j holds element 2j in the high nibble, 2j+1 in the low one. */
  packed: Uint8Array;
  quantState: QuantState;
}

function shapeArg(shape: readonly number[] | undefined, n: number): Uint32Array {
  const s = shape ?? [n];
  for (const d of s) {
    if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) throw new LowbitError('INVALID_ARGUMENT', `shape entries must be non-negative integers, got ${JSON.stringify(s)}`);
  }
  return Uint32Array.from(s);
}

function checkInput(input: FloatInput): void {
  if (input instanceof Float32Array) return;
  if (!input || !(input.data instanceof Uint16Array) || (input.dtype !== 'float16' && input.dtype !== 'bfloat16')) {
    throw new LowbitError('UNSUPPORTED_DTYPE', 'input must be a Float32Array or { dtype: "float16" | "bfloat16", data: Uint16Array }');
  }
}

/**
 * Block-wise 4-bit quantization, bit-compatible with `bitsandbytes.functional.quantize_4bit`.
 *
 * @example
 * const { packed, quantState } = quantize4bit(weights, { quantType: 'nf4', blocksize: 64, compressStatistics: true, shape: [4096, 4096] });
 */
export function quantize4bit(input: FloatInput, options: Quantize4bitOptions = {}): Quantized4bit {
  checkInput(input);
  const { quantType = 'fp4', blocksize = 64, compressStatistics = false, allowNonFinite = false } = options;
  if (!Number.isInteger(blocksize) || blocksize <= 0) throw new LowbitError('UNSUPPORTED_BLOCKSIZE', `blocksize must be one of ${BLOCKSIZES_4BIT.join(', ')}, got ${blocksize}`);
  const shape = shapeArg(options.shape, lengthOf(input));
  const r = callWasm(() =>
    input instanceof Float32Array
      ? wasm().quantize4bitF32(input, shape, quantType, blocksize, compressStatistics, allowNonFinite)
      : wasm().quantize4bitU16(input.data, input.dtype, shape, quantType, blocksize, compressStatistics, allowNonFinite),
  ) as { packed: Uint8Array; state: ConstructorParameters<typeof QuantState>[0] };
  return { packed: r.packed, quantState: QuantState.fromFields(r.state) };
}

/** Elements [start, end) of a quantize4bit input: a run of whole blocks (the last run may end in a partial block). */
export interface BlockRun {
  start: number;
  end: number;
}

/** What quantizing one run needs besides its elements. */
export interface RunOptions {
  quantType: QuantType4;
  blocksize: number;
  allowNonFinite: boolean;
}

/** Stage one of quantize4bit on one run: its packed codes and f32 absmax per block (no double quant). */
export function quantize4bitRun(data: FloatInput, o: RunOptions): { packed: Uint8Array; absmax: Float32Array } {
  return callWasm(() =>
    data instanceof Float32Array
      ? wasm().quantize4bitBlocksF32(data, o.quantType, o.blocksize, o.allowNonFinite)
      : wasm().quantize4bitBlocksU16(data.data, data.dtype, o.quantType, o.blocksize, o.allowNonFinite),
  ) as { packed: Uint8Array; absmax: Float32Array };
}

/** Elements [start, end) of an input, as a view. */
export function runOf(input: FloatInput, r: BlockRun): FloatInput {
  return input instanceof Float32Array ? input.subarray(r.start, r.end) : { dtype: input.dtype, data: input.data.subarray(r.start, r.end) };
}

/**
 * quantize4bit() with stage one — codes and f32 absmax, the bulk of the work — done run by run
 * by `quantizeRuns` (CpuBackend.quantize4bit gives the runs to its threads), and stage two (the
 * quant state, double-quantized when asked) here: the same packed bytes and state as
 * quantize4bit(), since a block's codes and absmax depend on that block alone. `quantizeRuns`
 * writes run r's codes at packed[start / 2 ..] and its absmax at absmax[start / blocksize ..].
 */
export function quantize4bitInRuns(
  input: FloatInput,
  options: Quantize4bitOptions,
  runs: number,
  quantizeRuns: (input: FloatInput, runs: BlockRun[], o: RunOptions, packed: Uint8Array, absmax: Float32Array) => void,
): Quantized4bit {
  checkInput(input);
  const { quantType = 'fp4', blocksize = 64, compressStatistics = false, allowNonFinite = false } = options;
  if (!(BLOCKSIZES_4BIT as readonly number[]).includes(blocksize)) throw new LowbitError('UNSUPPORTED_BLOCKSIZE', `blocksize must be one of ${BLOCKSIZES_4BIT.join(', ')}, got ${blocksize}`);
  const n = lengthOf(input);
  const shape = shapeArg(options.shape, n);
  if (shape.reduce((a, d) => a * d, 1) !== n) return quantize4bit(input, options); // its error
  const blocks = Math.ceil(n / blocksize);
  const per = Math.ceil(blocks / Math.max(1, Math.min(runs, blocks)));
  const list: BlockRun[] = [];
  for (let b = 0; b < blocks; b += per) list.push({ start: b * blocksize, end: Math.min(n, (b + per) * blocksize) });
  const packed = new Uint8Array(Math.ceil(n / 2));
  const absmax = new Float32Array(blocks);
  quantizeRuns(input, list, { quantType, blocksize, allowNonFinite }, packed, absmax);
  const state = callWasm(() => wasm().quantState4bit(absmax, shape, dtypeOf(input), quantType, blocksize, compressStatistics));
  return { packed, quantState: QuantState.fromFields(state as ConstructorParameters<typeof QuantState>[0]) };
}

/** Options of `dequantize4bit`. */
export interface Dequantize4bitOptions<D extends FloatDType> {
  /** Output dtype; default: the dtype recorded in the QuantState. */
  outDtype?: D;
}

/**
 * `bitsandbytes.functional.dequantize_4bit`: out[k] = code[nibble] * absmax[block], one f32
 * multiply rounded to the output dtype. float16 / bfloat16 come back as Uint16Array bit patterns.
 */
export function dequantize4bit<D extends FloatDType = FloatDType>(packed: Uint8Array, quantState: QuantState, options: Dequantize4bitOptions<D> = {}): FloatOutput<D> {
  if (!(packed instanceof Uint8Array)) throw new LowbitError('INVALID_ARGUMENT', 'packed must be a Uint8Array');
  if (!(quantState instanceof QuantState)) throw new LowbitError('INVALID_ARGUMENT', 'quantState must be a QuantState (use QuantState.fromDict for saved tensors)');
  const outDtype = options.outDtype ?? quantState.dtype;
  return callWasm(() => wasm().dequantize4bit(packed, quantState.fields(), outDtype)) as FloatOutput<D>;
}

