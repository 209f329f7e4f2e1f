/**
 * The TypeScript API against bitsandbytes' own output (the same vectors the Rust tests use),
 * through the real wasm module with its SIMD128 kernels.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { init, quantize4bit, dequantize4bit, QuantState, quantizeBlockwise, dequantizeBlockwise, int8VectorwiseQuant, dynamicMap, quantMap, simd128Available, type StateDict } from '../dist/index.js';
import { bytes, casesOf, f32, input, manifest, u16, u32, type TensorRef } from './helpers/fixtures.js';

beforeAll(async () => {
  await init();
});

function asDict(c: Record<string, any>): StateDict {
  const d: StateDict = {};
  for (const [k, r] of Object.entries(c.as_dict as Record<string, TensorRef>)) d[k] = { dtype: r.dtype, shape: r.shape, data: bytes(r) };
  return d;
}

/** Output bits as numbers (f32 bits, or f16/bf16 bits). */
function bitsOf(a: Float32Array | Uint16Array): number[] {
  return a instanceof Float32Array ? Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length)) : Array.from(a);
}

describe('bitsandbytes golden vectors through the TypeScript API', () => {
  it('runs the SIMD128 build', () => {
    expect(simd128Available()).toBe(true);
  });

  it('has the codes of bitsandbytes', () => {
    expect(bitsOf(dynamicMap(true))).toEqual(bitsOf(f32(manifest.tables.dynamic_signed!)));
    expect(bitsOf(dynamicMap(false))).toEqual(bitsOf(f32(manifest.tables.dynamic_unsigned!)));
    expect(bitsOf(quantMap('nf4'))).toEqual(bitsOf(f32(manifest.tables.nf4!)));
    expect(bitsOf(quantMap('fp4'))).toEqual(bitsOf(f32(manifest.tables.fp4!)));
  });

  const cases4 = casesOf('quantize_4bit');
  it('covers the 4-bit sweep', () => {
    expect(cases4.length).toBeGreaterThanOrEqual(80);
    expect(new Set(cases4.map((c) => c.blocksize))).toEqual(new Set([32, 64, 128, 256, 512, 1024, 2048, 4096]));
  });

  for (const c of cases4) {
    it(`4-bit ${c.name}`, () => {
      // Loading what bitsandbytes wrote: state dict -> QuantState -> JSON, dict and dequant.
      const dict = asDict(c);
      const st = QuantState.fromDict(dict);
      expect(st.toJSONString()).toBe(c.quant_state_json);
      const back = st.toDict();
      expect(Object.keys(back)).toEqual(Object.keys(dict));
      for (const k of Object.keys(dict)) expect(Buffer.from(back[k]!.data).equals(Buffer.from(dict[k]!.data)), k).toBe(true);
      const packedBnb = bytes(c.packed);
      for (const [dt, r] of Object.entries(c.dequant as Record<string, TensorRef>)) {
        const ours = bitsOf(dequantize4bit(packedBnb, st, { outDtype: dt as 'float32' }));
        const theirs = r.dtype === 'float32' ? Array.from(u32(r)) : Array.from(u16(r));
        const sign = dt === 'float32' ? 0x80000000 : 0x8000;
        for (let k = 0; k < theirs.length; k++) {
          if (ours[k] === theirs[k]) continue;
          // Only allowed difference: FP4 code 8 is -0.0 in the kernels, +0.0 in bnb's CPU fallback.
          const nib = k % 2 === 0 ? packedBnb[k >> 1]! >> 4 : packedBnb[k >> 1]! & 15;
          expect({ k, nib, zeroSign: c.quant_type === 'fp4' && nib === 8 && ((ours[k]! | sign) >>> 0) === ((theirs[k]! | sign) >>> 0) && (ours[k]! & ~sign) === 0 }).toEqual({ k, nib, zeroSign: true });
        }
      }
      if (c.absmax_rebuilt) expect(bitsOf(st.absmaxF32())).toEqual(Array.from(u32(c.absmax_rebuilt)));

      // Quantizing the same input ourselves: every 4-bit code equals bitsandbytes'.
      const q = quantize4bit(input(c.input), { quantType: c.quant_type, blocksize: c.blocksize, compressStatistics: c.compress_statistics, shape: c.input.shape });
      expect(Buffer.from(q.packed).equals(Buffer.from(packedBnb))).toBe(true);
      expect(q.quantState.shape).toEqual(c.input.shape);
      expect(q.quantState.dtype).toBe(c.input.dtype);
      expect(q.quantState.nested).toBe(c.compress_statistics);
      if (!c.compress_statistics) expect(bitsOf(q.quantState.absmax as Float32Array)).toEqual(Array.from(u32(c.absmax)));
    });
  }

  // bitsandbytes 0.50's CPU kernel approximates the nearest-code search with a lookup table;
  // we search exactly. Differing codes are counted over all cases (the total is pinned, as in
  // crates/lowbit-core/tests/golden.rs); the cases built on the midpoints account for most.
  let blockwiseDiffs = 0;
  for (const c of casesOf('quantize_blockwise')) {
    it(`8-bit blockwise ${c.name}`, () => {
      const state = { absmax: f32(c.absmax), code: f32(c.code), blocksize: c.blocksize };
      const out = dequantizeBlockwise(bytes(c.q), state, { outDtype: c.input.dtype });
      expect(bitsOf(out)).toEqual(c.dequant.dtype === 'float32' ? Array.from(u32(c.dequant)) : Array.from(u16(c.dequant)));
      const ours = quantizeBlockwise(input(c.input), { blocksize: c.blocksize, code: f32(c.code) });
      expect(bitsOf(ours.state.absmax)).toEqual(Array.from(u32(c.absmax)));
      const theirs = bytes(c.q);
      expect(ours.q.length).toBe(theirs.length);
      for (let i = 0; i < theirs.length; i++) if (ours.q[i] !== theirs[i]) blockwiseDiffs++;
    });
  }
  it('8-bit codes differ from the lookup-table approximation only where pinned', () => {
    expect(blockwiseDiffs).toBe(538);
  });

  for (const c of casesOf('int8_vectorwise_quant')) {
    it(`int8 vector-wise ${c.name}`, () => {
      const r = int8VectorwiseQuant(input(c.input), { shape: c.input.shape, threshold: c.threshold });
      expect(Buffer.from(r.CB.buffer, r.CB.byteOffset, r.CB.byteLength).equals(Buffer.from(bytes(c.CB)))).toBe(true);
      expect(bitsOf(r.SCB)).toEqual(Array.from(u32(c.SCB)));
      if (c.outlier_cols) expect(Array.from(r.outlierCols ?? [])).toEqual(Array.from(u32(c.outlier_cols)));
      else expect(r.outlierCols === null || r.outlierCols.length === 0).toBe(true);
    });
  }
});
