/**
 * Kernel layouts read from the WGSL: scripts/gen-shaders.mjs reflects every kernel file's
 * uniform struct and bindings (for each set of the file's defines) into KERNEL_LAYOUTS, and the
 * host fills uniforms by field name and binds buffers by variable name through these functions.
 * A field or binding the host names that the shader does not have, or one the shader needs that
 * the host leaves out, is an INTERNAL error at the call — a WGSL change the host does not follow
 * fails in the first test that runs the kernel instead of reading garbage.
 */
import { LowbitError } from '../../errors.js';
import { KERNEL_LAYOUTS, type KernelBindings, type KernelEntries, type KernelFile, type KernelParams } from './shaders.generated.js';

export type { KernelFile, KernelParams, KernelBindings, KernelEntries };

/** One uniform field: byte offset, scalar type and 32-bit words (1 for a scalar). */
export interface ParamField {
  offset: number;
  type: 'u32' | 'i32' | 'f32';
  words: number;
}

/** What one define set of a kernel file looks like. */
export interface LayoutVariant {
  /** Bytes of the uniform struct (0: no uniform). */
  size: number;
  /** Its fields, in order (pad fields included). */
  fields: string[];
  /** Per entry point: the bindings it uses (WebGPU's 'auto' layout has exactly these). */
  entries: Record<string, string[]>;
}

export interface KernelLayout {
  /** The defines the file (and what it includes) tests; others do not change it. */
  defines: string[];
  /** The uniform's variable name (bound like any other binding). */
  uniform: string | undefined;
  /** Variable name -> @binding (group 0). */
  bindings: Record<string, number>;
  params: Record<string, ParamField>;
  /** The distinct variants the define sets give. */
  variants: LayoutVariant[];
  /** Index into `variants` by define set: bit i set when defines[i] is (-1: the set does not parse). */
  variantOf: number[];
}

function mismatch(what: string): never {
  throw new LowbitError('INTERNAL', `kernel layout: ${what} (the WGSL and its host disagree; shaders/README.md)`);
}

/** A kernel file's layout resolved for one define set (a compiled kernel keeps it: webgpu/context.ts `Kernel`). */
export interface ResolvedLayout {
  file: KernelFile;
  layout: KernelLayout;
  variant: LayoutVariant;
  /** The file's defines in the set (messages). */
  key: string;
}

/** The layout of `file` under `defines` (any superset of the file's own). */
export function kernelLayout(file: KernelFile, defines: readonly string[]): ResolvedLayout {
  const layout = (KERNEL_LAYOUTS as Record<string, KernelLayout | undefined>)[file] ?? mismatch(`${file} is not a kernel file`);
  let mask = 0;
  layout.defines.forEach((d, i) => {
    if (defines.includes(d)) mask |= 1 << i;
  });
  const key = layout.defines.filter((d) => defines.includes(d)).join(',');
  const variant = layout.variants[layout.variantOf[mask] ?? -1] ?? mismatch(`${file} has no module for the defines [${key}]`);
  return { file, layout, variant, key };
}

/**
 * The uniform block of `file` under `defines` with `values` by field name: every field the
 * struct has there must be given except pad fields (leading `_`, zero); u32 fields take
 * booleans as 0 / 1, array fields as many values as they have words.
 */
export function packParams<F extends KernelFile>(file: F, defines: readonly string[], values: KernelParams[F]): ArrayBuffer {
  return packResolved(kernelLayout(file, defines), values);
}

/** `packParams` on a layout resolved once (the per-dispatch path). */
export function packResolved(resolved: ResolvedLayout, values: object): ArrayBuffer {
  const { file, layout, variant, key } = resolved;
  if (variant.size === 0) mismatch(`${file} has no uniform`);
  const buf = new ArrayBuffer(variant.size);
  const u = new Uint32Array(buf);
  const i = new Int32Array(buf);
  const f = new Float32Array(buf);
  const given = values as Record<string, number | boolean | ArrayLike<number> | undefined>;
  for (const name of Object.keys(given)) {
    if (!variant.fields.includes(name)) mismatch(`${file} [${key}] has no uniform field '${name}'`);
    if (name.startsWith('_')) mismatch(`${file}: '${name}' is padding; leave it out`);
  }
  for (const name of variant.fields) {
    if (name.startsWith('_')) continue;
    const field = layout.params[name]!;
    const v = given[name];
    if (v === undefined) mismatch(`${file} [${key}]: uniform field '${name}' is not given`);
    const at = field.offset / 4;
    const vals: ArrayLike<number> = typeof v === 'number' ? [v] : typeof v === 'boolean' ? [v ? 1 : 0] : v;
    if (typeof v === 'boolean' && field.type !== 'u32') mismatch(`${file}: field '${name}' is ${field.type}, not a flag`);
    if (vals.length !== field.words) mismatch(`${file}: field '${name}' has ${field.words} words, given ${vals.length}`);
    const view = field.type === 'f32' ? f : field.type === 'i32' ? i : u;
    for (let j = 0; j < vals.length; j++) {
      const x = vals[j]!;
      if (field.type !== 'f32' && !Number.isInteger(x)) mismatch(`${file}: field '${name}' is ${field.type}, given ${x}`);
      view[at + j] = x;
    }
  }
  return buf;
}

/**
 * The bind group entries of `entry` in `file` under `defines` from buffers by variable name:
 * exactly the bindings the entry point uses (names it does not use are refused too, as
 * WebGPU's 'auto' layout would refuse them, but here at the call).
 */
export function bindEntries<R>(file: KernelFile, entry: string, defines: readonly string[], given: Readonly<Record<string, R | undefined>>): { binding: number; resource: R }[] {
  return bindResolved(kernelLayout(file, defines), entry, given);
}

/** `bindEntries` on a layout resolved once (the per-dispatch path). */
export function bindResolved<R>(resolved: ResolvedLayout, entry: string, given: Readonly<Record<string, R | undefined>>): { binding: number; resource: R }[] {
  const { file, layout, variant, key } = resolved;
  const used = variant.entries[entry] ?? mismatch(`${file} [${key}] has no entry point ${entry}`);
  const out: { binding: number; resource: R }[] = [];
  for (const [name, resource] of Object.entries(given)) {
    if (resource === undefined) continue;
    if (!(name in layout.bindings)) mismatch(`${file} has no binding '${name}'`);
    if (!used.includes(name)) mismatch(`${file}:${entry} [${key}] does not use binding '${name}'`);
    out.push({ binding: layout.bindings[name]!, resource });
  }
  for (const name of used) if (given[name] === undefined) mismatch(`${file}:${entry} [${key}]: binding '${name}' is not given`);
  return out;
}
