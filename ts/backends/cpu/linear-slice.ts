/**
 * A linear layer's slice (whole, the main thread's rows or a worker's) as the CPU backend hands
 * it to wasm: one spec per weight format (`LinearSpec`, threads/protocol.ts) and the one factory
 * that turns any of them into a wasm `Linear`, on the main thread and in workers alike.
 *
 * A 4-bit absmax goes over whole or as a slice of blocks [b0, b1): f32 per block, or, for a
 * double-quantized weight, kept compressed (1 byte per block + an f32 per nested block of 256 +
 * the 256-entry code) — the kernels rebuild each block's absmax as they reach it, the same f32
 * bits as QuantState.absmaxF32().
 */
import type { QuantState } from '../../quant/quant-state.js';
import type { Linear } from '../../wasm/pkg/lowbit_wasm.js';
import type { wasm } from '../../runtime/wasm.js';
import type { LinearSpec } from './threads/protocol.js';

/** Double-quantized absmax of a run of blocks: `codes[i]` belongs to nested block `(phase + i) / blocksize` of `absmax`. */
export interface NestedSlice {
  codes: Uint8Array;
  code: Float32Array;
  absmax: Float32Array;
  blocksize: number;
  /** Position of codes[0] in its nested block (b0 % blocksize; 0 for a whole weight). */
  phase: number;
  offset: number;
  dtype: string;
}

export type Absmax4Slice = { absmax: Float32Array } | { nested: NestedSlice };

/**
 * The slicer of a state's absmax: `(b0, b1, copy)` gives blocks [b0, b1) as views (copy false)
 * or copies (to post to a worker). `blocks` is the number of blocks.
 */
export function absmax4Slicer(st: QuantState): { blocks: number; slice: (b0: number, b1: number, copy: boolean) => Absmax4Slice } {
  const cut = <T extends Uint8Array | Float32Array>(a: T, i0: number, i1: number, copy: boolean): T => (copy ? a.slice(i0, i1) : a.subarray(i0, i1)) as T;
  const s2 = st.state2;
  if (s2 === undefined || !(st.absmax instanceof Uint8Array)) {
    const absmax = st.absmaxF32();
    return { blocks: absmax.length, slice: (b0, b1, copy) => ({ absmax: cut(absmax, b0, b1, copy) }) };
  }
  const codes = st.absmax;
  const nbs = s2.blocksize;
  const offset = st.offset ?? 0;
  return {
    blocks: codes.length,
    slice: (b0, b1, copy) => ({
      nested: {
        codes: cut(codes, b0, b1, copy),
        // copies: a posted view would clone its whole buffer (a loaded file's, say)
        code: copy ? s2.code.slice() : s2.code,
        absmax: cut(s2.absmax, Math.floor(b0 / nbs), Math.ceil(b1 / nbs), copy),
        blocksize: nbs,
        phase: b0 % nbs,
        offset,
        dtype: s2.dtype,
      },
    }),
  };
}

/** The wasm layer of a spec (throws wasm's errors; wrap in callWasm). */
export function newLinear(w: ReturnType<typeof wasm>, s: LinearSpec): Linear {
  const rows = s.rows[1] - s.rows[0];
  let l: Linear;
  switch (s.kind) {
    case 'linear4': {
      const a = s.scales;
      if ('absmax' in a) l = w.Linear.fourBit(s.packed, a.absmax, s.quantType, s.blocksize, rows, s.k, s.bias);
      else {
        const n = a.nested;
        l = w.Linear.fourBitNested(s.packed, n.codes, n.code, n.absmax, n.blocksize, n.phase, n.offset, n.dtype, s.quantType, s.blocksize, rows, s.k, s.bias);
      }
      break;
    }
    case 'blockwise8':
      l = w.Linear.blockwise8(s.q, s.absmax, s.code, s.blocksize, rows, s.k, s.bias);
      break;
    case 'int8':
      l = w.Linear.int8(s.cb, s.scb, rows, s.k, s.threshold, s.bias);
      break;
    case 'dense':
      l = w.Linear.dense(s.data, rows, s.k, s.bias);
      break;
    case 'denseHalf':
      l = w.Linear.denseHalf(s.data, s.dtype, rows, s.k, s.bias);
      break;
  }
  try {
    if (s.kind === 'linear4' && s.computeDtype) l.setComputeDtype(s.computeDtype);
    if (s.kernels !== undefined) l.setKernels(s.kernels);
  } catch (e) {
    l.free();
    throw e;
  }
  return l;
}
