/**
 * Block-wise 8-bit linear weights: `W = code[q] * absmax[block]`, `q` one byte per weight of the
 * flattened [out, in] weight, blocks of `blocksize` (crates/lowbit-core/src/kernels/matmul_blockwise8.rs).
 *
 * - bitsandbytes' `quantize_blockwise` output (`quantizeBlockwise`, code = the signed dynamic map)
 *   becomes one with `blockwise8FromQuantized`.
 * - GGUF Q8_0 (ggml-common.h `block_q8_0`: an f16 scale `d`, then 32 int8 `qs` along a row;
 *   ggml dequantizes `qs[j] * d` in f32) becomes one with `q8_0ToBlockwise8`: the int8 code
 *   (`code[q] = q as int8`), blocksize 32, absmax = d as f32 — bit-exact, 1.125 bytes per weight
 *   (the f16 scales are widened to f32 for the kernels).
 */
import { LowbitError } from '../errors.js';
import { BLOCKSIZES_8BIT, dequantizeBlockwise, type BlockwiseState } from '../quant/blockwise8.js';
import { fromHalf } from '../tensor/dtypes.js';
import { blockRowStep, type WeightFormat } from './types.js';

/** An 8-bit block-wise weight (bitsandbytes' quantize_blockwise: int8 codes, one absmax per block, a 256-entry code); GGUF's Q8_0 linears load as one. */
export interface Blockwise8Weight {
  kind: 'blockwise8';
  /** "<module>.weight" */
  name: string;
  /** [out, in] */
  shape: [number, number];
  /** out * in codes, row-major. */
  q: Uint8Array;
  /** One f32 per block of the flattened weight: ceil(out * in / blocksize). */
  absmax: Float32Array;
  /** 256 f32 values (any order). */
  code: Float32Array;
  blocksize: number;
}

/** Bytes per ggml Q8_0 block: f16 scale + 32 int8 values. */
const Q8_0_BLOCK_BYTES = 34;
const Q8_0_BLOCK = 32;

/** The int8 code: code[q] = q read as a two's-complement int8 (GGUF Q8_0's values). */
export function int8Code(): Float32Array {
  return Float32Array.from({ length: 256 }, (_, i) => (i << 24) >> 24);
}

/** Whether `code` is the int8 code, entry for entry (−0 is not 0). */
export function isInt8Code(code: Float32Array): boolean {
  if (code.length !== 256) return false;
  for (let i = 0; i < 256; i++) if (!Object.is(code[i], (i << 24) >> 24)) return false;
  return true;
}

/** 'q8_0' for GGUF Q8_0's layout (int8 code, blocks of 32), 'blockwise8' otherwise (footprints, messages). */
export function blockwise8Label(w: Pick<Blockwise8Weight, 'code' | 'blocksize'>): 'q8_0' | 'blockwise8' {
  return w.blocksize === Q8_0_BLOCK && isInt8Code(w.code) ? 'q8_0' : 'blockwise8';
}

/** Bytes the weight holds (codes + f32 absmax + the code table). */
export function blockwise8Bytes(w: Blockwise8Weight): number {
  return w.q.byteLength + w.absmax.byteLength + w.code.byteLength;
}

/** A [out, in] linear weight from `quantizeBlockwise(weight, …)`'s `{ q, state }`; sizes are checked. */
export function blockwise8FromQuantized(name: string, shape: readonly number[], q: Uint8Array, state: BlockwiseState): Blockwise8Weight {
  const bad = (msg: string, code: 'INVALID_ARGUMENT' | 'LENGTH_MISMATCH' | 'INCONSISTENT_STATE' | 'UNSUPPORTED_BLOCKSIZE' = 'INVALID_ARGUMENT') => new LowbitError(code, `${name}: ${msg}`);
  if (shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0)) throw bad(`a linear weight must be 2-D [out, in] with positive sizes, got [${shape.join(', ')}]`);
  const [n, k] = shape as [number, number];
  if (!(BLOCKSIZES_8BIT as readonly number[]).includes(state.blocksize)) throw bad(`blocksize ${state.blocksize} is not one of ${BLOCKSIZES_8BIT.join(', ')}`, 'UNSUPPORTED_BLOCKSIZE');
  if (q.length !== n * k) throw bad(`${q.length} codes for a [${n}, ${k}] weight`, 'LENGTH_MISMATCH');
  if (state.absmax.length !== Math.ceil((n * k) / state.blocksize)) throw bad(`${state.absmax.length} absmax values for ${n * k} codes in blocks of ${state.blocksize}`, 'INCONSISTENT_STATE');
  if (state.code.length !== 256) throw bad(`an 8-bit code must have 256 entries, got ${state.code.length}`);
  return { kind: 'blockwise8', name, shape: [n, k], q, absmax: state.absmax, code: state.code, blocksize: state.blocksize };
}

/** A GGUF Q8_0 tensor's bytes (shape [rows, cols] row-major) as a block-wise 8-bit weight. */
export function q8_0ToBlockwise8(name: string, shape: readonly number[], data: Uint8Array, file?: string): Blockwise8Weight {
  const where = file === undefined ? name : `${file}: ${name}`;
  if (shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0)) throw new LowbitError('INVALID_ARGUMENT', `${where}: a Q8_0 linear weight must be 2-D, got [${shape.join(', ')}]`);
  const [rows, cols] = shape as [number, number];
  if (cols % Q8_0_BLOCK !== 0) throw new LowbitError('MALFORMED_FILE', `${where}: Q8_0 rows of ${cols} values are not whole blocks of 32`, file === undefined ? {} : { file });
  const blocks = (rows * cols) / Q8_0_BLOCK;
  if (data.length !== blocks * Q8_0_BLOCK_BYTES) throw new LowbitError('MALFORMED_FILE', `${where}: ${data.length} bytes of Q8_0 data, [${rows}, ${cols}] needs ${blocks * Q8_0_BLOCK_BYTES}`, file === undefined ? {} : { file });
  const q = new Uint8Array(rows * cols);
  const d = new Uint16Array(blocks);
  for (let b = 0, at = 0; b < blocks; b++, at += Q8_0_BLOCK_BYTES) {
    d[b] = data[at]! | (data[at + 1]! << 8); // little-endian f16 bits
    q.set(data.subarray(at + 2, at + Q8_0_BLOCK_BYTES), b * Q8_0_BLOCK);
  }
  return { kind: 'blockwise8', name, shape: [rows, cols], q, absmax: fromHalf({ dtype: 'float16', data: d }), code: int8Code(), blocksize: Q8_0_BLOCK };
}

/**
 * Reorders whole rows: output row r is input row `srcRow(r)`. Each row must be whole blocks
 * (in % blocksize == 0), so codes and absmax move together.
 */
export function permuteRowsBlockwise8(w: Blockwise8Weight, srcRow: (dst: number) => number): Blockwise8Weight {
  const [rows, cols] = w.shape;
  if (cols % w.blocksize !== 0) throw new LowbitError('UNSUPPORTED_DTYPE', `${w.name}: rows of ${cols} values are not whole blocks of ${w.blocksize}, so they cannot be reordered`);
  const per = cols / w.blocksize;
  const q = new Uint8Array(w.q.length);
  const absmax = new Float32Array(w.absmax.length);
  for (let r = 0; r < rows; r++) {
    const s = srcRow(r);
    q.set(w.q.subarray(s * cols, (s + 1) * cols), r * cols);
    absmax.set(w.absmax.subarray(s * per, (s + 1) * per), r * per);
  }
  return { ...w, q, absmax };
}

export const blockwise8Format: WeightFormat<Blockwise8Weight> = {
  kind: 'blockwise8',
  label: (w) => blockwise8Label(w),
  shape: (w) => w.shape,
  bytes: (w) => blockwise8Bytes(w),
  // a code byte per weight + an f32 absmax per block (the 1 KiB code table is not counted)
  estimateBytes(shape, p) {
    const n = shape.reduce((a, b) => a * b, 1);
    return n + Math.ceil(n / (p?.blocksize ?? Q8_0_BLOCK)) * 4;
  },
  rowStep: (w) => blockRowStep(w.shape[1], w.blocksize),
  sliceRows(w, r0, r1, name = w.name) {
    const [r, k] = w.shape;
    const bs = w.blocksize;
    const e0 = r0 * k;
    const e1 = r1 * k;
    if (e0 % bs !== 0 || (r1 !== r && e1 % bs !== 0)) throw new LowbitError('UNSUPPORTED_DTYPE', `${w.name}: rows [${r0}, ${r1}) of a block-wise 8-bit [${r}, ${k}] weight do not start and end on blocksize-${bs} boundaries`);
    return { ...w, name, shape: [r1 - r0, k], q: w.q.slice(e0, e1), absmax: w.absmax.slice(e0 / bs, Math.ceil(e1 / bs)) };
  },
  save(w) {
    throw new LowbitError('UNSUPPORTED_QUANT_TYPE', `${w.name}: block-wise 8-bit linear weights (GGUF Q8_0) have no bitsandbytes checkpoint form; load with a quantization config (or keepQ8_0: false)`);
  },
  // code[q] * absmax in f32: the same products the CPU kernel forms, so exact
  toFloat32: (w) => dequantizeBlockwise(w.q, { absmax: w.absmax, code: w.code, blocksize: w.blocksize }, { outDtype: 'float32' }),
};
