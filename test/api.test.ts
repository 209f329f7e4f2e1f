/** API behaviour beyond bit-exactness: INT4, dtype helpers, round-trip error bounds. */
import { beforeAll, describe, expect, it } from 'vitest';
import { init, quantize4bit, dequantize4bit, QuantState, toHalf, fromHalf, quantizeBlockwise, dequantizeBlockwise, int8VectorwiseQuant, int8VectorwiseDequant, quantMap } from '../dist/index.js';

beforeAll(async () => {
  await init();
});

/** Deterministic roughly-normal data. */
function signal(n: number, seed = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  return new Float32Array(n).map(() => (u() + u() + u() + u() - 2) * 0.8);
}

describe('INT4 (lowbit extension)', () => {
  it('uses 15 symmetric levels q/7 stored as two\'s complement nibbles', () => {
    expect(Array.from(quantMap('int4'))).toEqual(Array.from({ length: 16 }, (_, c) => Math.fround(((c << 28) >> 28) / 7)));
    const x = new Float32Array([1, -1, 3 / 7, -3 / 7, 0, 0.5 / 7, 6.4 / 7, -6.6 / 7]);
    const { packed } = quantize4bit(x, { quantType: 'int4' });
    // 1 -> 7, -1 -> -7 (9), 3/7 -> 3, -3/7 -> -3 (13), 0 -> 0, 0.5/7 ties down to 0, 6.4/7 -> 6, -6.6/7 -> -7 (9)
    expect(Array.from(packed)).toEqual([0x79, 0x3d, 0x00, 0x69]);
  });

  it('reconstructs within half a level of absmax / 7', () => {
    const x = signal(4096, 7);
    const { packed, quantState } = quantize4bit(x, { quantType: 'int4', blocksize: 128 });
    const y = dequantize4bit(packed, quantState, { outDtype: 'float32' });
    const am = quantState.absmax as Float32Array;
    for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual((am[i >> 7]! / 7) * 0.5 + 1e-6);
  });
});

describe('round trips', () => {
  it('NF4 error stays within half the widest NF4 gap times absmax', () => {
    const x = signal(64 * 100, 3);
    const { packed, quantState } = quantize4bit(x, { quantType: 'nf4', compressStatistics: true });
    const y = dequantize4bit(packed, quantState, { outDtype: 'float32' });
    const am = quantState.absmaxF32();
    // widest gap between NF4 codes: -0.6961928 - (-1) (codes 0 and 1); double quant moves absmax < 1%
    for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(am[i >> 6]! * 0.1519036 * 1.01 + 1e-6);
    const rel = Math.sqrt(x.reduce((a, v, i) => a + (v - y[i]!) ** 2, 0) / x.reduce((a, v) => a + v * v, 0));
    expect(rel).toBeLessThan(0.12);
  });

  it('a state survives toDict -> fromDict unchanged', () => {
    const { quantState } = quantize4bit(toHalf(signal(1000), 'bfloat16'), { quantType: 'fp4', blocksize: 32, compressStatistics: true, shape: [10, 100] });
    const again = QuantState.fromDict(quantState.toDict());
    expect(again.toJSONString()).toBe(quantState.toJSONString());
    expect(again.dtype).toBe('bfloat16');
    expect(Array.from(again.absmaxF32())).toEqual(Array.from(quantState.absmaxF32()));
    // module prefixes, as in a transformers checkpoint, are accepted
    const prefixed = Object.fromEntries(Object.entries(quantState.toDict()).map(([k, v]) => [`model.layers.0.mlp.up_proj.weight.${k}`, v]));
    expect(QuantState.fromDict(prefixed).toJSONString()).toBe(quantState.toJSONString());
  });

  it('8-bit blockwise error is below 1% of absmax', () => {
    const x = signal(10_000, 5);
    const { q, state } = quantizeBlockwise(x, { blocksize: 256 });
    const y = dequantizeBlockwise(q, state);
    for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(state.absmax[i >> 8]! * 0.01);
  });

  it('int8 vector-wise reports outlier columns and reconstructs the rest', () => {
    const x = signal(8 * 64, 9);
    x[3 * 64 + 5] = 9; // outlier in column 5
    x[6 * 64 + 40] = -7.5; // outlier in column 40
    const r = int8VectorwiseQuant(toHalf(x, 'float16'), { shape: [8, 64], threshold: 6 });
    expect(Array.from(r.outlierCols!)).toEqual([5, 40]);
    const y = int8VectorwiseDequant(r.CB, r.SCB, 64);
    for (let i = 0; i < x.length; i++) {
      const col = i % 64;
      if (col === 5 || col === 40) expect(y[i]).toBe(0);
      else expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(r.SCB[Math.floor(i / 64)]! / 127 + 1e-3);
    }
  });

  it('toHalf rounds to nearest even and fromHalf is exact', () => {
    const h = toHalf([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 2 ** -25], 'float16');
    expect(Array.from(h.data)).toEqual([0x3c00, 0x3c00, 0x3c02, 0x7c00, 0x0000]);
    expect(Array.from(fromHalf({ dtype: 'bfloat16', data: new Uint16Array([0x3f80, 0xc000]) }))).toEqual([1, -2]);
  });
});
