/**
 * Which weight format runs on which backend: every format × device pair is native, converted
 * (to what, and how the result compares) or refused. Placement (checkModuleFormats in
 * ts/models/device-map.ts, called by fromPretrained) consults it before any weight is read, so a refusal comes first and a
 * conversion is counted in the module sizes; backends consult it again in `linear()` (adaptWeight)
 * so that a handle made directly is converted or refused the same way.
 */
import { LowbitError } from '../errors.js';
import { FORMATS, formatOf, type FormatKind, type LoadedWeight } from './index.js';
import type { DeviceKind, SizeParams } from './types.js';

/** Whether a weight format runs on a device: natively, after a conversion (what to, why, at what cost), or not at all (the format x backend table, `supportOf`). */
export type Support =
  | { readonly support: 'native' }
  | {
      readonly support: 'convert';
      /** What the backend gets instead (a label: 'float32', '4bit-nf4', ...). */
      readonly to: string;
      /** Why, and what it costs (memory, accuracy). */
      readonly note: string;
      readonly convert: (w: LoadedWeight) => LoadedWeight;
      /** Bytes of the converted weight, from metadata. */
      readonly estimateBytes: (shape: readonly number[], p?: SizeParams) => number;
    }
  | { readonly support: 'refuse'; readonly reason: string };

const NATIVE: Support = { support: 'native' };

/**
 * The table. Every format has a kernel on both backends today: WebGPU runs block-wise 8-bit
 * weights (GGUF Q8_0 kept 8-bit, bitsandbytes quantize_blockwise) natively at 1.125 bytes per
 * weight (shaders/matmul_blockwise8.wgsl). A 'convert' row is the way to add a format to one
 * backend before its kernel exists (converted at placement, its bytes counted in module sizes).
 */
export const CAPABILITIES: { readonly [K in FormatKind]: Readonly<Record<DeviceKind, Support>> } = {
  dense: { cpu: NATIVE, webgpu: NATIVE },
  // WebGPU keeps double-quantized absmax compressed too (matmul4.wgsl NESTED_ABSMAX decodes them per block)
  '4bit': { cpu: NATIVE, webgpu: NATIVE },
  int8: { cpu: NATIVE, webgpu: NATIVE },
  blockwise8: { cpu: NATIVE, webgpu: NATIVE },
};

/** How `device` takes weights of format `kind` (an unknown kind is refused). */
export function supportOf(kind: string, device: DeviceKind): Support {
  const row = (CAPABILITIES as Record<string, Record<DeviceKind, Support> | undefined>)[kind];
  return row?.[device] ?? { support: 'refuse', reason: `'${kind}' is not a weight format lowbit knows (known: ${Object.keys(CAPABILITIES).join(', ')})` };
}

/** Whether every format runs natively on `device` (then placement needs no format check there). */
export function everyFormatNativeOn(device: DeviceKind): boolean {
  return Object.values(CAPABILITIES).every((row) => row[device].support === 'native');
}

/** Bytes a weight of `kind` will hold on `device` (after any conversion), from metadata. */
export function estimateBytesOn(kind: FormatKind, device: DeviceKind, shape: readonly number[], p?: SizeParams): number {
  const s = supportOf(kind, device);
  return s.support === 'convert' ? s.estimateBytes(shape, p) : FORMATS[kind].estimateBytes(shape, p);
}

function refusal(what: string, device: DeviceKind, reason: string): LowbitError {
  return new LowbitError('UNSUPPORTED_QUANT_TYPE', `${what} cannot run on the ${device} backend: ${reason}`);
}

/**
 * A weight as `device`'s backend takes it: the weight itself where the format is native, the
 * converted weight (and what it was) where the table converts, UNSUPPORTED_QUANT_TYPE where it refuses.
 */
export function adaptWeight(w: LoadedWeight, device: DeviceKind): { weight: LoadedWeight; convertedFrom?: string } {
  const kind = String((w as { kind?: unknown } | null)?.kind);
  const s = supportOf(kind, device);
  if (s.support === 'native') return { weight: w };
  if (s.support === 'refuse') throw refusal(`${w?.name} (${kind})`, device, s.reason);
  return { weight: s.convert(w), convertedFrom: formatOf(w).label(w) };
}

/** A module's weights of one format, as placement sees them before loading. */
export interface PlacedFormat {
  module: string;
  device: DeviceKind;
  kind: FormatKind;
  /** e.g. 'q8_0' */
  label?: string;
}

/**
 * Checks every (format, device) pair of a placement before anything is read: throws
 * UNSUPPORTED_QUANT_TYPE naming each refused module and format; returns one line per conversion
 * ("model.layers.0 on webgpu: q8_0 -> float32 (why)").
 */
export function checkPlacement(items: Iterable<PlacedFormat>): string[] {
  const refused: string[] = [];
  const converted = new Map<string, string>();
  for (const it of items) {
    const s = supportOf(it.kind, it.device);
    const what = it.label ?? it.kind;
    if (s.support === 'refuse') refused.push(`${it.module} (${what} on ${it.device}: ${s.reason})`);
    else if (s.support === 'convert') converted.set(`${it.module}|${what}`, `${it.module} on ${it.device}: ${what} -> ${s.to} (${s.note})`);
  }
  if (refused.length > 0) throw new LowbitError('UNSUPPORTED_QUANT_TYPE', `these modules' weight formats cannot run where the deviceMap places them, so nothing was loaded: ${refused.join('; ')}. Place them on another device or load with a quantizationConfig.`);
  return [...converted.values()];
}
