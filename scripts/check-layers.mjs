#!/usr/bin/env node
/**
 * Fails (exit 1) when an import in ts/ goes against the layer table below, which
 * ARCHITECTURE.md explains. Every .ts file under ts/ must belong to a layer (the longest
 * matching path wins), and may import only its own layer and the layers its row names.
 * Import specifiers come from TypeScript's own pre-processor (static imports and exports,
 * `import type`, dynamic `import('…')`); packages (non-relative specifiers) are not checked.
 *
 *   node scripts/check-layers.mjs          # prints each violation: file -> import (layer -> layer)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'ts');

/** Lowest first. `paths` are relative to ts/ (a trailing '/' is a folder); `may` the layers it may import. */
export const LAYERS = [
  { name: 'core', paths: ['errors.ts', 'runtime/', 'wasm/', 'tensor/', 'quant/'], may: [] },
  { name: 'formats', paths: ['formats/'], may: ['core'] },
  { name: 'loading', paths: ['loading/'], may: ['core', 'formats'] },
  { name: 'backend-interface', paths: ['backends/backend.ts', 'backends/checks.ts'], may: ['core', 'formats'] },
  // the two backends know nothing of each other, of loading or of models
  { name: 'cpu-backend', paths: ['backends/cpu/'], may: ['core', 'formats', 'backend-interface'] },
  { name: 'webgpu-backend', paths: ['backends/webgpu/'], may: ['core', 'formats', 'backend-interface'] },
  { name: 'tokenizer', paths: ['tokenizer/'], may: ['core', 'loading'] },
  { name: 'generation', paths: ['generation/'], may: ['core', 'tokenizer'] },
  // models reach backends through the Backend interface only
  { name: 'models', paths: ['models/'], may: ['core', 'formats', 'loading', 'backend-interface', 'tokenizer', 'generation'] },
  // the composition root: fromPretrained (auto, its GGUF path), the one file that makes concrete backends, the package entry and the CLI
  { name: 'api', paths: ['index.ts', 'pipeline.ts', 'cli.ts', 'cli/', 'worker.ts', 'worker/', 'models/auto.ts', 'models/gguf-model.ts', 'models/make-backends.ts'], may: ['*'] },
];

/**
 * Imports allowed against the table, each with its reason. Keep this short: fix the import
 * instead where you can. Entries are 'from-file -> to-file' relative to ts/.
 */
export const ALLOWED = new Map([]);

function layerOf(file) {
  let best;
  let bestLen = -1;
  for (const l of LAYERS) {
    for (const p of l.paths) {
      const hit = p.endsWith('/') ? file.startsWith(p) : file === p;
      if (hit && p.length > bestLen) {
        best = l;
        bestLen = p.length;
      }
    }
  }
  return best;
}

function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** The ts/-relative file an import specifier names ('../x.js' -> 'x.ts'; folders and .d.ts stay as written). */
function target(src, fromFile, spec) {
  const abs = resolve(dirname(join(src, fromFile)), spec);
  return relative(src, abs).split(sep).join('/').replace(/\.js$/, '.ts');
}

/** The violations in the .ts files under `src` (default: this repository's ts/). */
export function checkLayers(src = SRC) {
  const problems = [];
  for (const abs of walk(src)) {
    const file = relative(src, abs).split(sep).join('/');
    const from = layerOf(file);
    if (from === undefined) {
      problems.push(`${file}: belongs to no layer — add its folder to LAYERS in scripts/check-layers.mjs (and ARCHITECTURE.md)`);
      continue;
    }
    const info = ts.preProcessFile(readFileSync(abs, 'utf8'), true, true);
    for (const { fileName: spec } of info.importedFiles) {
      if (!spec.startsWith('.')) continue;
      const to = target(src, file, spec);
      if (to.startsWith('..')) {
        problems.push(`${file} -> ${spec}: imports from outside ts/`);
        continue;
      }
      const into = layerOf(to);
      if (into === undefined) {
        problems.push(`${file} -> ${spec}: ${to} belongs to no layer`);
        continue;
      }
      if (into === from || from.may.includes('*') || from.may.includes(into.name)) continue;
      if (ALLOWED.has(`${file} -> ${to}`)) continue;
      problems.push(`${file} -> ${spec} (${from.name} may not import ${into.name})`);
    }
  }
  return problems;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const problems = checkLayers();
  if (problems.length > 0) {
    console.error(`check-layers: ${problems.length} import(s) against the layer table (ARCHITECTURE.md):`);
    for (const p of problems) console.error(`  ${p}`);
    process.exit(1);
  }
  console.log('check-layers: every import in ts/ follows the layer table');
}
