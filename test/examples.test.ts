// Every script in examples/node and examples/deno runs, as the README and the examples' own
// headers tell a user to run it (from the repository root, after scripts/build.sh), each with a
// time bound (a hang guard, generous: vitest runs other suites beside it on 2 cores); what it
// prints is checked where the output is deterministic. A script this table does not know runs
// without arguments and must exit 0 within the bound. (examples/browser has its own test.)
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const DENO = join(ROOT, 'node_modules/.bin/deno');

interface Case {
  /** Arguments after the script (fewer layers / tokens than the defaults, to stay quick). */
  args?: string[];
  /** Checks of stdout (and stderr) once it exited 0. */
  check?: (stdout: string, stderr: string) => void;
  boundMs?: number;
}

const NODE_CASES: Record<string, Case> = {
  'demo.mjs': {
    args: ['--layers', '1'],
    check: (out) => {
      expect(out).toContain('SmolLM2-135M-shaped linear weights, 1 layer(s)');
      for (const format of ['fp32', 'fp16', 'int8 (LLM.int8 rows)', 'fp4', 'nf4', 'nf4 + double quant', 'int4']) {
        expect(out).toMatch(new RegExp(`^${format.replace(/[()+]/g, '\\$&')}\\s+\\d`, 'm'));
      }
    },
  },
  'generate.mjs': {
    // greedy: the README's answer
    args: ['--prompt', 'What is the capital of France?', '--max-new-tokens', '12'],
    check: (out, err) => {
      expect(out).toContain('Paris');
      expect(err).toMatch(/new tokens: decode [\d.]+ tokens\/s/);
      expect(err).toMatch(/memory footprint: [\d.]+ MiB/);
    },
    boundMs: 300_000,
  },
  'perplexity.mjs': {
    args: ['--quant', 'nf4', '--max-tokens', '96', '--window', '64', '--json'],
    check: (out) => {
      const row = JSON.parse(out.trim().split('\n').pop()!) as { variant: string; tokens: number; exact: number; fast: number; top1_agreement: number };
      expect(row.variant).toBe('nf4');
      expect(row.tokens).toBe(96);
      // a 135M model on English prose: single-digit-to-tens perplexity, fast kernels close to exact
      expect(row.exact).toBeGreaterThan(1);
      expect(row.exact).toBeLessThan(100);
      expect(Math.abs(row.fast / row.exact - 1)).toBeLessThan(0.05);
    },
    boundMs: 300_000,
  },
};

const DENO_CASES: Record<string, Case> = {
  'quantize.ts': {
    check: (out) => {
      expect(out).toContain('bf16 262144 bytes -> nf4 65536 + state');
      expect(out).toMatch(/relative RMS error 0\.\d+/);
      expect(out).toContain('NaN input: NON_FINITE at index 1234');
    },
  },
};

function run(file: string, args: string[], timeout: number): Promise<{ stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  return new Promise((ok, fail) => {
    execFile(file, args, { cwd: ROOT, env: { ...env, NO_COLOR: '1' }, timeout, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${[file, ...args].join(' ')} failed${err.killed ? ` or ran past ${timeout / 1000} s` : ''}: ${err.message}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
      else ok({ stdout, stderr });
    });
  });
}

const scripts = (dir: string, ext: RegExp) => readdirSync(join(ROOT, dir)).filter((f) => ext.test(f)).sort();

describe('examples/', () => {
  it('has the Node and Deno examples the README names', () => {
    if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('dist/ is missing: run `bash scripts/build.sh` first');
    expect(scripts('examples/node', /\.m?js$/)).toEqual(expect.arrayContaining(['demo.mjs', 'generate.mjs']));
    expect(scripts('examples/deno', /\.ts$/)).toContain('quantize.ts');
  });

  for (const f of scripts('examples/node', /\.m?js$/)) {
    const c = NODE_CASES[f] ?? {};
    const bound = c.boundMs ?? 180_000;
    it(`node examples/node/${f} ${(c.args ?? []).join(' ')}`, async () => {
      const { stdout, stderr } = await run(process.execPath, [`examples/node/${f}`, ...(c.args ?? [])], bound);
      c.check?.(stdout, stderr);
    }, bound + 30_000);
  }

  for (const f of scripts('examples/deno', /\.ts$/)) {
    const c = DENO_CASES[f] ?? {};
    const bound = c.boundMs ?? 180_000;
    // as examples/deno/README.md says: deno run --allow-read (no other permission)
    it(`deno run --allow-read examples/deno/${f} ${(c.args ?? []).join(' ')}`, async () => {
      const { stdout, stderr } = await run(DENO, ['run', '--allow-read', `examples/deno/${f}`, ...(c.args ?? [])], bound);
      c.check?.(stdout, stderr);
    }, bound + 30_000);
  }
});
