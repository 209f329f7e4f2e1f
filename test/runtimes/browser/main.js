// Browser side of test/runtimes.test.ts: the wasm is fetched by init() (application/wasm),
// the golden vectors over HTTP; the result lands on window.__lowbitResult and in #status.
import * as lowbit from '/dist/index.js';
import { runChecks } from '../check.js';
import { MODEL_FILES, runGenerateCheck } from '../generate-check.js';
import { runThreadChecks } from '../threads-check.js';

const status = document.getElementById('status');
try {
  await lowbit.init();
  const [manifest, blob] = await Promise.all([
    fetch('/test/fixtures/bnb/manifest.json').then((r) => r.json()),
    fetch('/test/fixtures/bnb/blobs.bin').then((r) => r.arrayBuffer()),
  ]);
  const result = runChecks(lowbit, manifest, new Uint8Array(blob));
  const files = new Map(await Promise.all(MODEL_FILES.map(async (f) => [f, await fetch(`/test/fixtures/reference-logits/llama/${f}`).then((r) => r.blob())])));
  const generation = await runGenerateCheck(lowbit, files);
  const threads = await runThreadChecks(lowbit);
  window.__lowbitResult = { ok: true, runtime: navigator.userAgent, build: lowbit.wasmBuild(), result, generation, threads, crossOriginIsolated: self.crossOriginIsolated, cores: navigator.hardwareConcurrency };
  status.textContent = 'done';
} catch (e) {
  window.__lowbitResult = { ok: false, error: `${e?.name}: ${e?.message}${e?.code ? ` (${e.code})` : ''}\n${e?.stack ?? ''}` };
  status.textContent = window.__lowbitResult.error;
}
