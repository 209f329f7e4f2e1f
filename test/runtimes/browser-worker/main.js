// Browser side of test/worker-browser.test.ts: loads the model given by ?model= in a Web Worker
// (lowbit/worker), generates greedily with generate() and with stream(), and meanwhile measures
// how long the page's main thread goes without running a timer or drawing a frame.
import { fromPretrainedInWorker } from 'lowbit/worker';

const params = new URLSearchParams(location.search);
const status = document.getElementById('status');
const out = document.getElementById('out');

/** The longest gap between two runs of a 10 ms interval timer and between two animation frames. */
function stallProbe() {
  let lastTick = performance.now();
  let lastFrame = lastTick;
  const worst = { timerMs: 0, frameMs: 0, ticks: 0, frames: 0 };
  const timer = setInterval(() => {
    const now = performance.now();
    worst.timerMs = Math.max(worst.timerMs, now - lastTick);
    worst.ticks++;
    lastTick = now;
  }, 10);
  let raf = 0;
  const frame = () => {
    const now = performance.now();
    worst.frameMs = Math.max(worst.frameMs, now - lastFrame);
    worst.frames++;
    lastFrame = now;
    raf = requestAnimationFrame(frame);
  };
  raf = requestAnimationFrame(frame);
  return () => (clearInterval(timer), cancelAnimationFrame(raf), worst);
}

try {
  const messages = [{ role: 'user', content: params.get('prompt') ?? 'What is the capital of France?' }];
  const maxNewTokens = Number(params.get('tokens') ?? 24);
  const stopProbe = stallProbe();
  const t0 = performance.now();
  const phases = [];
  const model = await fromPretrainedInWorker(params.get('model'), {
    quantizationConfig: { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true },
    onProgress: (e) => {
      if (phases.at(-1)?.phase !== e.phase) phases.push({ phase: e.phase, events: 0 });
      phases.at(-1).events++;
    },
  });
  const loadMs = performance.now() - t0;

  // generate(): ids through a streamer, each put() timed on the page
  const puts = [];
  let resolvedAt = 0;
  const ids = await model.generate({ messages, maxNewTokens, streamer: { put: (p) => puts.push({ ids: [...p], at: performance.now() }), end: () => {} } }).then((r) => ((resolvedAt = performance.now()), r));
  const generateStats = model.lastStats;

  // stream(): text pieces, each timed
  const pieces = [];
  for await (const text of model.stream({ messages, maxNewTokens })) {
    pieces.push({ text, at: performance.now() });
    out.textContent += text;
  }
  const streamDoneAt = performance.now();
  const decoded = await model.decode(ids, { skipSpecialTokens: true });
  const info = model.info;
  const stall = stopProbe();
  model.dispose();
  window.__lowbitResult = {
    ok: true,
    ids,
    decoded,
    streamed: pieces.map((p) => p.text).join(''),
    puts: puts.map((p) => ({ n: p.ids.length, before: resolvedAt - p.at })),
    pieces: pieces.map((p) => ({ n: p.text.length, before: streamDoneAt - p.at })),
    loadMs,
    phases,
    stall,
    generateStats,
    streamStats: model.lastStats,
    info: { threads: info.threads, threadsNote: info.threadsNote, threadSpeedup: info.threadSpeedup, deviceMap: info.deviceMap, memory: info.memory.total, family: info.family },
    crossOriginIsolated: self.crossOriginIsolated,
    cores: navigator.hardwareConcurrency,
  };
  status.textContent = 'done';
} catch (e) {
  window.__lowbitResult = { ok: false, error: `${e?.name}: ${e?.message}${e?.code ? ` (${e.code})` : ''}\n${e?.stack ?? ''}` };
  status.textContent = window.__lowbitResult.error;
}
