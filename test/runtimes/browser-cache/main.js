// Browser side of test/cache.test.ts: the model cache in the Cache API against the hub-shaped
// server given as ?hub=. Between steps it requests <hub>/__mark/<step>, so the test can cut the
// server's request log into the steps' requests.
import * as lowbit from '/dist/index.js';

const hub = new URL(location.href).searchParams.get('hub');
const status = document.getElementById('status');
const ids = [1, 72, 101, 108, 108, 111];
const mark = (step) => fetch(`${hub}/__mark/${step}`).then((r) => r.body?.cancel());
const codeOf = async (p) => {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return `${e?.code ?? e?.name}: ${e?.message}`;
  }
};
const load = (extra = {}) => lowbit.AutoModelForCausalLM.fromPretrained('org/llama', { endpoint: hub, tokenizer: false, ...extra });

try {
  await lowbit.init();
  await caches.delete(lowbit.DEFAULT_BROWSER_CACHE_NAME);
  const events = [];
  await mark('first');
  const first = await load({ onProgress: (e) => e.phase === 'download' && events.push(e) });
  const logits = Array.from(await first.forward(ids, 0));
  first.dispose();
  const cache = await caches.open(lowbit.DEFAULT_BROWSER_CACHE_NAME);
  const keys = (await cache.keys()).map((r) => r.url.slice(hub.length)).sort();

  await mark('second');
  const second = await load();
  const same = JSON.stringify(Array.from(await second.forward(ids, 0))) === JSON.stringify(logits);
  second.dispose();

  await mark('offline');
  const offline = await load({ offline: true });
  const offlineSame = JSON.stringify(Array.from(await offline.forward(ids, 0))) === JSON.stringify(logits);
  offline.dispose();
  const offlineMiss = await codeOf(load({ offline: true, revision: 'v1' }));

  await mark('corrupt');
  // Flip one bit of the cached weights, keeping the entry's headers (its etag).
  const weightsKey = (await cache.keys()).find((r) => r.url.endsWith('/model.safetensors'));
  const stored = await cache.match(weightsKey);
  const bytes = new Uint8Array(await stored.arrayBuffer());
  bytes[bytes.length - 4] ^= 1;
  await cache.put(weightsKey, new Response(bytes, { headers: stored.headers }));
  const corrupt = await codeOf(load());
  const unchecked = await codeOf(load({ cache: { verifyCached: false } }).then((m) => m.dispose()));

  await mark('done');
  window.__lowbitResult = { ok: true, logits, events, keys, same, offlineSame, offlineMiss, corrupt, unchecked };
  status.textContent = 'done';
} catch (e) {
  window.__lowbitResult = { ok: false, error: `${e?.name}: ${e?.message}${e?.code ? ` (${e.code})` : ''}\n${e?.stack ?? ''}` };
  status.textContent = window.__lowbitResult.error;
}
