// Deno side of test/runtimes.test.ts: runs check.js on the built package and prints one JSON line.
//   node_modules/.bin/deno run --allow-read test/runtimes/deno-check.ts
import * as lowbit from '../../dist/index.js';
import { runChecks } from './check.js';
import { MODEL_FILES, runGenerateCheck } from './generate-check.js';
import { runThreadChecks } from './threads-check.js';

const fixtures = new URL('../fixtures/bnb/', import.meta.url);
await lowbit.init();
const manifest = JSON.parse(await Deno.readTextFile(new URL('manifest.json', fixtures)));
const blob = await Deno.readFile(new URL('blobs.bin', fixtures));
const result = runChecks(lowbit, manifest, blob);
const modelDir = new URL('../fixtures/reference-logits/llama/', import.meta.url);
const files = new Map(await Promise.all(MODEL_FILES.map(async (f) => [f, new Blob([await Deno.readFile(new URL(f, modelDir))])] as const)));
const generation = await runGenerateCheck(lowbit, files);
const threads = await runThreadChecks(lowbit);
console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, build: lowbit.wasmBuild(), result, generation, threads, cores: navigator.hardwareConcurrency }));
