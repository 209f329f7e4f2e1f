// Browser side of test/worker-browser.test.ts: loads the model given by ?model= in a Web Worker
// (lowbit/worker), generates greedily with generate() and with stream(), and meanwhile measures
// how long the page's main thread goes without running a timer or drawing a frame. With
// ?compare=1 it measures the same with the model on the page's main thread instead, for contrast.
import { fromPretrainedInWorker } from 'lowbit/worker';
import * as lowbit from 'lowbit';

const params = new URLSearchParams(location.search);
const status = document.getElementById('status');
const out = document.getElementById('out');
/** What the page is waiting for (labels the stall probe's long gaps). */
let doing = 'start';

/**
 * The longest gap between two runs of a 10 ms interval timer and between two animation frames,
 * and every timer gap over 50 ms with when it ended (ms since the probe started) and what ran.
 */
function stallProbe() {
  const start = performance.now();
  let lastTick = start;
  let lastFrame = lastTick;
  // lateMs: the time the timer ran more than 10 ms late, summed; runMs: the time probed
  const worst = { timerMs: 0, frameMs: 0, ticks: 0, frames: 0, lateMs: 0, runMs: 0, long: [] };
  const timer = setInterval(() => {
    const now = performance.now();
    const gap = now - lastTick;
    worst.timerMs = Math.max(worst.timerMs, gap);
    worst.lateMs += Math.max(0, gap - 20);
    if (gap > 50) worst.long.push({ ms: Math.round(gap), at: Math.round(now - start), during: doing });
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
  return () => (clearInterval(timer), cancelAnimationFrame(raf), (worst.runMs = performance.now() - start), worst);
}

/**
 * ?compare=1: the same load and greedy generation in the worker and on the page's main thread
 * (AutoModelForCausalLM from 'lowbit'), on 1 and 2 threads, each under the stall probe.
 */
async function compareMainThread(messages, maxNewTokens) {
  const runs = [];
  const quantizationConfig = { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true };
  const url = new URL(params.get('model'), location.href).href;
  for (const threads of [1, 2]) {
    for (const where of ['worker', 'main']) {
      const stop = stallProbe();
      const t0 = performance.now();
      const model = where === 'worker' ? await fromPretrainedInWorker(url, { quantizationConfig, threads }) : await lowbit.AutoModelForCausalLM.fromPretrained(url, { quantizationConfig, threads });
      const t1 = performance.now();
      const ids = await model.generate({ messages, maxNewTokens });
      const t2 = performance.now();
      const stall = stop();
      model.dispose();
      runs.push({ where, threads, loadMs: t1 - t0, tokensPerSecond: ids.length / ((t2 - t1) / 1000), timerMs: stall.timerMs, lateMs: stall.lateMs, runMs: stall.runMs });
    }
  }
  return runs;
}

try {
  const messages = [{ role: 'user', content: params.get('prompt') ?? 'What is the capital of France?' }];
  const maxNewTokens = Number(params.get('tokens') ?? 24);
  // The machine's own noise first: the same probe on an idle page for 1.5 s.
  const stopIdle = stallProbe();
  await new Promise((ok) => setTimeout(ok, 1500));
  const idle = stopIdle();
  if (params.get('compare') === '1') {
    window.__lowbitResult = { ok: true, idle, runs: await compareMainThread(messages, maxNewTokens) };
    throw 'done';
  }
  const stopProbe = stallProbe();
  const t0 = performance.now();
  const phases = [];
  doing = 'load';
  const model = await fromPretrainedInWorker(params.get('model'), {
    quantizationConfig: { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true },
    onProgress: (e) => {
      if (phases.at(-1)?.phase !== e.phase) phases.push({ phase: e.phase, events: 0 });
      phases.at(-1).events++;
    },
  });
  const loadMs = performance.now() - t0;

  // generate(): ids through a streamer, each put() timed on the page
  doing = 'generate';
  const puts = [];
  let resolvedAt = 0;
  const ids = await model.generate({ messages, maxNewTokens, streamer: { put: (p) => puts.push({ ids: [...p], at: performance.now() }), end: () => {} } }).then((r) => ((resolvedAt = performance.now()), r));
  const generateStats = model.lastStats;

  // stream(): text pieces, each timed
  doing = 'stream';
  const pieces = [];
  for await (const text of model.stream({ messages, maxNewTokens })) {
    pieces.push({ text, at: performance.now() });
    out.textContent += text;
  }
  const streamDoneAt = performance.now();
  doing = 'end';
  const decoded = await model.decode(ids, { skipSpecialTokens: true });

  // An abort crosses to the worker: generation stops between tokens with ABORTED.
  const abort = new AbortController();
  let afterAbort = 0;
  const aborted = await model
    .generate({ messages, maxNewTokens: 200, signal: abort.signal, onToken: () => (afterAbort++, abort.abort('enough')) })
    .then(() => 'not aborted', (e) => ({ name: e.name, code: e.code, tokens: afterAbort }));
  // Leaving stream() early stops it too; the model then generates as before.
  let taken = 0;
  for await (const _ of model.stream({ messages, maxNewTokens: 200 })) if (++taken === 2) break;
  const again = await model.generate({ messages, maxNewTokens: 4 });
  // Errors keep their LowbitError code; options that cannot cross are refused.
  const errorOf = (p) => p.then(() => 'no error', (e) => ({ name: e.name, code: e.code, message: e.message }));
  const missing = await errorOf(fromPretrainedInWorker('/models/no-such-model.gguf'));
  const backendOption = await errorOf(fromPretrainedInWorker(params.get('model'), { backend: {} }));
  const info = model.info;
  const stall = stopProbe();
  model.dispose();
  window.__lowbitResult = {
    ok: true,
    ids,
    decoded,
    aborted,
    again,
    missing,
    backendOption,
    streamed: pieces.map((p) => p.text).join(''),
    puts: puts.map((p) => ({ n: p.ids.length, before: resolvedAt - p.at })),
    pieces: pieces.map((p) => ({ n: p.text.length, before: streamDoneAt - p.at })),
    loadMs,
    phases,
    stall,
    idle,
    generateStats,
    streamStats: model.lastStats,
    info: { threads: info.threads, threadsNote: info.threadsNote, threadSpeedup: info.threadSpeedup, deviceMap: info.deviceMap, memory: info.memory.total, family: info.family },
    crossOriginIsolated: self.crossOriginIsolated,
    cores: navigator.hardwareConcurrency,
  };
  status.textContent = 'done';
} catch (e) {
  if (e === 'done') status.textContent = 'done';
  else window.__lowbitResult = { ok: false, error: `${e?.name}: ${e?.message}${e?.code ? ` (${e.code})` : ''}\n${e?.stack ?? ''}` };
  status.textContent = window.__lowbitResult.error;
}
