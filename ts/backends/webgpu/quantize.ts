/**
 * Block-wise 4-bit quantization on the GPU (shaders/quantize4.wgsl): the packed codes and absmax
 * equal the CPU quantizer's (quantize4bit) bit for bit, except where WGSL may flush subnormals
 * (subnormal inputs; |x| < 2^-126 · absmax, where FP4 can pick the other zero's code).
 * Plain absmax only: double quantization (compressStatistics) stays on the CPU.
 */
import { LowbitError } from '../../errors.js';
import { QuantState, type QuantType4 } from '../../quant/quant-state.js';
import { quantMap } from '../../quant/codes.js';
import { fromHalf, type FloatInput } from '../../tensor/dtypes.js';
import type { GpuContext } from './context.js';
import { kernelCode } from './weights.js';

const BLOCKSIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/** f32 -> u32 ordered like the values (-0 just below +0), as key() in quantize4.wgsl. */
function key(v: number): number {
  const b = new Uint32Array(new Float32Array([v]).buffer)[0]!;
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

/** Sorted order, f32 midpoints and the code of 0.0, as crates/lowbit-core/src/codebook.rs builds them. */
export function encodeTables(quantType: QuantType4): { midKeys: Uint32Array; order: Uint32Array; padCode: number } {
  const values = kernelCode(quantMap(quantType), quantType);
  // stable sort by value (FP4's -0 and +0 stay in code order)
  const order = Array.from({ length: 16 }, (_, i) => i).sort((a, b) => values[a]! - values[b]!);
  const mids = Array.from({ length: 15 }, (_, i) => Math.fround(Math.fround(values[order[i]!]! + values[order[i + 1]!]!) / 2));
  const midKeys = new Uint32Array(16);
  mids.forEach((m, i) => (midKeys[i] = key(m)));
  midKeys[15] = 0xffffffff;
  let count = 0;
  for (const m of mids) if (0 > m) count++;
  return { midKeys, order: Uint32Array.from(order), padCode: order[count]! };
}

/** Options of `WebGpuBackend.quantize4bit` (4-bit quantization on the GPU). */
export interface GpuQuantize4Options {
  quantType?: QuantType4;
  blocksize?: number;
  shape?: readonly number[];
}

export async function quantize4bitGpu(ctx: GpuContext, input: FloatInput, options: GpuQuantize4Options): Promise<{ packed: Uint8Array; quantState: QuantState }> {
  const { quantType = 'fp4', blocksize = 64 } = options;
  if (!BLOCKSIZES.includes(blocksize)) throw new LowbitError('UNSUPPORTED_BLOCKSIZE', `blocksize must be one of ${BLOCKSIZES.join(', ')}, got ${blocksize}`);
  if (quantType !== 'nf4' && quantType !== 'fp4' && quantType !== 'int4') throw new LowbitError('UNSUPPORTED_QUANT_TYPE', `unknown 4-bit quant type '${quantType}'`);
  const x = input instanceof Float32Array ? input : fromHalf(input);
  const dtype = input instanceof Float32Array ? 'float32' : input.dtype;
  const n = x.length;
  if (n === 0) throw new LowbitError('EMPTY_TENSOR', 'cannot quantize an empty tensor');
  const shape = options.shape ?? [n];
  if (shape.reduce((a, b) => a * b, 1) !== n) throw new LowbitError('LENGTH_MISMATCH', `shape [${shape.join(', ')}] has ${shape.reduce((a, b) => a * b, 1)} elements but the data has ${n}`);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(x[i]!)) throw new LowbitError('NON_FINITE', `input element ${i} is ${x[i]} (NaN/Inf cannot be quantized)`, { index: i });
  }
  const t = encodeTables(quantType);
  const pipe = ctx.pipeline('quantize4.wgsl', 'quantize4');
  const nblocks = Math.ceil(n / blocksize);
  const packed = new Uint8Array(Math.ceil(n / 2));
  const absmax = new Float32Array(nblocks);
  // chunks of whole blocks that fit a storage binding
  const perChunk = Math.max(1, Math.floor(ctx.limits.weightBinding / 4 / blocksize)) * blocksize;
  const reads: Promise<void>[] = [];
  for (let c0 = 0; c0 < n; c0 += perChunk) {
    const c1 = Math.min(n, c0 + perChunk);
    const cn = c1 - c0;
    const cb = Math.ceil(cn / blocksize);
    const uni = ctx.params(pipe, { n: cn, blocksize, nblocks: cb, pad_code: t.padCode, mid_key: t.midKeys, order: t.order });
    const words = Math.ceil(cn / 8);
    const out = ctx.acquire(words * 4);
    const am = ctx.acquire(cb * 4);
    const [gx, gy] = ctx.grid(cb);
    ctx.dispatch(pipe, { p: ctx.uniform(uni), x: ctx.stage(x.subarray(c0, c1), false), packed: { buffer: out, size: words * 4 }, absmax: { buffer: am, size: cb * 4 } }, gx, gy);
    reads.push(
      (async () => {
        try {
          const [p, a] = await Promise.all([ctx.readBuffer(out, 0, words * 4), ctx.readBuffer(am, 0, cb * 4)]);
          packed.set(new Uint8Array(p, 0, Math.ceil(cn / 2)), c0 / 2);
          absmax.set(new Float32Array(a), c0 / blocksize);
        } finally {
          ctx.release(out);
          ctx.release(am);
        }
      })(),
    );
  }
  await Promise.all(reads);
  const quantState = new QuantState({ quantType, blocksize, dtype, shape: [...shape], code: quantMap(quantType), absmax });
  return { packed, quantState };
}
