/**
 * Weights on the GPU. A weight larger than the adapter's storage binding limit is split by
 * output rows into parts that each fit; ops dispatch once per part and write their columns of
 * the output. Everything here is uploaded once and kept until dispose().
 */
import { LowbitError } from '../../errors.js';
import { denseData, type DenseWeight } from '../../formats/dense.js';
import type { QuantType4 } from '../../quant/quant-state.js';
import type { GpuContext } from './context.js';

export type DenseStorage = 'f32' | 'f16' | 'bf16';

/** The WGSL define that selects a dense storage type. */
export function storageDefine(s: DenseStorage): string {
  return s === 'f32' ? 'WEIGHT_F32' : s === 'f16' ? 'WEIGHT_F16' : 'WEIGHT_BF16';
}

/** Rows [n0, n0 + rows) of a weight, with their own buffers. */
export interface Part {
  n0: number;
  rows: number;
  /** f32 values, half bit patterns (two per u32), packed nibbles, int8 rows or 8-bit codes. */
  data: GPUBuffer;
  /** 4-bit: absmax of blocks [blockBase, ...); int8: SCB of the part's rows; block-wise 8-bit: the code table, then absmax. */
  scales?: GPUBuffer;
  bias?: GPUBuffer;
  /** 4-bit: flat index of the first element in `data` (a multiple of 8); block-wise 8-bit: a multiple of 16. */
  flatBase: number;
  blockBase: number;
  /** 4-bit with a double-quantized absmax: the u32 word of `scales` where the 8-bit codes start. */
  codesAt?: number;
}

/**
 * A double-quantized absmax as a QuantState holds it (bitsandbytes' compress_statistics): one
 * 8-bit code per block, an f32 scale per `NESTED_BLOCK` codes, the 256-entry code and the offset.
 */
export interface NestedAbsmax {
  codes: Uint8Array;
  nested: Float32Array;
  code: Float32Array;
  offset: number;
  dtype: 'float32' | 'float16' | 'bfloat16';
}

/** The nested blocksize matmul4.wgsl decodes (bitsandbytes always uses 256). */
export const NESTED_BLOCK = 256;
/** matmul4.wgsl NESTED_ABSMAX: words before the nested scales (code, offset, dtype, padding). */
const NESTED_HEADER_WORDS = 260;

/**
 * The `scales` buffer of a part whose blocks are [b0, b1) with a double-quantized absmax, laid
 * out as matmul4.wgsl `block_scale` reads it; b0 must be a multiple of 4.
 */
function nestedScales(a: NestedAbsmax, b0: number, b1: number): { words: Uint32Array; codesAt: number } {
  const n0 = Math.floor(b0 / NESTED_BLOCK);
  const n1 = Math.ceil(b1 / NESTED_BLOCK);
  const codesAt = NESTED_HEADER_WORDS + (n1 - n0);
  const words = new Uint32Array(codesAt + Math.ceil((b1 - b0) / 4));
  const f = new Float32Array(words.buffer);
  f.set(a.code, 0);
  f[256] = a.offset;
  words[257] = a.dtype === 'float32' ? 0 : a.dtype === 'float16' ? 1 : 2;
  f.set(a.nested.subarray(n0, n1), NESTED_HEADER_WORDS);
  new Uint8Array(words.buffer, codesAt * 4).set(a.codes.subarray(b0, b1));
  return { words, codesAt };
}

function bad(message: string): never {
  throw new LowbitError('INVALID_ARGUMENT', message);
}

/** Splits n rows into runs of at most `perPart` (>= 1) rows. */
function runs(n: number, perPart: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r = 0; r < n; r += perPart) out.push([r, Math.min(n, r + perPart)]);
  return out;
}

function rowsPerPart(ctx: GpuContext, rowBytes: number, slack: number, what: string): number {
  const fit = Math.floor((ctx.limits.weightBinding - slack) / rowBytes);
  if (fit < 1) bad(`${what}: one row of ${rowBytes} bytes exceeds this adapter's storage binding limit (${ctx.limits.weightBinding} bytes)`);
  return fit;
}

function biasPart(ctx: GpuContext, bias: Float32Array | undefined, r0: number, r1: number, name: string): GPUBuffer | undefined {
  return bias === undefined ? undefined : ctx.upload(bias.subarray(r0, r1), `${name}.bias[${r0}:${r1}]`);
}

/** Unquantized [n, k] (linear weight or embedding table): f32 or f16 / bf16 bit patterns. */
export function denseParts(ctx: GpuContext, w: DenseWeight, n: number, k: number, bias?: Float32Array): { parts: Part[]; storage: DenseStorage; bytes: number } {
  const d = denseData(w);
  const storage: DenseStorage = d instanceof Float32Array ? 'f32' : d.dtype === 'float16' ? 'f16' : 'bf16';
  const size = storage === 'f32' ? 4 : 2;
  const values = d instanceof Float32Array ? d : d.data;
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const parts: Part[] = [];
  let total = 0;
  for (const [r0, r1] of runs(n, rowsPerPart(ctx, k * size, 4, w.name))) {
    const slice = bytes.subarray(r0 * k * size, r1 * k * size);
    const data = ctx.upload(slice, `${w.name}[${r0}:${r1}]`);
    const b = biasPart(ctx, bias, r0, r1, w.name);
    total += data.size + (b?.size ?? 0);
    parts.push({ n0: r0, rows: r1 - r0, data, ...(b ? { bias: b } : {}), flatBase: 0, blockBase: 0 });
  }
  return { parts, storage, bytes: total };
}

/**
 * bitsandbytes 4-bit [n, k]: parts keep the original bytes from a word boundary on, and the
 * absmax as given: f32 per block, or double-quantized (kept compressed; the kernels decode it).
 */
export function fourBitParts(ctx: GpuContext, name: string, packed: Uint8Array, absmax: Float32Array | NestedAbsmax, blocksize: number, n: number, k: number, bias?: Float32Array): { parts: Part[]; bytes: number } {
  if (n * k > 0xffff_ffff - 8) bad(`${name}: [${n}, ${k}] has more elements than 32-bit indices reach`);
  const parts: Part[] = [];
  let total = 0;
  // a part's words start at floor(r0 k / 8) and end at ceil(r1 k / 8): up to 8 bytes of slack
  for (const [r0, r1] of runs(n, rowsPerPart(ctx, k / 2, 16, name))) {
    const w0 = Math.floor((r0 * k) / 8);
    const w1 = Math.ceil((r1 * k) / 8);
    // padded to 16 bytes: matmul4.wgsl binds the words as vec4<u32>
    const bytes = new Uint8Array(Math.ceil((w1 - w0) / 4) * 16);
    bytes.set(packed.subarray(w0 * 4, Math.min(w1 * 4, packed.length)));
    // nested: the codes start on a word (4 blocks)
    const b0 = Math.floor((r0 * k) / blocksize) - (absmax instanceof Float32Array ? 0 : Math.floor((r0 * k) / blocksize) % 4);
    const b1 = Math.ceil((r1 * k) / blocksize);
    const scaleData = absmax instanceof Float32Array ? { words: absmax.subarray(b0, b1), codesAt: undefined } : nestedScales(absmax, b0, b1);
    // (the nested header of ~1 KiB does not count against a lowered weightBinding: tests lower it to 1 KiB)
    const scaleBytes = scaleData.words.byteLength - (scaleData.codesAt === undefined ? 0 : NESTED_HEADER_WORDS * 4);
    if (scaleBytes > ctx.limits.weightBinding || scaleData.words.byteLength > ctx.limits.maxBinding) bad(`${name}: the absmax of ${r1 - r0} rows exceed the storage binding limit`);
    const data = ctx.upload(bytes, `${name}[${r0}:${r1}]`);
    const scales = ctx.upload(scaleData.words, `${name}.absmax[${r0}:${r1}]`);
    const b = biasPart(ctx, bias, r0, r1, name);
    total += data.size + scales.size + (b?.size ?? 0);
    parts.push({ n0: r0, rows: r1 - r0, data, scales, ...(b ? { bias: b } : {}), flatBase: w0 * 8, blockBase: b0, ...(scaleData.codesAt !== undefined ? { codesAt: scaleData.codesAt } : {}) });
  }
  return { parts, bytes: total };
}

/** LLM.int8 CB [n, k] int8 + SCB [n]: rows padded to k4 = ceil(k / 4) * 4 bytes. */
export function int8Parts(ctx: GpuContext, name: string, cb: Int8Array, scb: Float32Array, n: number, k: number, bias?: Float32Array): { parts: Part[]; bytes: number } {
  const k4 = Math.ceil(k / 4) * 4;
  const src = new Uint8Array(cb.buffer, cb.byteOffset, cb.byteLength);
  const parts: Part[] = [];
  let total = 0;
  for (const [r0, r1] of runs(n, rowsPerPart(ctx, k4, 0, name))) {
    let bytes: Uint8Array;
    if (k4 === k) bytes = src.subarray(r0 * k, r1 * k);
    else {
      bytes = new Uint8Array((r1 - r0) * k4);
      for (let r = r0; r < r1; r++) bytes.set(src.subarray(r * k, (r + 1) * k), (r - r0) * k4);
    }
    const data = ctx.upload(bytes, `${name}[${r0}:${r1}]`);
    const scales = ctx.upload(scb.subarray(r0, r1), `${name}.SCB[${r0}:${r1}]`);
    const b = biasPart(ctx, bias, r0, r1, name);
    total += data.size + scales.size + (b?.size ?? 0);
    parts.push({ n0: r0, rows: r1 - r0, data, scales, ...(b ? { bias: b } : {}), flatBase: 0, blockBase: 0 });
  }
  return { parts, bytes: total };
}

/**
 * Block-wise 8-bit [n, k] (matmul_blockwise8.wgsl): parts keep the codes from a 16-byte boundary
 * on (vec4<u32> loads), padded to 16 bytes; `scales` holds the 256-entry code table (none for
 * the int8 code: the kernel converts the byte) then the absmax of the part's blocks.
 */
export function blockwise8Parts(ctx: GpuContext, name: string, q: Uint8Array, absmax: Float32Array, code: Float32Array | undefined, blocksize: number, n: number, k: number, bias?: Float32Array): { parts: Part[]; bytes: number } {
  if (n * k > 0xffff_ffff - 16) bad(`${name}: [${n}, ${k}] has more elements than 32-bit indices reach`);
  const codeWords = code === undefined ? 0 : 256;
  const parts: Part[] = [];
  let total = 0;
  for (const [r0, r1] of runs(n, rowsPerPart(ctx, k, 32, name))) {
    const f0 = Math.floor((r0 * k) / 16) * 16;
    const bytes = new Uint8Array(Math.ceil((r1 * k - f0) / 16) * 16);
    bytes.set(q.subarray(f0, r1 * k));
    const b0 = Math.floor((r0 * k) / blocksize);
    const b1 = Math.ceil((r1 * k) / blocksize);
    const words = new Float32Array(codeWords + b1 - b0);
    if (code !== undefined) words.set(code);
    words.set(absmax.subarray(b0, b1), codeWords);
    // (the 1 KiB code table does not count against a lowered weightBinding, as fourBitParts' nested header)
    if ((b1 - b0) * 4 > ctx.limits.weightBinding || words.byteLength > ctx.limits.maxBinding) bad(`${name}: the absmax of ${r1 - r0} rows exceed the storage binding limit`);
    const data = ctx.upload(bytes, `${name}[${r0}:${r1}]`);
    const scales = ctx.upload(words, `${name}.absmax[${r0}:${r1}]`);
    const b = biasPart(ctx, bias, r0, r1, name);
    total += data.size + scales.size + (b?.size ?? 0);
    parts.push({ n0: r0, rows: r1 - r0, data, scales, ...(b ? { bias: b } : {}), flatBase: f0, blockBase: b0 });
  }
  return { parts, bytes: total };
}

export function destroyParts(ctx: GpuContext, parts: readonly Part[]): void {
  for (const p of parts) {
    ctx.destroyLater(p.data);
    if (p.scales) ctx.destroyLater(p.scales);
    if (p.bias) ctx.destroyLater(p.bias);
  }
}

/**
 * The 16 values of a 4-bit type as the dequantization kernels use them: bitsandbytes' table
 * (quantMap) except FP4 code 8, which the kernels (CUDA, bitsandbytes' C++, our CPU backend)
 * dequantize to -0.0 where the stored quant_map has +0.0.
 */
export function kernelCode(quantMap: Float32Array, quantType: QuantType4): Float32Array {
  const v = Float32Array.from(quantMap);
  if (quantType === 'fp4') v[8] = -0;
  return v;
}
