/**
 * Bad input gets a LowbitError with a stable code and an actionable message, and the wasm
 * instance keeps working after every one of them (no Rust panic reaches JavaScript).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { init, LowbitError, quantize4bit, dequantize4bit, QuantState, quantizeBlockwise, dequantizeBlockwise, int8VectorwiseQuant, toHalf, type StateDict } from '../dist/index.js';
import { hex } from './helpers/fixtures.js';

beforeAll(async () => {
  await init();
});

// spec §2.6: a hand-checkable NF4 example every backend agrees on.
const example = new Float32Array([0.5, -1.0, 0.25, 0.0, 0.1, -0.05, 0.001, 0.9]);
function stillWorks(): void {
  const { packed, quantState } = quantize4bit(example, { quantType: 'nf4' });
  expect(hex(packed)).toBe('c0a7867f');
  expect(Array.from(dequantize4bit(packed, quantState))[1]).toBe(-1);
}

function expectLowbitError(f: () => unknown, code: string, message?: RegExp): LowbitError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a throw').toBeInstanceOf(LowbitError);
  const e = caught as LowbitError;
  expect(e.code).toBe(code);
  if (message) expect(e.message).toMatch(message);
  stillWorks();
  return e;
}

function goodState(nested = false): { packed: Uint8Array; st: QuantState } {
  const x = new Float32Array(700).map((_, i) => Math.sin(i * 0.37));
  const { packed, quantState } = quantize4bit(x, { quantType: 'nf4', blocksize: 64, compressStatistics: nested, shape: [7, 100] });
  return { packed, st: quantState };
}

describe('typed errors for bad input', () => {
  it('unsupported blocksize', () => {
    for (const bs of [48, 16, 8192, 0, -64, 64.5]) expectLowbitError(() => quantize4bit(example, { blocksize: bs }), 'UNSUPPORTED_BLOCKSIZE', /blocksize/);
    expectLowbitError(() => quantizeBlockwise(example, { blocksize: 100 }), 'UNSUPPORTED_BLOCKSIZE');
  });

  it('unsupported quant type and dtypes', () => {
    expectLowbitError(() => quantize4bit(example, { quantType: 'nf3' as never }), 'UNSUPPORTED_QUANT_TYPE', /nf4/);
    expectLowbitError(() => quantize4bit({ dtype: 'float64', data: new Uint16Array(4) } as never), 'UNSUPPORTED_DTYPE');
    expectLowbitError(() => quantize4bit(new Float64Array(4) as never), 'UNSUPPORTED_DTYPE');
    const { packed, st } = goodState();
    expectLowbitError(() => dequantize4bit(packed, st, { outDtype: 'int8' as never }), 'UNSUPPORTED_DTYPE', /float32/);
  });

  it('length and shape mismatches', () => {
    expectLowbitError(() => quantize4bit(example, { shape: [3, 3] }), 'LENGTH_MISMATCH', /9 elements/);
    expectLowbitError(() => quantize4bit(example, { shape: [2 ** 31, 2 ** 31] }), 'INVALID_ARGUMENT');
    expectLowbitError(() => quantize4bit(example, { shape: [-1, 8] }), 'INVALID_ARGUMENT');
    const { packed, st } = goodState();
    expectLowbitError(() => dequantize4bit(packed.subarray(1), st), 'LENGTH_MISMATCH', /bytes/);
    expectLowbitError(() => int8VectorwiseQuant(example, { shape: [3, 2] }), 'LENGTH_MISMATCH');
    const bw = quantizeBlockwise(example, { blocksize: 64 });
    expectLowbitError(() => dequantizeBlockwise(bw.q, { ...bw.state, absmax: new Float32Array(3) }), 'INCONSISTENT_STATE');
  });

  it('NaN and Inf name the first bad element', () => {
    const x = new Float32Array(300).fill(0.25);
    x[130] = Infinity;
    x[250] = NaN;
    expect(expectLowbitError(() => quantize4bit(x), 'NON_FINITE', /element 130/).index).toBe(130);
    expect(expectLowbitError(() => quantize4bit(toHalf(x, 'bfloat16'), { quantType: 'nf4' }), 'NON_FINITE').index).toBe(130);
    expect(expectLowbitError(() => quantizeBlockwise(x, { blocksize: 64 }), 'NON_FINITE').index).toBe(130);
    expect(expectLowbitError(() => int8VectorwiseQuant(x), 'NON_FINITE').index).toBe(130);
    // Opting in quantizes them as bitsandbytes would: the finite blocks are unaffected.
    const ok = quantize4bit(x, { quantType: 'nf4', allowNonFinite: true });
    expect(hex(ok.packed.subarray(0, 32))).toBe(hex(quantize4bit(new Float32Array(64).fill(0.25), { quantType: 'nf4' }).packed));
    const am = ok.quantState.absmax as Float32Array;
    expect(am[2]).toBe(Infinity);
  });

  it('empty tensors', () => {
    expectLowbitError(() => quantize4bit(new Float32Array(0)), 'EMPTY_TENSOR');
    expectLowbitError(() => quantizeBlockwise(new Float32Array(0)), 'EMPTY_TENSOR');
    expectLowbitError(() => int8VectorwiseQuant(new Float32Array(0), { shape: [0, 4] }), 'EMPTY_TENSOR');
  });

  it('a QuantState whose fields disagree', () => {
    const { st } = goodState();
    const f = st.fields();
    expectLowbitError(() => new QuantState({ ...f, absmax: new Float32Array(3) }), 'INCONSISTENT_STATE', /absmax has 3 entries/);
    expectLowbitError(() => new QuantState({ ...f, code: new Float32Array(8) }), 'INCONSISTENT_STATE', /16 entries/);
    expectLowbitError(() => new QuantState({ ...f, shape: [7, 101] }), 'INCONSISTENT_STATE');
    expectLowbitError(() => new QuantState({ ...f, blocksize: 96 }), 'UNSUPPORTED_BLOCKSIZE');
    const n = goodState(true).st.fields();
    expectLowbitError(() => new QuantState({ ...n, state2: { ...n.state2!, absmax: new Float32Array(5) } }), 'INCONSISTENT_STATE', /nested_absmax/);
    expectLowbitError(() => new QuantState({ ...n, absmax: new Float32Array(11) }), 'INCONSISTENT_STATE', /Uint8Array/);
  });

  it('malformed state dicts', () => {
    const good: StateDict = goodState(true).st.toDict();
    const key = 'quant_state.bitsandbytes__nf4';
    const withJson = (text: string): StateDict => ({ ...good, [key]: { dtype: 'uint8', shape: [text.length], data: new TextEncoder().encode(text) } });
    expect(QuantState.fromDict(good).nested).toBe(true);
    expectLowbitError(() => QuantState.fromDict(withJson('{"quant_type": "nf4", ')), 'PARSE', /malformed/);
    expectLowbitError(() => QuantState.fromDict(withJson('{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [7, 100]}')), 'INCONSISTENT_STATE', /nf4/);
    expectLowbitError(() => QuantState.fromDict(withJson('{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [7, 100], "extra": 1}')), 'PARSE', /extra/);
    expectLowbitError(() => QuantState.fromDict({ ...good, [key]: { dtype: 'uint8', shape: [2], data: new Uint8Array([0xff, 0xfe]) } }), 'PARSE', /UTF-8/);
    const { absmax: _a, ...noAbsmax } = good;
    expectLowbitError(() => QuantState.fromDict(noAbsmax), 'PARSE', /absmax/);
    const { [key]: _j, ...noJson } = good;
    expectLowbitError(() => QuantState.fromDict(noJson), 'PARSE', /bitsandbytes__nf4/);
    expectLowbitError(() => QuantState.fromDict({ ...good, 'weight.bogus': good.absmax! }), 'PARSE', /bogus/);
    expectLowbitError(() => QuantState.fromDict({ ...good, quant_map: { ...good.quant_map!, dtype: 'float16', shape: [32] } }), 'INCONSISTENT_STATE', /float32/);
    expectLowbitError(() => QuantState.fromDict({ ...good, nested_absmax: { dtype: 'float32', shape: [3], data: new Uint8Array(8) } }), 'LENGTH_MISMATCH');
    expectLowbitError(() => QuantState.fromDict(null as never), 'INVALID_ARGUMENT');
  });

  it('negative int8 threshold', () => {
    expectLowbitError(() => int8VectorwiseQuant(example, { threshold: -1 }), 'INVALID_ARGUMENT', /threshold/);
  });
});
