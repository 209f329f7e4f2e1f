// Browser side of test/runtimes.test.ts: the wasm is fetched by init() (application/wasm),
// the golden vectors over HTTP; the result lands on window.__lowbitResult and in #status.
import * as lowbit from '/dist/index.js';
import { runChecks } from '../check.js';
import { runThreadChecks } from '../threads-check.js';

const status = document.getElementById('status');
try {
  await lowbit.init();
  const [manifest, blob] = await Promise.all([
    fetch('/test/fixtures/bnb/manifest.json').then((r) => r.json()),
    fetch('/test/fixtures/bnb/blobs.bin').then((r) => r.arrayBuffer()),
  ]);
  const result = runChecks(lowbit, manifest, new Uint8Array(blob));
  const threads = await runThreadChecks(lowbit);
  window.__lowbitResult = { ok: true, runtime: navigator.userAgent, result, threads, crossOriginIsolated: self.crossOriginIsolated, cores: navigator.hardwareConcurrency };
  status.textContent = 'done';
} catch (e) {
  window.__lowbitResult = { ok: false, error: `${e?.name}: ${e?.message}${e?.code ? ` (${e.code})` : ''}\n${e?.stack ?? ''}` };
  status.textContent = window.__lowbitResult.error;
}
