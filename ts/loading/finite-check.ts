/**
 * NaN / Inf in weights make every logit NaN and generation emit token 0 for ever, with no error.
 * Loading looks for them in what is kept as stored (dense float tensors) and in the float scales
 * of quantized weights (4-bit absmax, LLM.int8 SCB, block-wise 8-bit absmax); quantizing a float
 * tensor refuses non-finite input itself (NON_FINITE from the quantizer). `allowNonFinite: true`
 * (loadWeights / fromPretrained) skips the check and quantizes as bitsandbytes does.
 */
import { LowbitError } from '../errors.js';
import type { LoadedWeight } from './load-weights.js';

/** Index of the first non-finite element of raw F32 / F16 / BF16 bytes, or -1 (other dtypes: -1). */
export function firstNonFiniteBytes(dtype: string, data: Uint8Array): number {
  if (dtype === 'F32') {
    const n = data.byteLength >>> 2;
    const u = data.byteOffset % 4 === 0 ? new Uint32Array(data.buffer, data.byteOffset, n) : new Uint32Array(data.slice(0, n * 4).buffer);
    for (let i = 0; i < n; i++) if ((u[i]! & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  if (dtype === 'F16' || dtype === 'BF16') {
    // An all-ones exponent is Inf or NaN.
    const mask = dtype === 'F16' ? 0x7c00 : 0x7f80;
    const n = data.byteLength >>> 1;
    const u = data.byteOffset % 2 === 0 ? new Uint16Array(data.buffer, data.byteOffset, n) : new Uint16Array(data.slice(0, n * 2).buffer);
    for (let i = 0; i < n; i++) if ((u[i]! & mask) === mask) return i;
    return -1;
  }
  return -1;
}

function firstNonFiniteF32(a: Float32Array | Uint8Array | undefined): number {
  if (!(a instanceof Float32Array)) return -1;
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return i;
  return -1;
}

/** Throws NON_FINITE naming the tensor (and file) when a loaded weight holds NaN / Inf. */
export function checkFiniteWeight(w: LoadedWeight, file: string): void {
  let where = '';
  let i = -1;
  if (w.kind === 'dense') {
    i = firstNonFiniteBytes(w.dtype, w.data);
  } else if (w.kind === '4bit') {
    i = firstNonFiniteF32(w.quantState.absmax);
    where = ' (its absmax)';
    if (i < 0 && w.quantState.state2) {
      i = firstNonFiniteF32(w.quantState.state2.absmax);
      where = ' (its nested absmax)';
    }
  } else if (w.kind === 'int8') {
    i = firstNonFiniteF32(w.SCB);
    where = ' (its SCB)';
  } else {
    i = firstNonFiniteF32(w.absmax);
    where = ' (its absmax)';
  }
  if (i >= 0) {
    throw new LowbitError('NON_FINITE', `${file}: tensor '${w.name}'${where} holds NaN or Inf at element ${i}: the model would compute NaN logits (pass allowNonFinite: true to load it anyway)`, { index: i, file });
  }
}
