// lowbit/worker in Deno: test/runtimes/deno-worker-check.ts loads the tiny Llama fixture in a Web
// Worker and generates; its greedy tokens must be transformers' (reference.json), streamed one
// by one through onToken. Run with the npm `deno` package's binary, from the repository root.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const DENO = join(ROOT, 'node_modules/.bin/deno');

describe('lowbit/worker in Deno', () => {
  it("generates transformers' greedy tokens in a worker, streamed token by token", async () => {
    if (!existsSync(join(ROOT, 'dist/worker.js'))) throw new Error('dist/ is missing: run `bash scripts/build.sh` first');
    if (!existsSync(DENO)) throw new Error(`deno is not installed (${DENO} is missing): run \`npm ci\``);
    const tmp = await mkdtemp(join(tmpdir(), 'lowbit-deno-worker-'));
    try {
      const env = { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', DENO_NO_PROMPT: '1', DENO_DIR: join(tmp, 'deno-dir') };
      const stdout = await new Promise<string>((ok, fail) =>
        execFile(DENO, ['run', '--allow-read', '--allow-env', '--allow-sys', 'test/runtimes/deno-worker-check.ts'], { cwd: ROOT, env, timeout: 120_000 }, (err, out, errOut) =>
          err ? fail(new Error(`deno-worker-check.ts failed: ${err.message}\n${out}\n${errOut}`)) : ok(out),
        ),
      );
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as { runtime: string; ids: number[]; streamed: number[]; reference: number[]; deviceMap: string[] };
      expect(r.runtime).toMatch(/^deno \d+\./);
      expect(r.ids.length).toBe(32);
      expect(r.ids).toEqual(r.reference);
      expect(r.streamed).toEqual(r.ids);
      expect(r.deviceMap).toEqual(['cpu']);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }, 150_000);
});
