// Child process of test/hostile-models.test.ts: runs a batch of hostile cases against the built
// library (dist/) and prints one `RESULT <json>` line per case. Started with a small V8 heap
// (--max-old-space-size) and a timeout by the test: a crash, an abort or a hang shows there as
// missing results. Arguments are JSON with markers for what JSON cannot hold (see revive()).
import { readFileSync } from 'node:fs';
import { AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, LowbitError } from '../../dist/index.js';

const jobs = JSON.parse(readFileSync(process.argv[2], 'utf8'));

/** JSON -> call arguments: { $timeout: ms } AbortSignal.timeout, { $aborted: reason } an aborted signal, { $bnb: {...} } a BitsAndBytesConfig, { $nan: 1 } NaN, { $u32: [...] } a Uint32Array, { $undefined: 1 }. */
function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v === null || typeof v !== 'object') return v;
  if ('$timeout' in v) return AbortSignal.timeout(v.$timeout);
  if ('$aborted' in v) return AbortSignal.abort(v.$aborted);
  if ('$bnb' in v) return new BitsAndBytesConfig(v.$bnb);
  if ('$nan' in v) return NaN;
  if ('$undefined' in v) return undefined;
  if ('$u32' in v) return Uint32Array.from(v.$u32);
  if ('$big' in v) return 2 ** v.$big + (v.plus ?? 0);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
}

function describe(e) {
  if (e instanceof LowbitError) return { status: 'error', lowbit: true, code: e.code, message: e.message, cause: e.cause instanceof Error ? e.cause.name : e.cause === undefined ? undefined : String(e.cause) };
  return { status: 'error', lowbit: false, name: e?.name, message: String(e?.message ?? e).slice(0, 500) };
}

const load = (job) => AutoModelForCausalLM.fromPretrained(job.dir, revive(job.load ?? { tokenizer: false }));

/** Each scenario returns the value the test checks (or throws). */
const scenarios = {
  async load(job) {
    const m = await load(job);
    const out = { vocab: m.config.vocabSize, layers: m.config.numLayers, maxPositions: m.maxPositions };
    if (job.generate) out.tokens = await m.generate(revive(job.generate));
    m.dispose();
    return out;
  },
  async generate(job) {
    const m = await load(job);
    try {
      return await m.generate(revive(job.generate));
    } finally {
      m.dispose();
    }
  },
  async forward(job) {
    const m = await load(job);
    try {
      return Array.from((await m.forward(revive(job.ids), 0)).slice(0, 4));
    } finally {
      m.dispose();
    }
  },
  async template(job) {
    const t = await AutoTokenizer.fromPretrained(job.dir);
    return t.applyChatTemplate(revive(job.messages), { addGenerationPrompt: true, tokenize: false }).length;
  },
  /** generate({ messages }) and generate({ inputIds }) of the same rendered chat. */
  async chat(job) {
    const m = await AutoModelForCausalLM.fromPretrained(job.dir, revive(job.load ?? {}));
    try {
      const messages = revive(job.messages);
      const g = revive(job.generate);
      const viaMessages = await m.generate({ ...g, messages });
      const ids = m.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
      const viaIds = await m.generate({ ...g, inputIds: ids });
      return { viaMessages, viaIds, promptLength: ids.length };
    } finally {
      m.dispose();
    }
  },
  /** The same generate() on the model in `dir` and on the one in `dir/<other.sub>` (loaded with other.load). */
  async compare(job) {
    const run = async (dir, opts) => {
      const m = await AutoModelForCausalLM.fromPretrained(dir, revive(opts));
      try {
        return await m.generate(revive(job.generate));
      } finally {
        m.dispose();
      }
    };
    return { ours: await run(job.dir, job.load ?? { tokenizer: false }), other: await run(`${job.dir}/${job.other.sub}`, job.other.load) };
  },
  /** Several generate() calls at once on one model: each result, and the same calls one by one. */
  async concurrent(job) {
    const m = await load(job);
    try {
      const calls = revive(job.calls);
      const together = await Promise.all(calls.map((c) => m.generate(c)));
      const alone = [];
      for (const c of revive(job.calls)) alone.push(await m.generate(c));
      return { together, alone };
    } finally {
      m.dispose();
    }
  },
  /** A long generation with an AbortSignal.timeout: how long it took to stop, then a normal call. */
  async abortTimeout(job) {
    const m = await load(job);
    try {
      const t0 = performance.now();
      let error;
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      try {
        await m.generate({ ...revive(job.generate), signal: AbortSignal.timeout(job.timeoutMs) });
      } catch (e) {
        error = describe(e);
      }
      clearInterval(timer);
      const stoppedAfterMs = performance.now() - t0;
      const after = await m.generate(revive(job.after));
      return { error, stoppedAfterMs, ticks, after };
    } finally {
      m.dispose();
    }
  },
  /** A second call waits in the queue and is aborted there; the first finishes as if alone. */
  async abortWhileWaiting(job) {
    const m = await load(job);
    try {
      const ac = new AbortController();
      const first = m.generate(revive(job.first));
      const second = m.generate({ ...revive(job.second), signal: ac.signal }).then(() => ({ status: 'ok' }), describe);
      setTimeout(() => ac.abort(new Error('user stop')), 1);
      return { first: await first, second: await second };
    } finally {
      m.dispose();
    }
  },
  /** Timers keep running while a CPU generation runs. */
  async timers(job) {
    const m = await load(job);
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 2);
      const t0 = performance.now();
      const tokens = await m.generate(revive(job.generate));
      clearInterval(timer);
      return { ticks, ms: performance.now() - t0, n: tokens.length };
    } finally {
      m.dispose();
    }
  },
};

for (const job of jobs) {
  const t0 = performance.now();
  let r;
  try {
    r = { status: 'ok', value: await scenarios[job.scenario](job) };
  } catch (e) {
    r = describe(e);
  }
  process.stdout.write(`RESULT ${JSON.stringify({ id: job.id, ms: Math.round(performance.now() - t0), ...r })}\n`);
}
process.stdout.write(`RSS ${process.resourceUsage().maxRSS * 1024}\n`);
