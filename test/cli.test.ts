// The `lowbit` command (ts/cli.ts, built to dist/cli.js) as a script uses it: through pipes,
// checking stdout, stderr and the documented exit codes (0 done, 1 failed, 2 bad command line,
// 130 interrupted). `inspect` is checked against the footprint of the models it describes,
// `generate` against the default model's greedy answer (needs .cache/models from setup.sh).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    for (const c of ['chat', 'quantize', 'bench']) expect(help.stdout).toMatch(new RegExp(`lowbit ${c} `));
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
      // cli-progress bars on stderr (the terminal): one per load phase, complete at the end
      expect(r.out).toMatch(/weights\s+[█░]+\s+100% \| [\d.]+\/[\d.]+ MB, 272\/272 tensors/);
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

/**
 * Runs the CLI in a real pseudo-terminal (util-linux `script`): stdin, stdout and stderr are the
 * terminal, so readline is interactive and the progress bars show. `steps` type into it, each
 * once the output so far matches its `after` pattern (the text after the previous step's match).
 */
function inTerminal(args: string[], steps: { after: RegExp; type: string }[], timeoutMs = 180_000, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; out: string; done: number }> {
  const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  return new Promise((ok, fail) => {
    const p = spawn('/usr/bin/script', ['-qfec', command, '/dev/null'], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      fail(new Error(`lowbit ${args.join(' ')} in a terminal: no end within ${timeoutMs} ms; ${steps.length - done} step(s) left; output:\n${out}`));
    }, timeoutMs);
    let out = '';
    let from = 0;
    let done = 0;
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      // Strip the terminal's control sequences before matching.
      const text = out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
      const step = steps[done];
      if (step === undefined) return;
      const m = step.after.exec(text.slice(from));
      if (m === null) return;
      from += m.index + m[0].length;
      done++;
      p.stdin.write(step.type);
    });
    p.on('error', fail);
    p.on('close', (code) => {
      clearTimeout(timer);
      ok({ code, out: out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''), done });
    });
  });
}

describe.skipIf(!existsSync(SMOLLM))('lowbit chat', () => {
  const CHAT = ['chat', '-m', SMOLLM, ...FAST];

  it('bad command lines exit 2', async () => {
    const noModel = await cli(['chat']);
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toMatch(/chat needs --model/);
    const positional = await cli([...CHAT, 'hello']);
    expect(positional.code).toBe(2);
    expect(positional.stderr).toMatch(/no positional arguments/);
  });

  it('from a pipe: one turn per line, the KV cache kept between turns (--json counts), /reset empties it', async () => {
    const r = await cli([...CHAT, '--max-new-tokens', '8', '--json'], { stdin: 'What is the capital of France?\nAnd of Italy?\n/reset\nAnd of Italy?\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; text?: string; promptTokens?: number; reusedTokens?: number; prefilledTokens?: number; newTokens?: number; finishReason?: string });
    const turns = lines.filter((l) => l.type === 'turn');
    expect(turns).toHaveLength(3);
    expect(lines.filter((l) => l.type === 'reset')).toHaveLength(1);
    expect(turns[0]!.text).toMatch(/Paris/);
    expect(turns[1]!.text).toMatch(/Rome/);
    expect(turns[0]).toMatchObject({ reusedTokens: 0, newTokens: 8, finishReason: 'length' });
    // turn 2 re-uses turn 1's prompt and all of its answer but the last token (never run)
    expect(turns[1]!.reusedTokens).toBe(turns[0]!.promptTokens! + 8 - 1);
    expect(turns[1]!.prefilledTokens).toBe(turns[1]!.promptTokens! - turns[1]!.reusedTokens!);
    // after /reset the same question is a first turn again: nothing re-used, shorter prompt
    expect(turns[2]!.reusedTokens).toBe(0);
    expect(turns[2]!.promptTokens).toBeLessThan(turns[1]!.promptTokens!);
    // the streamed pieces of each turn make up its text
    let at = 0;
    for (const t of turns) {
      const end = lines.indexOf(t, at);
      expect(lines.slice(at, end).filter((l) => l.type === 'text').map((l) => l.text).join('')).toBe(t.text);
      at = end + 1;
    }

    const text = await cli([...CHAT, '--max-new-tokens', '8'], { stdin: 'What is the capital of France?\n' });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^The capital of France is Paris/);
    expect(text.stderr).toMatch(/1 turn\(s\): 8 new tokens; prefilled \d+ of \d+ prompt tokens \(0 from the KV cache\)/);
    expect(text.stderr).not.toMatch(/\r|\x1b/); // no progress bars into a pipe
  });

  it('SIGINT stops the answer being written; the chat goes on with the next line', async () => {
    let sent = false;
    const r = await cli([...CHAT, '--max-new-tokens', '400', '--json'], {
      stdin: 'Write a very long story about a dragon.\nWhat is the capital of France?\n',
      onStdout: (text, kill) => {
        if (!sent && text.includes('"type":"text"')) {
          sent = true;
          kill('SIGINT');
        }
      },
    });
    expect(sent).toBe(true);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; text?: string });
    expect(lines.map((l) => l.type)).toContain('interrupted');
    const turns = lines.filter((l) => l.type === 'turn');
    expect(turns).toHaveLength(1);
    expect(turns[0]!.text).toMatch(/Paris/);
  });

  it.skipIf(!existsSync('/usr/bin/script'))('in a terminal: progress bars, a prompt, streamed answers, Ctrl-C stops an answer, /reset, Ctrl-D leaves with 0', async () => {
    const r = await inTerminal(
      [...CHAT, '--max-new-tokens', '200'],
      [
        { after: /> $/, type: 'What is the capital of France?\r' },
        { after: /prompt tokens[^\]]*\]\s*\n> $/, type: 'Write a very long story about a dragon.\r' },
        // Ctrl-C (readline in raw mode reads it as a key) once the answer is under way
        { after: /dragon\.\s*\n\S+ \S+ \S+/, type: '\x03' },
        { after: /answer stopped[^\n]*\n> $/, type: 'And of Italy?\r' },
        { after: /prompt tokens[^\]]*\]\s*\n> $/, type: '/reset\r' },
        { after: /conversation reset\)\s*\n> $/, type: '\x04' },
      ],
    );
    expect(r.done, r.out).toBe(6);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/weights\s+[█░]+\s+100% \| [\d.]+\/[\d.]+ MB, 272\/272 tensors/);
    expect(r.out).toMatch(/The capital of France is Paris/);
    expect(r.out).toMatch(/answer stopped; it is not kept in the conversation/);
    // the Italy turn re-used the cached France exchange
    const turns = [...r.out.matchAll(/\[(\d+) tokens, [\d.]+ tokens\/s; prefilled (\d+) of (\d+) prompt tokens/g)].map((m) => m.slice(1).map(Number));
    expect(turns).toHaveLength(2);
    expect(turns[1]![1]).toBeLessThan(turns[1]![2]! / 2);
    expect(r.out).toMatch(/2 turn\(s\)/);
  });

  it.skipIf(!existsSync('/usr/bin/script'))('in a terminal: Ctrl-C at the prompt leaves with 130', async () => {
    const r = await inTerminal([...CHAT], [{ after: /> $/, type: '\x03' }]);
    expect(r.code, r.out).toBe(130);
  });
});

describe('lowbit quantize', () => {
  const BNB = join(ROOT, 'test/fixtures/bnb-checkpoints');
  let dir: string;
  beforeAll(async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    dir = await mkdtemp(join(tmpdir(), 'lowbit-cli-quantize-'));
  });
  afterAll(async () => {
    const { rm } = await import('node:fs/promises');
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** Tensor name -> its bytes, from a safetensors file. */
  async function tensors(file: string): Promise<Map<string, Buffer>> {
    const { readFile } = await import('node:fs/promises');
    const b = await readFile(file);
    const n = Number(b.readBigUInt64LE(0));
    const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    return new Map(Object.entries(header).filter(([k]) => k !== '__metadata__').map(([k, t]) => [k, b.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1])]));
  }

  it('fp16 -> nf4 / int8: the checkpoint transformers + bitsandbytes saved for the same weights, byte for byte', async () => {
    const { readFile } = await import('node:fs/promises');
    for (const [quant, ref] of [['nf4', 'llama-nf4'], ['nf4-dq', 'llama-nf4-dq'], ['fp4', 'llama-fp4'], ['int8', 'llama-int8']] as const) {
      const out = join(dir, ref);
      const r = await cli(['quantize', join(BNB, 'base-llama'), out, '--quant', quant, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      const summary = JSON.parse(r.stdout) as { type: string; quantized: number; tensors: number; bytes: number };
      expect(summary).toMatchObject({ type: 'done', quantized: 14, tensors: 21 });
      const ours = await readFile(join(out, 'model.safetensors'));
      expect(summary.bytes).toBe(ours.length);
      if (quant === 'nf4-dq') {
        // transformers' nf4-dq fixture computes in bfloat16 (only config.json differs): compare tensors
        const want = await tensors(join(BNB, ref, 'model.safetensors'));
        const got = await tensors(join(out, 'model.safetensors'));
        expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [k, v] of want) expect(Buffer.compare(got.get(k)!, v), k).toBe(0);
      } else expect(Buffer.compare(ours, await readFile(join(BNB, ref, 'model.safetensors'))), quant).toBe(0);
      const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: { quant_method: string } };
      expect(config.quantization_config.quant_method).toBe('bitsandbytes');
    }
  });

  it('--dequantize: a bitsandbytes checkpoint back to floats, equal to bitsandbytes dequantizing it', async () => {
    const { readFile } = await import('node:fs/promises');
    // reference.safetensors holds float16 for the 4-bit fixtures, float32 for LLM.int8 (CB * SCB / 127)
    for (const [ref, dtype] of [['llama-nf4', 'float16'], ['llama-nf4-dq', 'float16'], ['llama-fp4', 'float16'], ['llama-int8', 'float32']]) {
      const out = join(dir, `${ref}-${dtype}`);
      const r = await cli(['quantize', join(BNB, ref!), out, '--dequantize', ...(dtype === 'float16' ? [] : ['--dtype', dtype!])]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`dequantized to ${dtype}`));
      const got = await tensors(join(out, 'model.safetensors'));
      // reference.safetensors: bitsandbytes' dequantize_4bit of every quantized weight (fp16)
      const want = await tensors(join(BNB, ref!, 'reference.safetensors'));
      expect(want.size).toBe(14);
      for (const [k, v] of want) expect(Buffer.compare(got.get(k)!, v), `${ref} ${k}`).toBe(0);
      const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(config.quantization_config).toBeUndefined();
      expect(config.dtype).toBe(dtype);
    }
    // GPT-2: bitsandbytes holds Conv1D weights [out, in]; the plain checkpoint has them [in, out] again
    const gpt2 = join(dir, 'gpt2-float16');
    expect((await cli(['quantize', join(BNB, 'gpt2-nf4-dq'), gpt2, '--dequantize'])).code).toBe(0);
    const shapes = async (file: string) => {
      const b = await readFile(file);
      return JSON.parse(b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape: number[] }>;
    };
    const [gotShapes, wantShapes] = [await shapes(join(gpt2, 'model.safetensors')), await shapes(join(BNB, 'gpt2-nf4-dq', 'reference.safetensors'))];
    const [got, want] = [await tensors(join(gpt2, 'model.safetensors')), await tensors(join(BNB, 'gpt2-nf4-dq', 'reference.safetensors'))];
    expect(want.size).toBe(8);
    for (const [k, v] of want) {
      const [o, i] = wantShapes[k]!.shape as [number, number];
      expect(gotShapes[k]!.shape, k).toEqual([i, o]);
      const ours = new Uint16Array(got.get(k)!.buffer.slice(got.get(k)!.byteOffset, got.get(k)!.byteOffset + got.get(k)!.length));
      const theirs = new Uint16Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.length));
      const transposed = new Uint16Array(theirs.length);
      for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) transposed[c * o + r] = theirs[r * i + c]!;
      expect(Buffer.compare(Buffer.from(ours.buffer), Buffer.from(transposed.buffer)), k).toBe(0);
    }
    // the result loads in lowbit as a plain float16 model
    const model = await AutoModelForCausalLM.fromPretrained(join(dir, 'llama-nf4-float16'), { threads: 1, maxPositions: 16 });
    expect(Object.keys(model.getMemoryFootprint().byModule).length).toBeGreaterThan(0);
    model.dispose();
  });

  it.skipIf(!existsSync('/usr/bin/script'))('in a terminal: a bar per stage (quantize, write), then the summary', async () => {
    const r = await inTerminal(['quantize', join(BNB, 'base-llama'), join(dir, 'in-terminal'), '--quant', 'int8'], []);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/quantize\s+[█░]+\s+100% \| [\d.]+\/[\d.]+ MB, 21\/21 tensors/);
    expect(r.out).toMatch(/write\s+[█░]+\s+100% \| 1\/1/);
    expect(r.out).toMatch(/wrote .*model\.safetensors \([\d.]+ MiB\) and config\.json in [\d.]+ s: 14 of 21 tensors quantized \(int8\)/);
  });

  it.skipIf(!existsSync('/usr/bin/script'))('from a hub id (the hub-shaped test server): download, quantize and write bars in a terminal; the same checkpoint', async () => {
    const { readFile } = await import('node:fs/promises');
    const { startHubServer } = await import('./helpers/hub-server.js');
    const hub = await startHubServer({ repos: { 'test-org/base-llama': { main: join(BNB, 'base-llama') } } });
    try {
      const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(dir, 'hub-cache'), HF_TOKEN: '', HF_HUB_OFFLINE: '' };
      const r = await inTerminal(['quantize', 'test-org/base-llama', join(dir, 'from-hub'), '--quant', 'nf4'], [], 60_000, env);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/download\s+[█░]+\s+100% \| [\d.]+\/[\d.]+ MB, file \d+\/\d+: \S+/);
      expect(r.out).toMatch(/quantize\s+[█░]+\s+100% \| [\d.]+\/[\d.]+ MB, 21\/21 tensors/);
      expect(Buffer.compare(await readFile(join(dir, 'from-hub', 'model.safetensors')), await readFile(join(BNB, 'llama-nf4', 'model.safetensors')))).toBe(0);
    } finally {
      await hub.close();
    }
  });

  it('refusals: a GGUF source, an already quantized source, an existing OUT (exit 1); bad arguments (exit 2)', async () => {
    const gguf = await cli(['quantize', join(ROOT, 'test/fixtures/gguf-model/llama-f32.gguf'), join(dir, 'from-gguf')]);
    expect(gguf.code).toBe(1);
    expect(gguf.stderr).toMatch(/GGUF .*no GGUF -> transformers conversion/);
    const twice = await cli(['quantize', join(BNB, 'llama-nf4'), join(dir, 'twice')]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/already quantized .*--dequantize/);
    const plain = await cli(['quantize', join(BNB, 'base-llama'), join(dir, 'plain'), '--dequantize', '--json']);
    expect(plain.code).toBe(1);
    expect(JSON.parse(plain.stderr)).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const exists = await cli(['quantize', join(BNB, 'base-llama'), join(dir, 'llama-nf4'), '--quant', 'nf4']);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toMatch(/exists: choose another OUT folder or pass --force/);
    expect((await cli(['quantize', join(BNB, 'base-llama'), join(dir, 'llama-nf4'), '--quant', 'nf4', '--force'])).code).toBe(0);
    expect((await cli(['quantize', join(BNB, 'base-llama')])).code).toBe(2);
    expect((await cli(['quantize', join(BNB, 'base-llama'), join(dir, 'x'), '--quant', 'q2'])).code).toBe(2);
    expect((await cli(['quantize', join(BNB, 'llama-nf4'), join(dir, 'x'), '--dequantize', '--dtype', 'int3'])).code).toBe(2);
  });
});

describe('lowbit bench', () => {
  it('prefill and decode tokens/s of a model (--json), text on stdout otherwise', async () => {
    const r = await cli(['bench', '-m', LLAMA, '--threads', '1', '--prompt-tokens', '16', '--new-tokens', '8', '--runs', '2', '--quant', 'nf4', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(b).toMatchObject({ type: 'bench', quant: 'nf4', devices: ['cpu'], threads: 1, promptTokens: 16, newTokens: 8, runs: 2 });
    expect(b.prefillTokensPerSecond).toBeGreaterThan(0);
    expect(b.decodeTokensPerSecond).toBeGreaterThan(0);
    const text = await cli(['bench', '-m', LLAMA, '--threads', '1', '--prompt-tokens', '8', '--new-tokens', '4', '--runs', '1']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^prefill [\d.]+ tokens\/s \(8-token prompt\)\ndecode {2}[\d.]+ tokens\/s \(4 tokens\)\n$/);
    expect((await cli(['bench', '-m', LLAMA, '--runs', '0'])).code).toBe(2);
  });
});
