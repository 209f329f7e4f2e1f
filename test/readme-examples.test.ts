// The README's code examples, run as written. A ```ts or ```js block of README.md whose line
// above is a marker
//   <!-- example: node -->          run by Node (TypeScript blocks too: Node 24 strips the types)
//   <!-- example: node webgpu -->   the same, where setup prepared WebGPU (LOWBIT_WEBGPU_EXPECT=1
//                                   from .cache/webgpu/env); skipped, with the reason, elsewhere
//   <!-- example: deno -->          run by Deno (npm's deno, --allow-read --allow-write --allow-env)
// is copied, unchanged, into a fresh app folder whose node_modules/lowbit is this repository (the
// built package: dist/ from scripts/build.sh, its package.json "exports") and run there, each
// with a time bound; the test fails when the example throws or exits non-zero. The marked
// TypeScript blocks are also type-checked, each as its own module, by strict tsc without
// skipLibCheck. Blocks without a marker (fragments that need context, like the device-map
// one) are listed, not run.
//
// The model paths the examples name are links in the app folder to local stand-ins (MODELS):
// the default model (SmolLM2-135M-Instruct, fetched by setup) and the tiny transformers /
// bitsandbytes fixtures of test/fixtures. Nothing is downloaded.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webgpuEnv } from './helpers/webgpu.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const DENO = join(ROOT, 'node_modules/.bin/deno');
const DEFAULT_MODEL = join(ROOT, '.cache/models/smollm2-135m-instruct');

/** README path -> what stands in for it here. */
const MODELS: Record<string, string> = {
  'models/TinyLlama-1.1B-Chat': DEFAULT_MODEL, // a chat model with its tokenizer (GGUF)
  'models/TinyLlama-1.1B': join(ROOT, 'test/fixtures/bnb-checkpoints/base-llama'), // fp16 safetensors + config.json
  'models/tiny-llama-nf4': join(ROOT, 'test/fixtures/bnb-checkpoints/llama-nf4'), // saved by transformers + bitsandbytes
  'models/smollm2': DEFAULT_MODEL, // SmolLM2-135M-Instruct.Q4_1.gguf
};

// Hang guards, not speed goals: on the busy 2-core development machine (vitest runs other suites
// beside it) the CPU example took up to 75 s and the WebGPU one (lavapipe) 236 s.
const TIME_BOUND_MS = { node: 240_000, webgpu: 480_000, deno: 120_000 };

interface Example {
  /** The heading above the block (for names and messages). */
  section: string;
  line: number;
  lang: 'ts' | 'js';
  runtime: 'node' | 'deno';
  webgpu: boolean;
  code: string;
}

/** Marked blocks, and the headings / lines of unmarked ts / js blocks. */
function parseReadme(text: string): { examples: Example[]; unmarked: string[] } {
  const lines = text.split('\n');
  const examples: Example[] = [];
  const unmarked: string[] = [];
  let section = '(top)';
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (/^#{1,6} /.test(l)) section = l.replace(/^#+ /, '');
    const fence = /^```(ts|js|typescript|javascript)\s*$/.exec(l);
    if (!fence) {
      if (l.startsWith('```')) {
        // skip over other blocks (their lines are not headings)
        while (++i < lines.length && !lines[i]!.startsWith('```'));
      }
      continue;
    }
    const start = i;
    const body: string[] = [];
    while (++i < lines.length && !lines[i]!.startsWith('```')) body.push(lines[i]!);
    const marker = /^<!--\s*example:\s*([^>]*?)\s*-->\s*$/.exec(lines[start - 1] ?? '');
    if (!marker) {
      unmarked.push(`${section} (README.md:${start + 1})`);
      continue;
    }
    const words = marker[1]!.split(/\s+/);
    const runtime = words[0];
    if (runtime !== 'node' && runtime !== 'deno') throw new Error(`README.md:${start}: unknown example runtime '${runtime}' (node | deno)`);
    const unknown = words.slice(1).filter((w) => w !== 'webgpu');
    if (unknown.length > 0) throw new Error(`README.md:${start}: unknown example option(s) ${unknown.join(', ')} (webgpu)`);
    examples.push({
      section, line: start + 1, lang: fence[1]!.startsWith('t') ? 'ts' : 'js', runtime, webgpu: words.includes('webgpu'), code: body.join('\n') + '\n',
    });
  }
  return { examples, unmarked };
}

function run(file: string, args: string[], cwd: string, timeout: number, env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; stderr: string }> {
  // No inherited npm_* variables: vitest may run under `npm test`, whose config must not leak.
  const clean = Object.fromEntries(Object.entries(env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  return new Promise((ok, fail) => {
    execFile(file, args, { cwd, env: { ...clean, NO_COLOR: '1' }, timeout, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${[file, ...args].join(' ')} (in ${cwd}) failed${err.killed ? ` or ran past ${timeout / 1000} s` : ''}: ${err.message}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
      else ok({ stdout, stderr });
    });
  });
}

const { examples, unmarked } = parseReadme(await readFile(join(ROOT, 'README.md'), 'utf8'));
let tmp: string;

/** A fresh app folder: package.json, node_modules/lowbit -> the repository, the model links. */
async function freshApp(name: string): Promise<string> {
  const app = join(tmp, name);
  await mkdir(join(app, 'node_modules'), { recursive: true });
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'readme-example', private: true, type: 'module', dependencies: { lowbit: '*' } }, null, 2));
  await symlink(ROOT, join(app, 'node_modules/lowbit'), 'dir');
  for (const [path, target] of Object.entries(MODELS)) {
    await mkdir(dirname(join(app, path)), { recursive: true });
    await symlink(target, join(app, path), 'dir');
  }
  return app;
}

const fileOf = (e: Example, i: number) => `example-${i}.${e.lang === 'ts' ? 'mts' : 'mjs'}`;

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('dist/ is missing: run `bash scripts/build.sh` first');
  if (!existsSync(join(DEFAULT_MODEL, 'SmolLM2-135M-Instruct.Q4_1.gguf'))) {
    throw new Error('the default model is missing: run `bash scripts/models/fetch-default-model.sh` (scripts/setup.sh does)');
  }
  tmp = await mkdtemp(join(tmpdir(), 'lowbit-readme-'));
});

afterAll(async () => {
  if (unmarked.length > 0) console.log(`README code blocks without an <!-- example: … --> marker (not run):\n  ${unmarked.join('\n  ')}`);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("README.md's examples, as written", () => {
  it('has marked examples, among them the API, loading and CPU-model ones', () => {
    const sections = examples.map((e) => e.section);
    expect(sections).toEqual(expect.arrayContaining(['API', 'Loading checkpoints', 'Running models (CPU)']));
  });

  it('type-checks every marked TypeScript block with strict tsc (no skipLibCheck)', async () => {
    const app = await freshApp('typecheck');
    const files: string[] = [];
    for (const [i, e] of examples.entries()) {
      if (e.lang !== 'ts') continue;
      files.push(fileOf(e, i));
      await writeFile(join(app, fileOf(e, i)), e.code);
    }
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, skipLibCheck: false, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext',
        lib: ['ES2023', 'DOM'], types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')],
      },
      files,
    }, null, 2));
    await run(process.execPath, [TSC, '-p', 'tsconfig.json'], app, 120_000);
  });

  for (const [i, e] of examples.entries()) {
    const name = `${e.section} (README.md:${e.line}, ${e.runtime}${e.webgpu ? ' + WebGPU' : ''})`;
    const gpuMissing = e.webgpu && process.env.LOWBIT_WEBGPU_EXPECT !== '1';
    const bound = e.webgpu ? TIME_BOUND_MS.webgpu : TIME_BOUND_MS[e.runtime];
    it.skipIf(gpuMissing)(`${name}${gpuMissing ? ' — SKIPPED: no WebGPU prepared (scripts/setup-webgpu.sh)' : ''}`, async () => {
      const app = await freshApp(`example-${i}`);
      const file = fileOf(e, i);
      await writeFile(join(app, file), e.code);
      const env = e.webgpu ? webgpuEnv() : process.env;
      if (e.runtime === 'node') await run(process.execPath, [file], app, bound, env);
      else await run(DENO, ['run', '--allow-read', '--allow-write', '--allow-env', file], app, bound, env);
    }, bound + 30_000);
  }
});
