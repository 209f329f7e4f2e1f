/**
 * The two wasm builds (scripts/build.sh): SIMD128 and SIMD128 + relaxed SIMD. init() picks the
 * relaxed one where the engine validates relaxed SIMD, can be forced either way (init({ simd })
 * or LOWBIT_WASM_BUILD), and wasmBuild() reports what the module itself says it is. Worker
 * threads run the main thread's build. scripts/test.sh runs this file under both builds, and
 * test/runtimes/node-simd128-smoke.mjs checks the fallback on an engine without relaxed SIMD.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { init, wasmBuild, relaxedSimdSupported, CpuBackend, LowbitError, type WasmBuild } from '../dist/index.js';
import { WorkerPool } from '../dist/backends/cpu/threads/pool.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PKG = new URL('../dist/wasm/pkg/', import.meta.url);
const FILES: Record<WasmBuild, URL> = { simd128: new URL('lowbit_wasm_bg.wasm', PKG), 'relaxed-simd': new URL('lowbit_wasm_relaxed_bg.wasm', PKG) };

/** What init() must have picked here: LOWBIT_WASM_BUILD when set, else the engine decides. */
function expectedBuild(): WasmBuild {
  const env = process.env.LOWBIT_WASM_BUILD;
  if (env === 'simd128') return 'simd128';
  if (env === 'relaxed' || env === 'relaxed-simd') return 'relaxed-simd';
  return relaxedSimdSupported() ? 'relaxed-simd' : 'simd128';
}

/** Runs a script on this Node with `env` added; returns its last stdout line as JSON. */
function child(script: string, env: Record<string, string>): Promise<Record<string, unknown>> {
  return new Promise((ok, fail) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${err.message}\n${stderr}`));
      else ok(JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>);
    });
  });
}

const REPORT = `
import { init, wasmBuild, CpuBackend } from './dist/index.js';
const opt = process.env.SIMD_OPTION ? { simd: process.env.SIMD_OPTION } : undefined;
try {
  await init(opt);
  const be = await CpuBackend.create({ threads: 2 });
  console.log(JSON.stringify({ build: wasmBuild(), name: be.name, threads: be.threads }));
  be.dispose();
} catch (e) {
  console.log(JSON.stringify({ code: e.code, message: e.message }));
}`;

beforeAll(async () => {
  await init();
});

describe('wasm builds', () => {
  it('the feature test agrees with the engine: relaxed SIMD from Node 21 on', () => {
    const major = Number(process.versions.node.split('.')[0]);
    expect(relaxedSimdSupported()).toBe(major >= 21);
  });

  it('both builds are packaged; each validates exactly where its features are', async () => {
    const [simd, relaxed] = await Promise.all([readFile(FILES.simd128), readFile(FILES['relaxed-simd'])]);
    expect(WebAssembly.validate(simd)).toBe(true);
    // the relaxed build contains relaxed instructions (it would not validate without them)
    expect(WebAssembly.validate(relaxed)).toBe(relaxedSimdSupported());
    expect(Buffer.compare(simd, relaxed)).not.toBe(0);
  });

  it('init() loaded the expected build and the module reports the same', () => {
    expect(wasmBuild()).toBe(expectedBuild());
  });

  it('the CPU backend and its worker threads run the main thread\'s build', async () => {
    const be = await CpuBackend.create({ threads: 2 });
    try {
      expect(be.threads).toBe(2);
      expect(be.name).toBe(`wasm-${wasmBuild()}`);
    } finally {
      be.dispose();
    }
  });

  it('a pool whose workers would load the other build does not start', async () => {
    if (!relaxedSimdSupported()) return; // only one build runs here
    const other = wasmBuild() === 'simd128' ? 'relaxed-simd' : 'simd128';
    const module = await WebAssembly.compile(await readFile(FILES[other]));
    let err: unknown;
    try {
      (await WorkerPool.start({ threads: 2, module })).terminate();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LowbitError);
    expect((err as LowbitError).code).toBe('WORKER_FAILED');
    expect((err as Error).message).toContain(`runs the ${other} wasm build, the main thread ${wasmBuild()}`);
  });

  it('LOWBIT_WASM_BUILD and init({ simd }) force either build; bad values are INVALID_ARGUMENT', async () => {
    const relaxed = relaxedSimdSupported();
    const cases: [Record<string, string>, Record<string, unknown>][] = [
      [{ LOWBIT_WASM_BUILD: 'simd128' }, { build: 'simd128', name: 'wasm-simd128', threads: 2 }],
      [{ LOWBIT_WASM_BUILD: 'auto' }, { build: relaxed ? 'relaxed-simd' : 'simd128' }],
      [{ LOWBIT_WASM_BUILD: 'relaxed-simd', SIMD_OPTION: 'simd128' }, { build: 'simd128' }],
      [{ LOWBIT_WASM_BUILD: 'simd128', SIMD_OPTION: 'relaxed' }, relaxed ? { build: 'relaxed-simd', name: 'wasm-relaxed-simd', threads: 2 } : { code: 'WASM_LOAD_FAILED' }],
      [{ LOWBIT_WASM_BUILD: 'avx512' }, { code: 'INVALID_ARGUMENT' }],
      [{ LOWBIT_WASM_BUILD: '', SIMD_OPTION: 'fast' }, { code: 'INVALID_ARGUMENT' }],
    ];
    const got = await Promise.all(cases.map(([env]) => child(REPORT, { SIMD_OPTION: '', ...env })));
    cases.forEach(([env, want], i) => expect(got[i], JSON.stringify(env)).toMatchObject(want));
  });
});
