#!/usr/bin/env node
// Embeds shaders/*.wgsl into the TypeScript build: writes ts/backends/webgpu/shaders.generated.ts
// (git-ignored) with
//  - SHADER_SOURCES: the files' text, so the package needs no file access at run time (Node, Deno
//    and browsers alike); the preprocessor lines are resolved at run time by
//    ts/backends/webgpu/preprocess.ts;
//  - KERNEL_LAYOUTS and the KernelParams / KernelBindings / KernelEntries types: each kernel
//    file's uniform struct (field -> offset, scalar type, words) and bindings (variable name ->
//    @binding), reflected with wgsl_reflect from the module the preprocessor makes for every set
//    of the file's own defines, and per define set the uniform's size and fields and the
//    bindings each entry point uses. The host fills uniforms and binds buffers by these names
//    (context.ts `params` / `dispatch`), so a layout is written once: in the WGSL.
// Runs the run-time preprocessor itself (Node's type stripping), so both expand alike.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';
import { preprocess, definesUsed } from '../ts/backends/webgpu/preprocess.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'shaders');
const files = readdirSync(dir).filter((f) => f.endsWith('.wgsl')).sort();
const sources = Object.fromEntries(files.map((f) => [f, readFileSync(join(dir, f), 'utf8')]));

function fail(file, what) {
  console.error(`gen-shaders: ${file}: ${what}`);
  process.exit(1);
}

/** The scalar a uniform member is made of (u32 / i32 / f32), from its WGSL type name. */
function scalarOf(file, name, typeName) {
  const t = typeName.replace(/\s/g, '');
  if (/(^|[<,])(f32|vec[234]f|vec[234]<f32>)([>,]|$)/.test(t)) return 'f32';
  if (/(^|[<,])(i32|vec[234]i|vec[234]<i32>)([>,]|$)/.test(t)) return 'i32';
  if (/(^|[<,])(u32|vec[234]u|vec[234]<u32>)([>,]|$)/.test(t)) return 'u32';
  return fail(file, `uniform field ${name}: type ${typeName} is not made of u32 / i32 / f32 (the hosts fill 32-bit words)`);
}

const layouts = {};
for (const file of files) {
  // included helpers (common.wgsl, matmul_common.wgsl) are parts of kernels, not kernels
  if (!/@compute/.test(sources[file]) || files.some((f) => sources[f].includes(`#include "${file}"`))) continue;
  const defines = definesUsed(file, sources);
  // variants: the distinct (uniform size, fields, bindings per entry) of the define sets;
  // variantOf[mask]: the one for the define set whose bit i says defines[i] is set (-1: none)
  const layout = { defines, uniform: undefined, bindings: {}, params: {}, variants: [], variantOf: [] };
  const seen = new Map();
  for (let mask = 0; mask < 1 << defines.length; mask++) {
    const set = defines.filter((_, i) => mask & (1 << i));
    const key = set.join(',');
    layout.variantOf[mask] = -1;
    let r;
    try {
      r = new WgslReflect(preprocess(file, sources, new Set(set)));
    } catch {
      continue; // a define set the file does not support (the run-time host reports it if asked)
    }
    if (r.entry.compute.length === 0) continue;
    for (const v of [...r.uniforms, ...r.storage]) {
      if (v.group !== 0) fail(file, `${v.name} is in group ${v.group}; the hosts bind group 0 only`);
      const old = layout.bindings[v.name];
      if (old !== undefined && old !== v.binding) fail(file, `${v.name} is @binding(${old}) in one define set and @binding(${v.binding}) in [${key}]: keep a name on one binding`);
      layout.bindings[v.name] = v.binding;
    }
    const taken = new Map();
    for (const v of [...r.uniforms, ...r.storage]) {
      if (taken.has(v.binding)) fail(file, `${v.name} and ${taken.get(v.binding)} share @binding(${v.binding}) in [${key}]`);
      taken.set(v.binding, v.name);
    }
    if (r.uniforms.length > 1) fail(file, `more than one uniform in [${key}]; the hosts fill one Params block`);
    const variant = { size: 0, fields: [], entries: {} };
    const u = r.uniforms[0];
    if (u !== undefined) {
      if (layout.uniform !== undefined && layout.uniform !== u.name) fail(file, `the uniform is ${layout.uniform} in one define set and ${u.name} in [${key}]`);
      layout.uniform = u.name;
      if (!u.type.isStruct) fail(file, `uniform ${u.name} is not a struct`);
      variant.size = u.type.size;
      for (const m of u.type.members) {
        const field = { offset: m.offset, type: scalarOf(file, m.name, m.type.getTypeName()), words: m.size / 4 };
        const old = layout.params[m.name];
        if (old !== undefined && (old.offset !== field.offset || old.type !== field.type || old.words !== field.words)) fail(file, `uniform field ${m.name} moves between define sets ([${key}]): keep conditional fields at the end`);
        layout.params[m.name] = field;
        variant.fields.push(m.name);
      }
    }
    for (const e of r.entry.compute) variant.entries[e.name] = e.resources.map((v) => v.name).sort();
    const id = JSON.stringify(variant);
    if (!seen.has(id)) {
      seen.set(id, layout.variants.length);
      layout.variants.push(variant);
    }
    layout.variantOf[mask] = seen.get(id);
  }
  if (layout.variants.length === 0) fail(file, 'no define set gives a module that parses');
  layouts[file] = layout;
}

// Types: a field every define set has is required, one only some have is optional, pad fields
// (a leading `_`) are not named by callers (zero).
const typeLines = { params: [], bindings: [], entries: [] };
for (const [file, l] of Object.entries(layouts)) {
  const vs = l.variants;
  const fields = Object.entries(l.params).filter(([n]) => !n.startsWith('_')).map(([n, f]) => {
    const always = vs.every((v) => v.fields.includes(n));
    const value = f.words === 1 ? (f.type === 'f32' ? 'number' : 'number | boolean') : 'ArrayLike<number>';
    return `${n}${always ? '' : '?'}: ${value}`;
  });
  typeLines.params.push(`  ${JSON.stringify(file)}: { ${fields.join('; ')} };`);
  typeLines.bindings.push(`  ${JSON.stringify(file)}: ${Object.keys(l.bindings).map((b) => JSON.stringify(b)).join(' | ') || 'never'};`);
  const entries = [...new Set(vs.flatMap((v) => Object.keys(v.entries)))].sort();
  typeLines.entries.push(`  ${JSON.stringify(file)}: ${entries.map((e) => JSON.stringify(e)).join(' | ')};`);
}

const body = files.map((f) => `  ${JSON.stringify(f)}: ${JSON.stringify(sources[f])},`).join('\n');
const out = `// Generated by scripts/gen-shaders.mjs from shaders/*.wgsl — do not edit, not committed.
import type { KernelLayout } from './layout.js';

export const SHADER_SOURCES: Readonly<Record<string, string>> = {
${body}
};

/** Uniform fields and bindings of each kernel file, reflected from its WGSL (see layout.ts). */
export const KERNEL_LAYOUTS: Readonly<Record<KernelFile, KernelLayout>> = ${JSON.stringify(layouts)};

/** The kernel files (those with an entry point). */
export type KernelFile = ${Object.keys(layouts).map((f) => JSON.stringify(f)).join(' | ')};

/** The uniform fields a host fills, per kernel file (optional: only some define sets have it). */
export interface KernelParams {
${typeLines.params.join('\n')}
}

/** The binding variable names of each kernel file. */
export interface KernelBindings {
${typeLines.bindings.join('\n')}
}

/** The entry points of each kernel file. */
export interface KernelEntries {
${typeLines.entries.join('\n')}
}
`;
const target = join(root, 'ts/backends/webgpu/shaders.generated.ts');
let old = '';
try { old = readFileSync(target, 'utf8'); } catch {}
if (old !== out) writeFileSync(target, out);
