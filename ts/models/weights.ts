/** Turning loaded tensors into backend handles: lookups with clear errors, GPT-2's Conv1D layout. */
import { LowbitError } from '../errors.js';
import { quantize4bit, type Quantize4bitOptions, type Quantized4bit } from '../quant/blockwise4.js';
import { int8VectorwiseQuant } from '../quant/int8.js';
import { toHalf, type FloatInput } from '../tensor/dtypes.js';
import { denseToFloat32 } from '../formats/dense.js';
import { formatOf, type DenseWeight, type LoadedWeight } from '../formats/index.js';
import type { QuantizeOnLoad } from '../loading/load-weights.js';

export class WeightMap {
  constructor(protected readonly m: Map<string, LoadedWeight>) {}

  /** The same tensors; what is taken through the view is also stored in `into` (host copies for a CPU fallback). */
  recording(into: Map<string, LoadedWeight>): WeightMap {
    const outer = this;
    return new (class extends WeightMap {
      override take(name: string): LoadedWeight {
        const w = outer.take(name);
        into.set(name, w);
        return w;
      }
    })(this.m);
  }

  has(name: string): boolean {
    return this.m.has(name);
  }

  /** Removes and returns a tensor (so its memory can go once the backend holds it). */
  take(name: string): LoadedWeight {
    const w = this.m.get(name);
    if (!w) throw new LowbitError('MALFORMED_FILE', `the checkpoint has no tensor '${name}'`);
    this.m.delete(name);
    return w;
  }

  takeDense(name: string): DenseWeight {
    const w = this.take(name);
    if (w.kind !== 'dense') throw new LowbitError('MALFORMED_FILE', `'${name}' is quantized but must be a plain tensor`);
    return w;
  }

  takeOptional(name: string): DenseWeight | undefined {
    return this.m.has(name) ? this.takeDense(name) : undefined;
  }

  remaining(): string[] {
    return [...this.m.keys()];
  }
}

/** A dense weight as f32 (may share memory with w.data for F32). */
export const denseToF32: (w: DenseWeight) => Float32Array = denseToFloat32;

/** [rows, cols] -> [cols, rows], keeping the dtype (GPT-2's Conv1D stores Linear weights transposed). */
export function transposeDense(w: DenseWeight): DenseWeight {
  const [r, c] = w.shape as [number, number];
  const size = w.dtype === 'F32' ? 4 : 2;
  const out = new Uint8Array(w.data.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.set(w.data.subarray((i * c + j) * size, (i * c + j + 1) * size), (j * r + i) * size);
  return { kind: 'dense', name: w.name, dtype: w.dtype, shape: [c, r], data: out };
}

/**
 * Quantizes a dense [out, in] weight the way loadWeights does (used after a layout change);
 * `q4` as loadWeights' option of that name (CpuBackend.quantize4bit on the threads).
 */
export function quantizeDense(w: DenseWeight, q: QuantizeOnLoad, q4: (input: FloatInput, options: Quantize4bitOptions) => Quantized4bit = quantize4bit): LoadedWeight {
  const shape = w.shape as [number, number];
  const f = denseToF32(w);
  if (q.quantType === 'int8') {
    const r = int8VectorwiseQuant(toHalf(f, 'float16'), { shape });
    return { kind: 'int8', name: w.name, CB: r.CB, SCB: r.SCB, shape };
  }
  const input = w.dtype === 'F32' ? f : { dtype: w.dtype === 'F16' ? ('float16' as const) : ('bfloat16' as const), data: new Uint16Array(w.data.slice().buffer) };
  const { packed, quantState } = q4(input, { quantType: q.quantType, blocksize: q.blocksize ?? 64, compressStatistics: q.doubleQuant ?? false, shape });
  return { kind: '4bit', name: w.name, packed, quantState };
}

/** Splits a [parts * n, k] weight by rows into `parts` weights of [n, k] (GPT-2's fused c_attn), each in its own format. */
export function splitRows(w: LoadedWeight, parts: number): LoadedWeight[] {
  const f = formatOf(w);
  const [r] = f.shape(w);
  const n = r / parts;
  return Array.from({ length: parts }, (_, p) => f.sliceRows(w, p * n, (p + 1) * n, `${w.name}[${p}]`));
}

/** Splits a 1-D tensor into `parts` equal pieces (the fused q/k/v bias). */
export function splitVector(w: DenseWeight, parts: number): DenseWeight[] {
  const len = w.shape[0]!;
  const n = len / parts;
  const size = w.data.length / len;
  return Array.from({ length: parts }, (_, p) => ({ ...w, name: `${w.name}[${p}]`, shape: [n], data: w.data.slice(p * n * size, (p + 1) * n * size) }));
}
