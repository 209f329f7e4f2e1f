// Deno side of test/runtimes.test.ts: runs check.js on the built package and prints one JSON line.
//   node_modules/.bin/deno run --allow-read test/runtimes/deno-check.ts
import * as lowbit from '../../dist/index.js';
import { runChecks } from './check.js';
import { runThreadChecks } from './threads-check.js';

const fixtures = new URL('../fixtures/bnb/', import.meta.url);
await lowbit.init();
const manifest = JSON.parse(await Deno.readTextFile(new URL('manifest.json', fixtures)));
const blob = await Deno.readFile(new URL('blobs.bin', fixtures));
const result = runChecks(lowbit, manifest, blob);
const threads = await runThreadChecks(lowbit);
console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, result, threads, cores: navigator.hardwareConcurrency }));
