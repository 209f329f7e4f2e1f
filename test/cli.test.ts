// The `lowbit` command (ts/cli.ts, built to dist/cli.js) as a script uses it: through pipes,
// checking stdout, stderr and the documented exit codes (0 done, 1 failed, 2 bad command line,
// 130 interrupted). `inspect` is checked against the footprint of the models it describes,
// `generate` against the default model's greedy answer (needs .cache/models from setup.sh).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, BitsAndBytesConfig } from '../dist/index.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const CLI = join(ROOT, 'dist/cli.js');
const LLAMA = join(ROOT, 'test/fixtures/reference-logits/llama');
const SMOLLM = join(ROOT, '.cache/models/smollm2-135m-instruct');
const FAST = ['--threads', '1', '--max-positions', '256'];

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with piped stdin / stdout / stderr; `onStdout` sees output as it comes. */
function cli(args: string[], o: { stdin?: string; onStdout?: (text: string, kill: (s: NodeJS.Signals) => void) => void; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((ok, fail) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      fail(new Error(`lowbit ${args.join(' ')} did not finish within ${o.timeoutMs ?? 90_000} ms`));
    }, o.timeoutMs ?? 90_000);
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      o.onStdout?.(stdout, (s) => p.kill(s));
    });
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', fail);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      ok({ code, signal, stdout, stderr });
    });
    p.stdin.end(o.stdin ?? '');
  });
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `bash scripts/build.sh` first');
});

describe('lowbit (command line)', () => {
  it('--help and --version exit 0; no command, unknown commands and options exit 2', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/lowbit generate --model/);
    expect(help.stdout).toMatch(/lowbit inspect/);
    expect(help.stdout).toMatch(/exit codes: 0 done, 1 failed/);
    const sub = await cli(['inspect', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/--max-positions/);
    const version = await cli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);

    const none = await cli([]);
    expect(none.code).toBe(2);
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    const option = await cli(['inspect', LLAMA, '--frobnicate']);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/frobnicate/);
    const quant = await cli(['generate', '-m', LLAMA, '--quant', 'q3', '-p', 'hi']);
    expect(quant.code).toBe(2);
    expect(quant.stderr).toMatch(/--quant must be one of none, int8, fp4, nf4, nf4-dq/);
    const noPrompt = await cli(['generate', '-m', LLAMA]);
    expect(noPrompt.code).toBe(2);
    expect(noPrompt.stderr).toMatch(/needs a prompt/);
    const json = await cli(['generate', '--json', '-p', 'hi']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stderr)).toEqual({ type: 'error', code: 'USAGE', message: 'generate needs --model' });
  });

  it('a missing model exits 1 with the LowbitError code (text and --json)', async () => {
    const missing = join(ROOT, 'test/fixtures/no-such-model');
    const text = await cli(['inspect', missing]);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^lowbit: NOT_FOUND: /);
    expect(text.stdout).toBe('');
    const json = await cli(['generate', '-m', missing, '-p', 'hi', '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stderr)).toMatchObject({ type: 'error', code: 'NOT_FOUND' });
    expect(json.stdout).toBe('');
  });

  it("inspect: tensors, dtypes, and a memory table that matches the loaded models' footprints", async () => {
    const r = await cli(['inspect', LLAMA, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as {
      model: { family: string; layers: number; format: string };
      dtypes: Record<string, { tensors: number; params: number; bytes: number }>;
      memory: { maxPositions: number; rows: { quant: string; weightsBytes: number; kvCacheBytes: number; totalBytes: number }[] };
      tensors: { name: string; dtype: string; shape: number[]; bytes: number }[];
    };
    expect(info.model).toMatchObject({ family: 'llama', layers: 2, format: 'safetensors' });
    expect(info.tensors.find((t) => t.name === 'model.layers.0.self_attn.q_proj.weight')).toMatchObject({ dtype: 'F32', shape: [64, 64], bytes: 64 * 64 * 4 });
    expect(Object.values(info.dtypes).reduce((a, d) => a + d.tensors, 0)).toBe(info.tensors.length);
    expect(info.memory.rows.map((x) => x.quant)).toEqual(['none', 'int8', 'fp4', 'nf4', 'nf4-dq']);
    // The plan is what loading really takes (nf4-dq: an upper bound, the CPU keeps 1-byte absmax).
    await init();
    const configs: Record<string, BitsAndBytesConfig | undefined> = {
      none: undefined,
      int8: new BitsAndBytesConfig({ loadIn8bit: true }),
      nf4: new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }),
      'nf4-dq': new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }),
    };
    for (const [quant, q] of Object.entries(configs)) {
      const model = await AutoModelForCausalLM.fromPretrained(LLAMA, { ...(q ? { quantizationConfig: q } : {}), threads: 1, maxPositions: info.memory.maxPositions });
      const real = model.getMemoryFootprint().total;
      model.dispose();
      const row = info.memory.rows.find((x) => x.quant === quant)!;
      expect(row.kvCacheBytes).toBe(2 * 2 * info.memory.maxPositions * 2 * 16 * 4); // 2 layers, K and V, 2 KV heads of 16
      if (quant === 'nf4-dq') {
        expect(row.totalBytes).toBeGreaterThanOrEqual(real);
        expect(row.totalBytes).toBeLessThan(real * 1.05);
      } else expect(row.totalBytes, quant).toBe(real);
    }

    // The device plan for a budget: deviceMap 'auto' fills the GPU in forward order.
    const planned = await cli(['inspect', LLAMA, '--json', '--quant', 'nf4', '--max-gpu-memory', '100KB']);
    expect(planned.code, planned.stderr).toBe(0);
    const { plan } = JSON.parse(planned.stdout) as { plan: { quant: string; budgets: { gpu: number }; bytes: { gpu: number; cpu: number }; modules: Record<string, string> } };
    const nf4 = info.memory.rows.find((x) => x.quant === 'nf4')!;
    expect(plan.quant).toBe('nf4');
    expect(plan.budgets.gpu).toBe(100_000);
    // the 256 x 64 f32 embedding (65536 bytes) fits; layer 0 (quantized weights + KV cache) does not
    expect(plan.modules).toEqual({ 'model.embed_tokens': 'gpu', 'model.layers.0': 'cpu', 'model.layers.1': 'cpu', 'model.norm': 'cpu', lm_head: 'cpu' });
    expect(plan.bytes.gpu).toBe(65536);
    expect(plan.bytes.gpu + plan.bytes.cpu).toBe(nf4.totalBytes);
    const tooSmall = await cli(['inspect', LLAMA, '--max-gpu-memory', '100KB', '--max-cpu-memory', '100KB']);
    expect(tooSmall.code).toBe(1);
    expect(tooSmall.stderr).toMatch(/^lowbit: OUT_OF_MEMORY: deviceMap 'auto'/);
    const badSize = await cli(['inspect', LLAMA, '--max-gpu-memory', 'lots']);
    expect(badSize.code).toBe(2);

    const table = await cli(['inspect', LLAMA, '--tensors', '--max-positions', '64', '--max-gpu-memory', '100KB']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^llama, 2 layers, hidden 64/m);
    expect(table.stdout).toMatch(/KV cache for 64 positions/);
    expect(table.stdout).toMatch(/^nf4-dq\s+[\d.]+ MiB\s+[\d.]+ MiB\s+[\d.]+ MiB$/m);
    expect(table.stdout).toMatch(/^model\.layers\.1\.mlp\.down_proj\.weight\s+F32\s+64 x 128\s+32768$/m);
    expect(table.stdout).toMatch(/^gpu\s+0\.1 MiB\s+model\.embed_tokens$/m);
    expect(table.stdout).toMatch(/^cpu\s+[\d.]+ MiB\s+model\.layers\.0-1, model\.norm, lm_head$/m);
  });

  describe.skipIf(!existsSync(SMOLLM))('generate on the default model', () => {
    it('streams the greedy answer to stdout, statistics to stderr', async () => {
      const r = await cli(['generate', '-m', SMOLLM, '--max-new-tokens', '8', ...FAST, 'What is the capital of France?']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^The capital of France is Paris/);
      expect(r.stderr).toMatch(/loaded .* \(nf4-dq\) in [\d.]+ s on cpu, 1 thread/);
      expect(r.stderr).toMatch(/8 new tokens, [\d.]+ tokens\/s/);
      expect(r.stderr).not.toMatch(/\r/); // no progress line into a pipe
    });

    it.skipIf(!existsSync('/usr/bin/script'))('in a terminal (a pseudo-terminal from util-linux script): load progress, then the answer', async () => {
      const command = [process.execPath, CLI, 'generate', '-m', SMOLLM, '--max-new-tokens', '6', ...FAST, 'What is the capital of France?'].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
      const r = await new Promise<{ code: number | null; out: string }>((ok, fail) => {
        const p = spawn('/usr/bin/script', ['-qec', command, '/dev/null'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
        p.on('error', fail);
        p.on('close', (code) => ok({ code, out }));
        p.stdin.end();
      });
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/\rweights \d+\/\d+ MB, \d+\/272 tensors/);
      expect(r.out).toMatch(/loaded .* \(nf4-dq\) in [\d.]+ s on cpu, 1 thread/);
      expect(r.out).toMatch(/The capital of France is Paris/);
    });

    it('--json: one object per streamed piece, then a summary; the prompt can come from stdin', async () => {
      const r = await cli(['generate', '-m', SMOLLM, '--max-new-tokens', '8', '--json', ...FAST], { stdin: 'What is the capital of France?\n' });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; text: string; tokens?: number[]; newTokens?: number; promptTokens?: number; devices?: string[] });
      const done = lines.pop()!;
      expect(done.type).toBe('done');
      expect(lines.length).toBeGreaterThan(1);
      expect(lines.every((l) => l.type === 'text')).toBe(true);
      expect(lines.map((l) => l.text).join('')).toBe(done.text);
      expect(done.text).toMatch(/^The capital of France is Paris/);
      expect(done.newTokens).toBe(8);
      expect(done.tokens).toHaveLength(8);
      expect(done.promptTokens).toBeGreaterThan(8);
      expect(done.devices).toEqual(['cpu']);
    });

    it('Ctrl-C (SIGINT) stops generation with exit code 130', async () => {
      let sent = false;
      const r = await cli(['generate', '-m', SMOLLM, '--max-new-tokens', '2000', '--json', ...FAST, '--raw', '--stop', 'never appears', 'Once upon a time'], {
        onStdout: (text, kill) => {
          if (!sent && text.includes('"type":"text"')) {
            sent = true;
            kill('SIGINT');
          }
        },
      });
      expect(sent).toBe(true);
      expect(r.code, r.stderr).toBe(130);
      expect(JSON.parse(r.stderr.trim())).toEqual({ type: 'error', code: 'INTERRUPTED', message: 'interrupted' });
      expect(r.stdout).not.toMatch(/"type":"done"/);
    });
  });
});
