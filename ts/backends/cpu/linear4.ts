/**
 * A 4-bit weight's absmax as the CPU backend hands it to wasm `Linear4`, whole or a thread's
 * slice of blocks [b0, b1): f32 per block, or, for a double-quantized weight, kept compressed
 * (1 byte per block + an f32 per nested block of 256 + the 256-entry code) — the kernels rebuild
 * each block's absmax as they reach it, the same f32 bits as QuantState.absmaxF32().
 */
import type { QuantState } from '../../quant/quant-state.js';
import type { Linear4 } from '../../wasm/pkg/lowbit_wasm.js';
import type { wasm } from '../../runtime/wasm.js';

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

/** `new Linear4(..)` or `Linear4.newNested(..)` for `rows` x `k` weights (throws wasm's errors; wrap in callWasm). */
export function newLinear4(w: ReturnType<typeof wasm>, packed: Uint8Array, a: Absmax4Slice, quantType: string, blocksize: number, rows: number, k: number, bias?: Float32Array): Linear4 {
  if ('absmax' in a) return new w.Linear4(packed, a.absmax, quantType, blocksize, rows, k, bias);
  const s = a.nested;
  return w.Linear4.newNested(packed, s.codes, s.code, s.absmax, s.blocksize, s.phase, s.offset, s.dtype, quantType, blocksize, rows, k, bias);
}
