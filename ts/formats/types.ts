/**
 * What a weight format is (ARCHITECTURE.md, "Weight formats"): one definition per format says
 * how a weight of it is named, sized, sliced by rows, saved and widened to f32. Backends hold
 * their own upload of each format; the capability table (capabilities.ts) says which format runs
 * natively on which backend and what the others are converted to.
 */
import type { StoredDType } from '../tensor/dtypes.js';

/** The devices backends run on (Backend.device). */
export type DeviceKind = 'cpu' | 'webgpu';

/** A tensor as a checkpoint stores it (safetensors-writer's TensorToSave has this shape). */
export interface SavedTensor {
  name: string;
  dtype: StoredDType;
  shape: number[];
  data: Uint8Array;
}

/** The parameters that decide a weight's size before it is read (module sizes, placement). */
export interface SizeParams {
  /** dense: the stored dtype (default F32). */
  dtype?: StoredDType;
  /** 4-bit / block-wise 8-bit: elements per absmax block. */
  blocksize?: number;
}

/** One weight format: `W` is its LoadedWeight variant (`kind` tells them apart). */
export interface WeightFormat<W extends { kind: string; name: string }> {
  readonly kind: W['kind'];
  /** What the weight is, for footprints and messages: 'float16', '4bit-nf4', 'int8', 'q8_0', ... */
  label(w: W): string;
  /** [out, in] of the weight as a linear layer. */
  shape(w: W): [number, number];
  /** Bytes the loaded weight holds in host memory (codes + quantization state, or the dense data). */
  bytes(w: W): number;
  /** Bytes a [out, in] weight of this format takes, from metadata, before anything is read. */
  estimateBytes(shape: readonly number[], p?: SizeParams): number;
  /**
   * Row slices keep the format's blocks whole when they start at a multiple of this many rows
   * (1 for row-wise formats; for block-wise ones the least r with r * in % blocksize == 0).
   */
  rowStep(w: W): number;
  /** Rows [r0, r1) as a weight of the same format (thread slices, fused q/k/v); r0 a multiple of rowStep, r1 too unless it is the last row. */
  sliceRows(w: W, r0: number, r1: number, name?: string): W;
  /** The tensors a bitsandbytes checkpoint stores it as; UNSUPPORTED_QUANT_TYPE when there is no such form. */
  save(w: W): SavedTensor[];
  /** The weight's values as f32 (the conversion for a backend without the format): exact, since f16 / bf16 widen exactly and quantized values are f32 products. */
  toFloat32(w: W): Float32Array;
}

/** Rows per block-aligned step for rows of k elements in blocks of `blocksize`: the least r with r * k % blocksize == 0. */
export function blockRowStep(k: number, blocksize: number): number {
  let a = k % blocksize;
  let b = blocksize;
  while (b) [a, b] = [b, a % b];
  return blocksize / a;
}
