/**
 * Weight formats: the LoadedWeight variants and, per variant, its definition (types.ts). Code that
 * needs a weight's size, label, row slices, checkpoint form or f32 values asks `formatOf(w)`
 * instead of switching on `w.kind`; which backend runs which format is capabilities.ts.
 *
 * Adding a format: its file here (the weight interface + a WeightFormat), one line in FORMATS and
 * one row in CAPABILITIES; then each backend that runs it natively uploads it (see ARCHITECTURE.md).
 */
import { LowbitError } from '../errors.js';
import { blockwise8Format, type Blockwise8Weight } from './blockwise8.js';
import { denseFormat, type DenseWeight } from './dense.js';
import { fourBitFormat, type Bnb4bitWeight } from './four-bit.js';
import { int8Format, type Bnb8bitWeight } from './int8.js';
import type { WeightFormat } from './types.js';

export type { DenseWeight } from './dense.js';
export type { Bnb4bitWeight } from './four-bit.js';
export type { Bnb8bitWeight } from './int8.js';
export type { Blockwise8Weight } from './blockwise8.js';
export type { DeviceKind, SavedTensor, SizeParams, WeightFormat } from './types.js';

/** A weight as loaded: stored as-is (dense) or in one of the quantized formats. */
export type LoadedWeight = DenseWeight | Bnb4bitWeight | Bnb8bitWeight | Blockwise8Weight;
/** bitsandbytes' two quantized forms (what a bnb checkpoint holds). */
export type BnbWeight = Bnb4bitWeight | Bnb8bitWeight;
/** The `kind` of a loaded weight: one per weight format. */
export type FormatKind = LoadedWeight['kind'];

type FormatTable = { readonly [K in FormatKind]: WeightFormat<Extract<LoadedWeight, { kind: K }>> };

/** Every format by kind. */
export const FORMATS: FormatTable = {
  dense: denseFormat,
  '4bit': fourBitFormat,
  int8: int8Format,
  blockwise8: blockwise8Format,
};

/** Whether `kind` names a format. */
export function isFormatKind(kind: unknown): kind is FormatKind {
  return typeof kind === 'string' && Object.prototype.hasOwnProperty.call(FORMATS, kind);
}

/** The definition of a weight's format; INVALID_ARGUMENT for an object of no known kind. */
export function formatOf<W extends LoadedWeight>(w: W): WeightFormat<W> {
  const kind = (w as { kind?: unknown } | null | undefined)?.kind;
  if (!isFormatKind(kind)) throw new LowbitError('INVALID_ARGUMENT', `unknown weight kind '${String(kind)}' (known: ${Object.keys(FORMATS).join(', ')})`);
  return FORMATS[kind] as unknown as WeightFormat<W>;
}

/** Bytes a loaded weight holds in host memory. */
export function weightBytes(w: LoadedWeight): number {
  return formatOf(w).bytes(w);
}

/** A short name of the weight's format ('float16', '4bit-nf4', 'int8', 'q8_0', ...). */
export function formatLabel(w: LoadedWeight): string {
  return formatOf(w).label(w);
}
