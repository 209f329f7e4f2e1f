// lowbit in three runtimes: Node (here), Deno (test/runtimes/deno-check.ts, run with the npm
// `deno` package's binary) and headless Chromium (test/runtimes/browser/, driven by
// playwright-core with Debian's /usr/bin/chromium). All three run test/runtimes/check.js on the
// built package (dist/); Node's result is first checked byte for byte against the bitsandbytes
// golden vectors, then Deno's and Chromium's must equal it exactly. Each runtime also runs
// test/runtimes/threads-check.js: the CPU backend on three threads (worker threads with their own
// wasm instances; in Chromium a cross-origin-isolated page) must give the bytes of one thread,
// and the same bytes in all three runtimes.
//
// Needs `bash scripts/build.sh` (dist/) and `bash scripts/setup.sh` (npm deps, chromium). A
// missing runtime fails the test: it does not skip.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CASE_8BIT, CASE_INT8, CASES_4BIT, runChecks } from './runtimes/check.js';
import { MODEL_FILES, runGenerateCheck } from './runtimes/generate-check.js';
import { runThreadChecks } from './runtimes/threads-check.js';
import { runPage } from './helpers/chromium.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const DIST = join(ROOT, 'dist/index.js');
const DENO = join(ROOT, 'node_modules/.bin/deno');
const FIXTURES = join(ROOT, 'test/fixtures/bnb');

type Ref = { offset: number; nbytes: number; dtype: string; shape: number[] };
type Case = Record<string, any> & { name: string };
type Result = ReturnType<typeof runChecks>;

let manifest: { cases: Case[] };
let blob: Uint8Array;
let nodeResult: Result;
let nodeGeneration: Awaited<ReturnType<typeof runGenerateCheck>>;
const LLAMA = join(ROOT, 'test/fixtures/reference-logits/llama');
type ThreadResult = Awaited<ReturnType<typeof runThreadChecks>>;
let nodeThreads: ThreadResult;
let tmp: string;

const hexOf = (r: Ref) => Buffer.from(blob.subarray(r.offset, r.offset + r.nbytes)).toString('hex');
const caseOf = (name: string) => manifest.cases.find((c) => c.name === name)!;

beforeAll(async () => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`bash scripts/build.sh\` first`);
  manifest = JSON.parse(await readFile(join(FIXTURES, 'manifest.json'), 'utf8'));
  blob = new Uint8Array(await readFile(join(FIXTURES, 'blobs.bin')));
  const lowbit = await import(pathToFileURL(DIST).href);
  await lowbit.init();
  nodeResult = runChecks(lowbit, manifest, blob);
  const files = new Map(await Promise.all(MODEL_FILES.map(async (f) => [f, new Blob([await readFile(join(LLAMA, f))])] as const)));
  nodeGeneration = await runGenerateCheck(lowbit, files);
  nodeThreads = await runThreadChecks(lowbit);
  tmp = await mkdtemp(join(tmpdir(), 'lowbit-runtimes-'));
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('Node', () => {
  it('4-bit: packed codes, absmax, dequantization and state dict equal bitsandbytes', () => {
    for (const name of CASES_4BIT) {
      const c = caseOf(name);
      const r = nodeResult.cases[name] as any;
      expect(r.packed, `${name}: packed`).toBe(hexOf(c.packed));
      expect(r.absmax, `${name}: absmax`).toBe(hexOf(c.absmax));
      if (c.compress_statistics) {
        expect(r.nestedAbsmax, `${name}: nested absmax`).toBe(hexOf(c.state2_absmax));
        expect(r.offset, `${name}: nested offset`).toBe(c.offset);
      }
      expect(r.json, `${name}: quant_state JSON`).toBe(c.quant_state_json);
      const bnbDict = Object.fromEntries(Object.entries(c.as_dict as Record<string, Ref>).map(([k, ref]) => [k, { dtype: ref.dtype, shape: ref.shape, data: hexOf(ref) }]));
      // key order matters too: it is the order bitsandbytes writes them in
      expect(Object.keys(r.dict), `${name}: dict keys`).toEqual(Object.keys(bnbDict));
      expect(r.dict, `${name}: QuantState.toDict()`).toEqual(bnbDict);
      expect(r.fromBnb.dict, `${name}: fromDict(bnb).toDict()`).toEqual(bnbDict);
      expect(r.fromBnb.json, `${name}: fromDict(bnb) JSON`).toBe(c.quant_state_json);
      expect(r.roundTrip.dict, `${name}: toDict round trip`).toEqual(r.dict);
      for (const dt of ['float32', 'float16', 'bfloat16']) {
        const want = hexOf(c.dequant[dt]);
        expect(r.dequant[dt], `${name}: dequantize4bit -> ${dt}`).toBe(want);
        expect(r.roundTrip.dequant[dt], `${name}: dequant after fromDict(toDict()) -> ${dt}`).toBe(want);
        expect(r.fromBnb.dequant[dt], `${name}: dequant of bnb's packed+dict -> ${dt}`).toBe(want);
      }
    }
  });

  it('8-bit blockwise and LLM.int8 equal bitsandbytes', () => {
    const b = caseOf(CASE_8BIT);
    const r8 = nodeResult.cases[CASE_8BIT] as any;
    expect(r8.q).toBe(hexOf(b.q));
    expect(r8.absmax).toBe(hexOf(b.absmax));
    expect(r8.dequant).toBe(hexOf(b.dequant));
    expect(r8.fromBnbDequant).toBe(hexOf(b.dequant));
    const i = caseOf(CASE_INT8);
    const ri = nodeResult.cases[CASE_INT8] as any;
    expect(ri.CB).toBe(hexOf(i.CB));
    expect(ri.SCB).toBe(hexOf(i.SCB));
    expect(ri.outlierCols).toBe(i.outlier_cols ? hexOf(i.outlier_cols) : null);
  });

  it('non-finite input throws LowbitError NON_FINITE with the index', () => {
    expect(nodeResult.errors).toEqual({
      nan: { threw: true, isLowbitError: true, name: 'LowbitError', code: 'NON_FINITE', index: 37 },
      inf16: { threw: true, isLowbitError: true, name: 'LowbitError', code: 'NON_FINITE', index: 3 },
      nanAllowed: { threw: false },
    });
    expect(nodeResult.simd128).toBe(true);
  });

  it('loads a model from Blobs and generates: fp32 greedy tokens equal transformers\'', async () => {
    const ref = JSON.parse(await readFile(join(LLAMA, 'reference.json'), 'utf8')) as { fp32: { greedy_tokens: number[] } };
    expect(nodeGeneration.fp32.tokens).toEqual(ref.fp32.greedy_tokens.slice(0, 16));
    expect(nodeGeneration.nf4.tokens).toHaveLength(16);
    // NF4 weights take about a quarter of the f32 bytes of the quantized linears
    expect(nodeGeneration.nf4.footprint).toBeLessThan(nodeGeneration.fp32.footprint * 0.7);
  });

  it('three threads (worker_threads) give the bytes of one thread; auto uses every core', () => {
    expectThreads(nodeThreads, availableParallelism());
  });
});

/** A runtime's threads-check result: threaded == one thread, auto took the cores, bytes == Node's. */
function expectThreads(t: ThreadResult, cores: number): void {
  expect(t.threads).toBe(3);
  expect(Object.values(t.same).every((v) => v === true), JSON.stringify(t.same)).toBe(true);
  expect(t.autoThreads).toBe(Math.min(cores, 8));
  // 'auto' with its speed test keeps the threads exactly when they measured >= 1.2x
  if (cores > 1) {
    expect(t.calibrated.speedup).toBeGreaterThan(0);
    expect(t.calibrated.threads).toBe(t.calibrated.speedup! >= 1.2 ? Math.min(cores, 8) : 1);
  }
  if (t !== nodeThreads) expect(t.outputs).toEqual(nodeThreads.outputs);
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeout: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((ok, fail) => {
    execFile(file, args, { cwd: ROOT, env, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else ok({ stdout, stderr });
    });
  });
}

describe('Deno', () => {
  it('deno-check.ts gives the same bytes as Node', async () => {
    if (!existsSync(DENO)) {
      throw new Error(`deno is not installed (${DENO} is missing): run \`npm ci\` or \`bash scripts/setup.sh\` (devDependency "deno" brings the binary)`);
    }
    const env = { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', DENO_NO_PROMPT: '1', DENO_DIR: join(tmp, 'deno-dir') };
    const { stdout } = await run(DENO, ['run', '--allow-read', 'test/runtimes/deno-check.ts'], env, 90_000);
    const line = stdout.trim().split('\n').at(-1)!;
    const out = JSON.parse(line) as { runtime: string; build: string; result: Result; generation: typeof nodeGeneration; threads: ThreadResult; cores: number };
    expect(out.runtime).toMatch(/^deno \d+\./);
    // Deno has relaxed SIMD (1.33+): init()'s feature test picks that build
    expect(out.build).toBe('relaxed-simd');
    expect(out.result).toEqual(nodeResult);
    // the same logits bits and tokens as Node, fp32 and NF4
    expect(out.generation).toEqual(nodeGeneration);
    expectThreads(out.threads, out.cores);
  });
});

describe('Chromium', () => {
  it('a page quantizes and dequantizes with the same bytes as Node', async () => {
    const { result: out, served, logs } = await runPage<{ ok: boolean; error?: string; runtime?: string; build?: string; result?: Result; generation?: typeof nodeGeneration; threads: ThreadResult; crossOriginIsolated: boolean; cores: number }>(ROOT, '/test/runtimes/browser/');
    expect(out.ok, `${out.error ?? ''}\n${logs.join('\n')}`).toBe(true);
    expect(out.runtime).toMatch(/HeadlessChrome|Chrome/);
    // Chromium has relaxed SIMD (114+): init() fetched that build over HTTP (not from disk) from
    // the package's own folder, and not the other one
    expect(out.build).toBe('relaxed-simd');
    expect(served).toContain('/dist/wasm/pkg/lowbit_wasm_relaxed_bg.wasm');
    expect(served).not.toContain('/dist/wasm/pkg/lowbit_wasm_bg.wasm');
    expect(out.result).toEqual(nodeResult);
    expect(out.generation).toEqual(nodeGeneration);
    expect(out.crossOriginIsolated).toBe(true);
    expectThreads(out.threads, out.cores);
    // the worker script came from the package's own folder
    expect(served).toContain('/dist/backends/cpu/threads/worker.js');
  });
});
