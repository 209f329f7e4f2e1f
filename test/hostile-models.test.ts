/**
 * Hostile model corpus (issue 11): model folders and calls built from the tiny fixtures with one
 * thing wrong each (test/hostile/cases.ts), run in child processes with a 512 MB V8 heap and a
 * time limit (test/hostile/runner.mjs, a few cases per process). Every case must end in a
 * LowbitError with the expected code or in a correct result; a crash, an untyped error or a hang
 * fails it. Runs the built library (dist/).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GgufFile, init, localSource } from '../dist/index.js';
import { ggufBase, hostileCases, type Case, type Outcome } from './hostile/cases.js';
import type { GgufMeta } from './hostile/files.js';

const RUNNER = fileURLToPath(new URL('./hostile/runner.mjs', import.meta.url));
const GGUF_DIR = fileURLToPath(new URL('./fixtures/gguf-model/', import.meta.url));
const HEAP_MB = 512;
const BATCH_TIMEOUT_MS = 60_000;
const PARALLEL = 2;

const cases = hostileCases();
const results = new Map<string, Outcome>();
const rss: number[] = [];
let root: string;

/** The tiny GGUF fixture's metadata (typed as llama.cpp writes it) and tensors. */
async function readGgufBase(): Promise<void> {
  await init();
  const gg = await GgufFile.open(await localSource(GGUF_DIR).open('llama-f32.gguf'));
  const floats = new Set(['llama.attention.layer_norm_rms_epsilon', 'llama.rope.freq_base']);
  for (const [k, v] of gg.metadata) {
    let m: GgufMeta;
    if (typeof v === 'string') m = { type: 'str', value: v };
    else if (typeof v === 'number') m = floats.has(k) ? { type: 'f32', value: v } : { type: 'u32', value: v };
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) m = { type: 'arr', of: 'str', value: v as string[] };
    else if (v instanceof Float32Array) m = { type: 'arr', of: 'f32', value: Array.from(v) };
    else if (ArrayBuffer.isView(v)) m = { type: 'arr', of: 'i32', value: Array.from(v as unknown as ArrayLike<number>) };
    else throw new Error(`unexpected metadata ${k}`);
    ggufBase.meta.set(k, m);
  }
  for (const t of gg.tensors.values()) {
    if (t.ggmlType !== 'F32') throw new Error(`expected F32 tensors, got ${t.ggmlType}`);
    ggufBase.tensors.push({ name: t.name, shape: t.shape, data: await gg.read(t.name) });
  }
  await gg.source.close?.();
}

/** Runs one batch in a child process; cases without a result (crash, timeout) get a 'crash' outcome. */
function runBatch(batch: Array<{ c: Case; dir: string }>, index: number): Promise<void> {
  const jobsFile = join(root, `jobs-${index}.json`);
  writeFileSync(jobsFile, JSON.stringify(batch.map(({ c, dir }) => ({ id: c.id, dir, ...c.job }))));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, RUNNER, jobsFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), BATCH_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      for (const line of out.split('\n')) {
        if (line.startsWith('RESULT ')) {
          const r = JSON.parse(line.slice(7)) as Outcome & { id: string };
          results.set(r.id, r);
        } else if (line.startsWith('RSS ')) rss.push(Number(line.slice(4)));
      }
      for (const { c } of batch) {
        if (!results.has(c.id)) results.set(c.id, { status: 'crash', message: `child exited (code ${code}, signal ${signal}) before this case finished: ${err.slice(-2000)}` });
      }
      resolve();
    });
  });
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'lowbit-hostile-'));
  await readGgufBase();
  const built = cases.map((c, i) => {
    const dir = join(root, `case-${i}`);
    c.build(dir);
    return { c, dir };
  });
  // Batches of about 8, the slow ones (aborts, timers, template time limits) spread over them.
  const slow = (c: Case) => c.cls === 'abort' || c.cls === 'concurrency' || /time limit|20,000/.test(c.id);
  const ordered = [...built.filter((b) => slow(b.c)), ...built.filter((b) => !slow(b.c))];
  const nBatches = Math.ceil(ordered.length / 8);
  const batches: Array<Array<{ c: Case; dir: string }>> = Array.from({ length: nBatches }, () => []);
  ordered.forEach((b, i) => batches[i % nBatches]!.push(b));
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < batches.length) {
        const i = next++;
        await runBatch(batches[i]!, i);
      }
    }),
  );
}, 300_000);

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  // HOSTILE_REPORT=path writes the cases by class with their outcomes (for the issue's closing note).
  const report = process.env.HOSTILE_REPORT;
  if (report) {
    const lines: string[] = [];
    for (const cls of [...new Set(cases.map((c) => c.cls))]) {
      lines.push(`### ${cls}`);
      for (const c of cases.filter((x) => x.cls === cls)) {
        const r = results.get(c.id);
        const outcome = r?.status === 'error' ? `${r.lowbit ? 'LowbitError' : 'NOT LowbitError'} ${r.code ?? ''}${r.cause ? ` (cause ${r.cause})` : ''}` : r?.status === 'ok' ? 'correct result' : `CRASH ${r?.message?.slice(0, 100) ?? ''}`;
        lines.push(`- ${c.id} → ${outcome}${r?.ms !== undefined ? `, ${r.ms} ms` : ''}`);
      }
    }
    writeFileSync(report, lines.join('\n') + '\n');
  }
});

describe('hostile model corpus', () => {
  it('has at least 60 model-level cases in every class', () => {
    expect(cases.length).toBeGreaterThanOrEqual(60);
    const ids = cases.map((c) => c.id);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    for (const cls of ['config', 'options', 'tensors', 'prequantized', 'shards', 'gguf', 'tokenizer', 'template', 'generate-args', 'concurrency', 'abort']) {
      expect(cases.some((c) => c.cls === cls), cls).toBe(true);
    }
  });

  it('no child process grew past 1 GiB resident', () => {
    expect(rss.length).toBeGreaterThan(0);
    expect(Math.max(...rss)).toBeLessThan(2 ** 30);
  });

  for (const c of cases) {
    it(`[${c.cls}] ${c.id}`, () => {
      const r = results.get(c.id)!;
      expect(r, 'no result').toBeDefined();
      if ('code' in c.expect) {
        const codes = Array.isArray(c.expect.code) ? c.expect.code : [c.expect.code];
        expect(r.status, `expected a LowbitError ${codes.join(' | ')}, got ${JSON.stringify(r).slice(0, 600)}`).toBe('error');
        expect(r.lowbit, `not a LowbitError: ${JSON.stringify(r).slice(0, 600)}`).toBe(true);
        expect(codes, r.message).toContain(r.code);
        if (c.expect.message) expect(r.message).toMatch(c.expect.message);
      } else {
        expect(r.status, JSON.stringify(r).slice(0, 600)).toBe('ok');
        c.expect.ok(r.value);
      }
    });
  }
});
