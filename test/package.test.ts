// The new-user path, from the packed tarball rather than the repository: `npm pack`, then
// `npm install <tarball>` into a fresh app (no webgpu, no @types, no config), and in that app
//   (a) the README's API example, extracted from README.md and run as written by Node (ESM);
//   (b) strict `tsc` (TypeScript 5.9's `tsc --init` settings, skipLibCheck off, no @types) on a
//       file that uses the public API the README shows, model.backend.threads included;
//   (c) a default `vite build` (no vite.config) of an index.html + main.js that import lowbit
//       and lowbit/worker (whose model worker must bundle too),
//       whose built page then runs test/runtimes/threads-check.js on three threads in headless
//       Chromium — the bundled worker is vite's default classic (iife) worker;
// and checks of what the tarball holds: LICENSE, every source map's sources, no 132 MB Dawn
// install, deviceMap 'gpu' failing at once with advice a user can follow, the `lowbit` command;
// then, where setup prepared a WebGPU driver, `npm install webgpu` and deviceMap 'gpu' on Dawn.
//
// Needs dist/ (scripts/build.sh), node_modules (typescript, vite) and chromium (setup.sh
// --with-browser). npm installs the tarball's dependencies from its cache (--prefer-offline).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPage } from './helpers/chromium.js';
import { runThreadChecks } from './runtimes/threads-check.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const VITE = join(ROOT, 'node_modules/vite/bin/vite.js');
const LLAMA = join(ROOT, 'test/fixtures/reference-logits/llama');

let tmp: string;
let app: string;
/** Files in the tarball (paths inside the package). */
let packed: string[];
/** Seconds per step of the new-user path, printed at the end. */
const timings: [string, number][] = [];

function run(file: string, args: string[], cwd: string, timeout = 120_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((ok, fail) => {
    // No inherited npm_* variables: vitest may run under `npm test`, whose config (prefix,
    // workspace) must not leak into the fresh app's npm.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
    execFile(file, args, { cwd, env: { ...env, NO_COLOR: '1' }, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${file} ${args.join(' ')} (in ${cwd}) failed: ${err.message}\n${stdout}\n${stderr}`));
      else ok({ stdout, stderr });
    });
  });
}

async function timed<T>(step: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await f();
  timings.push([step, (performance.now() - t0) / 1000]);
  return r;
}

/** The first ```ts block after `heading` in README.md. */
async function readmeBlock(heading: string): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n${heading}\n`);
  expect(at, `README.md has no "${heading}" section`).toBeGreaterThan(0);
  const m = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  expect(m, `no ts block under "${heading}"`).not.toBeNull();
  return m![1]!;
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('dist/ is missing: run `bash scripts/build.sh` first');
  tmp = await mkdtemp(join(tmpdir(), 'lowbit-package-'));
  app = join(tmp, 'app');
  await mkdir(app);
  const { stdout } = await timed('npm pack', () => run('npm', ['pack', '--json', '--pack-destination', tmp], ROOT));
  const info = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  packed = info[0]!.files.map((f) => f.path);
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }, null, 2));
  await timed('npm install <tarball>', () =>
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp, info[0]!.filename)], app),
  );
});

afterAll(async () => {
  if (timings.length > 0) console.log(`new-user path:\n${timings.map(([s, t]) => `  ${s.padEnd(44)} ${t.toFixed(1)} s`).join('\n')}`);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the packed package in a fresh app', () => {
  it('ships LICENSE, the files the source maps name, and installs without Dawn', async () => {
    expect(packed).toContain('LICENSE');
    expect(packed).toContain('dist/index.d.ts');
    // both wasm builds (SIMD128 and relaxed SIMD; init() picks one)
    expect(packed).toContain('dist/wasm/pkg/lowbit_wasm_bg.wasm');
    expect(packed).toContain('dist/wasm/pkg/lowbit_wasm_relaxed_bg.wasm');
    const maps = packed.filter((p) => p.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(20);
    const missing: string[] = [];
    for (const m of maps) {
      const { sources } = JSON.parse(await readFile(join(app, 'node_modules/lowbit', m), 'utf8')) as { sources: string[] };
      for (const s of sources) {
        const p = join(dirname(m), s);
        if (!packed.includes(p)) missing.push(`${m} -> ${p}`);
      }
    }
    expect(missing).toEqual([]);
    // webgpu is an optional peer dependency: a plain install does not fetch it.
    const installed = await readdir(join(app, 'node_modules'));
    expect(installed).toContain('lowbit');
    expect(installed).not.toContain('webgpu');
    expect(installed).not.toContain('@webgpu');
  });

  it("runs the README's API example as written (Node ESM)", async () => {
    const example = await readmeBlock('## API');
    // The example as written, then a line that reports what it made.
    const check = `\nconsole.log(JSON.stringify({ packed: packed.length, quantType: restored.quantType, w: [w.constructor.name, w.length], w32: [w32.constructor.name, w32.length] }));\n`;
    await writeFile(join(app, 'api-example.mjs'), example + check);
    const { stdout } = await timed('node api-example.mjs (README ## API)', () => run('node', ['api-example.mjs'], app));
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({ packed: 442368, quantType: 'nf4', w: ['Uint16Array', 884736], w32: ['Float32Array', 884736] });
  });

  it("deviceMap 'gpu' without the webgpu package fails at once with `npm install webgpu`; 'auto' runs on the CPU", async () => {
    const script = `
import { AutoModelForCausalLM, init } from 'lowbit';
await init();
const dir = ${JSON.stringify(LLAMA)};
const t0 = performance.now();
const e = await AutoModelForCausalLM.fromPretrained(dir, { deviceMap: 'gpu' }).then(() => undefined, (x) => x);
const gpuMs = performance.now() - t0;
const model = await AutoModelForCausalLM.fromPretrained(dir, { deviceMap: 'auto' });
const devices = [...new Set(Object.values(model.deviceMap))];
model.dispose();
console.log(JSON.stringify({ code: e?.code, message: e?.message, gpuMs, devices }));
`;
    await writeFile(join(app, 'gpu-check.mjs'), script);
    const { stdout, stderr } = await run('node', ['gpu-check.mjs'], app);
    const r = JSON.parse(stdout.trim()) as { code: string; message: string; gpuMs: number; devices: string[] };
    expect(r.code).toBe('WEBGPU_UNAVAILABLE');
    expect(r.message).toContain('npm install webgpu');
    expect(r.message).not.toContain('scripts/');
    expect(r.gpuMs).toBeLessThan(1000);
    expect(r.devices).toEqual(['cpu']);
    expect(stderr).toBe(''); // no driver noise
  });

  it('installs the `lowbit` command (npx lowbit)', async () => {
    const { stdout } = await timed('npx lowbit inspect <tiny llama> --json', () => run('npx', ['--no-install', 'lowbit', 'inspect', LLAMA, '--json'], app));
    const info = JSON.parse(stdout) as { model: { family: string }; memory: { rows: { quant: string }[] } };
    expect(info.model.family).toBe('llama');
    expect(info.memory.rows.map((r) => r.quant)).toContain('nf4-dq');
  });

  it('passes strict tsc (no skipLibCheck, no @types) on code using the public API', async () => {
    // TypeScript 5.9's `tsc --init`, with skipLibCheck turned off.
    const tsconfig = {
      compilerOptions: {
        module: 'nodenext', target: 'esnext', types: [], sourceMap: true, declaration: true, declarationMap: true,
        noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true, strict: true, jsx: 'react-jsx', verbatimModuleSyntax: true,
        isolatedModules: true, noUncheckedSideEffectImports: true, moduleDetection: 'force', skipLibCheck: false, noEmit: true,
      },
      include: ['*.ts'],
    };
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const api = await readmeBlock('## API');
    const use = `
import { AutoModelForCausalLM, BitsAndBytesConfig, TextStreamer, WebGpuBackend, LowbitError, type GenerateOptions } from 'lowbit';
import { fromPretrainedInWorker, type WorkerModel } from 'lowbit/worker';

export async function chat(dir: string): Promise<string> {
  const model = await AutoModelForCausalLM.fromPretrained(dir, {
    quantizationConfig: new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }),
    deviceMap: 'auto',
    threads: 'auto',
  });
  const threads: number | undefined = model.backend.threads;
  const why: string | undefined = model.backend.threadsNote;
  const o: GenerateOptions = { messages: [{ role: 'user', content: 'Hi' }], maxNewTokens: 8, doSample: true, seed: 1 };
  const ids = await model.generate({ ...o, streamer: new TextStreamer(model.tokenizer!, (text) => console.log(text)) });
  model.dispose();
  return \`\${threads} \${why ?? ''} \${model.tokenizer!.decode(ids)}\`;
}

export async function inWorker(url: string, out: { append(text: string): void }): Promise<number> {
  const model: WorkerModel = await fromPretrainedInWorker(url, { quantizationConfig: { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, deviceMap: 'cpu', onProgress: (e) => console.log(e.phase) });
  for await (const text of model.stream({ messages: [{ role: 'user', content: 'Hi' }], maxNewTokens: 8 })) out.append(text);
  const tokensPerSecond = model.lastStats?.decodeTokensPerSecond ?? 0;
  model.dispose();
  return tokensPerSecond;
}

export async function gpu(): Promise<string> {
  try {
    const b = await WebGpuBackend.create({ powerPreference: 'high-performance' });
    b.dispose();
    return 'webgpu';
  } catch (e) {
    if (e instanceof LowbitError && e.code === 'WEBGPU_UNAVAILABLE') return e.message;
    throw e;
  }
}
`;
    await writeFile(join(app, 'api-example.ts'), api);
    await writeFile(join(app, 'use.ts'), use);
    await timed('tsc --strict, no skipLibCheck (2 files)', () => run('node', [TSC, '-p', 'tsconfig.json'], app));
    // An app that targets ES2022 (no esnext disposable lib) type-checks our declarations too.
    await writeFile(join(app, 'tsconfig.es2022.json'), JSON.stringify({ extends: './tsconfig.json', compilerOptions: { target: 'es2022' } }));
    await timed('tsc --strict, target es2022', () => run('node', [TSC, '-p', 'tsconfig.es2022.json'], app));

    // With @webgpu/types, lowbit's GPU* names merge with the full declarations.
    await mkdir(join(app, 'node_modules/@webgpu'), { recursive: true });
    await symlink(join(ROOT, 'node_modules/@webgpu/types'), join(app, 'node_modules/@webgpu/types'), 'dir');
    await writeFile(join(app, 'tsconfig.gpu.json'), JSON.stringify({ extends: './tsconfig.json', compilerOptions: { types: ['@webgpu/types'] }, include: [], files: ['gpu.ts'] }));
    await writeFile(
      join(app, 'gpu.ts'),
      `import { WebGpuBackend, findGpu } from 'lowbit';
const gpu: GPU | undefined = await findGpu();
const adapter: GPUAdapter | null | undefined = await gpu?.requestAdapter();
if (adapter) {
  const backend = await WebGpuBackend.create({ gpu: navigator.gpu, powerPreference: 'low-power' });
  const device: GPUDevice = backend.ctx.device;
  const buffer: GPUBuffer = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
  buffer.destroy();
  backend.dispose();
}
`,
    );
    await timed('tsc --strict with @webgpu/types', () => run('node', [TSC, '-p', 'tsconfig.gpu.json'], app));
    await rm(join(app, 'node_modules/@webgpu'), { recursive: true });
  });

  it('builds with a default `vite build`, and the page runs three threads in Chromium', async () => {
    await writeFile(join(app, 'index.html'), '<!doctype html>\n<html><body><p id="status">loading</p><script type="module" src="./main.js"></script></body></html>\n');
    await copyFile(join(ROOT, 'test/runtimes/threads-check.js'), join(app, 'threads-check.js'));
    await writeFile(
      join(app, 'main.js'),
      `import * as lowbit from 'lowbit';
import { fromPretrainedInWorker } from 'lowbit/worker';
import { runThreadChecks } from './threads-check.js';
window.__fromPretrainedInWorker = fromPretrainedInWorker; // bundled: the model worker must build with vite's defaults too
try {
  await lowbit.init();
  window.__lowbitResult = { ok: true, threads: await runThreadChecks(lowbit) };
} catch (e) {
  window.__lowbitResult = { ok: false, error: String(e?.stack ?? e) };
}
`,
    );
    await timed('vite build (no config)', () => run('node', [VITE, 'build', '--logLevel', 'warn'], app));
    const assets = await readdir(join(app, 'dist/assets'));
    // vite ships both builds (init() names each with a literal new URL(..., import.meta.url))
    expect(assets.filter((f) => f.endsWith('.wasm')).map((f) => f.replace(/-[\w-]+\.wasm$/, '')).sort()).toEqual(['lowbit_wasm_bg', 'lowbit_wasm_relaxed_bg']);
    const worker = assets.find((f) => f.startsWith('worker-') && f.endsWith('.js'));
    expect(worker, `no worker chunk in ${assets.join(', ')}`).toBeDefined();
    // lowbit/worker's model worker (a classic iife worker holding all of lowbit, the thread worker nested)
    expect(assets.some((f) => /^model-worker-.*\.js$/.test(f)), `no model-worker chunk in ${assets.join(', ')}`).toBe(true);

    const page = await timed('built page in headless Chromium (3 threads)', () =>
      runPage<{ ok: boolean; error?: string; threads: Awaited<ReturnType<typeof runThreadChecks>> }>(join(app, 'dist'), '/'),
    );
    expect(page.result.ok, `${page.result.error}\n${page.logs.join('\n')}`).toBe(true);
    expect(page.served).toContain(`/assets/${worker}`);
    const t = page.result.threads;
    expect(t.threads).toBe(3);
    expect(Object.values(t.same).every(Boolean)).toBe(true);
    // The same bytes as the repository's build in Node.
    const lowbit = await import('../dist/index.js');
    await lowbit.init();
    const node = await runThreadChecks(lowbit);
    expect(t.outputs).toEqual(node.outputs);
  });

  // Where setup prepared a WebGPU driver (scripts/setup-webgpu.sh): the README's way to WebGPU in Node.
  it.runIf(process.env.LOWBIT_WEBGPU_EXPECT === '1')("after `npm install webgpu`, deviceMap 'gpu' runs on Dawn", async () => {
    await timed('npm install webgpu (opt-in, Dawn)', () => run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', 'webgpu@0.6.2'], app));
    const script = `
import { AutoModelForCausalLM, init } from 'lowbit';
await init();
const model = await AutoModelForCausalLM.fromPretrained(${JSON.stringify(LLAMA)}, { deviceMap: 'gpu' });
const ids = await model.generate({ inputIds: [1, 2, 3], maxNewTokens: 4 });
console.log(JSON.stringify({ devices: [...new Set(Object.values(model.deviceMap))], ids: ids.length }));
model.dispose();
`;
    await writeFile(join(app, 'gpu-on.mjs'), script);
    const { stdout } = await run('node', ['gpu-on.mjs'], app);
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({ devices: ['webgpu'], ids: 4 });
  });
});
