/**
 * The WebGPU parity fixtures on Deno's navigator.gpu (wgpu, shaders compiled by naga) — a second
 * WebGPU implementation next to Dawn in test/webgpu.test.ts, with the same tolerances as
 * test/parity.test.ts. test/runtimes/deno-webgpu-check.ts runs the models and prints the
 * differences; this side checks them, and a long-context decode attention (the split path). Skips (with the reason) only when Deno finds no adapter and
 * setup did not promise one (LOWBIT_WEBGPU_EXPECT, see test/helpers/webgpu.ts).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectAdapter, ROOT, webgpuEnv } from './helpers/webgpu.js';

const DENO = join(ROOT, 'node_modules/.bin/deno');
const DIST = join(ROOT, 'dist/index.js');

interface IntRow { variant: string; packedDot: boolean; worstRatio: number; sameWithoutDot4: boolean; rows: number }
interface Row { model: string; variant: string; length: number; refLength: number; max: number; mean: number; dqEffect?: number; tokens?: number[]; refTokens?: number[] }

function run(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((ok, fail) => {
    execFile(DENO, args, { cwd: ROOT, env, timeout: 600_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`deno ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else ok(stdout);
    });
  });
}

describe('WebGPU on Deno (wgpu)', () => {
  it('parity with transformers: fp32 / nf4 / fp4 (± double quant) / int8 logits and 32 greedy tokens; a Q8_0 GGUF on the native block-wise 8-bit kernel; the 4-bit GEMV on integer and f16 activations', async (ctx) => {
    if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`bash scripts/build.sh\` first`);
    if (!existsSync(DENO)) throw new Error(`deno is not installed (${DENO}): run \`bash scripts/setup.sh\``);
    const tmp = await mkdtemp(join(tmpdir(), 'lowbit-deno-webgpu-'));
    let out: { runtime: string; adapter?: string; skip?: string; results?: Row[]; attention?: { worst: number; dispatches: number[] }; q8_0?: { max: number; length: number; refLength: number; conversions: string[]; oProjBytes: number }; intActivations?: IntRow[]; f16Activations?: { skip?: string; worstRatio?: number; differsFromExact?: boolean; rows?: number } };
    try {
      const env = { ...webgpuEnv(), NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', DENO_NO_PROMPT: '1', DENO_DIR: join(tmp, 'deno-dir') };
      const stdout = await run(['run', '--allow-read', '--allow-env', 'test/runtimes/deno-webgpu-check.ts'], env);
      out = JSON.parse(stdout.trim().split('\n').at(-1)!);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    expect(out.runtime).toMatch(/^deno \d+\./);
    if (out.skip !== undefined) {
      if (expectAdapter) throw new Error(`LOWBIT_WEBGPU_EXPECT=1 (setup prepared WebGPU) but Deno has no adapter: ${out.skip}`);
      console.warn(`[webgpu deno test skipped] ${out.skip}`);
      ctx.skip();
      return;
    }
    expect(out.adapter).toMatch(/^webgpu \(/);
    // decode attention against 600 positions (test/runtimes/attention-split-check.js): the prefill
    // on the ordinary kernel, the decode steps split (two dispatches), within the attention tolerance
    expect(out.attention!.dispatches).toEqual([1, 2, 2]);
    expect(out.attention!.worst, 'split attention |gpu - cpu| / (2e-6 + 1e-5 |cpu|)').toBeLessThanOrEqual(1);
    expect(out.results).toHaveLength(24);
    for (const r of out.results!) {
      const what = `${r.model} ${r.variant} on ${out.adapter}`;
      expect(r.length, what).toBe(r.refLength);
      if (r.variant.endsWith('-dq')) {
        expect(r.max, what).toBeLessThanOrEqual(1e-2);
        expect(r.max, what).toBeLessThanOrEqual(r.dqEffect! / 2);
      } else if (r.variant === 'int8') {
        expect(r.max, what).toBeLessThanOrEqual(0.1);
        expect(r.mean, what).toBeLessThanOrEqual(1e-2);
      } else {
        expect(r.max, what).toBeLessThanOrEqual(1e-4);
      }
      if (r.variant === 'fp32') expect(r.tokens, what).toEqual(r.refTokens);
    }
    // llama-q8_0.gguf on the GPU: 8-bit linears (1.125 bytes per weight), no conversion, within
    // 1e-4 of transformers' load of the file (as test/gguf-model.test.ts on the CPU)
    const q8 = out.q8_0!;
    expect(q8.length).toBe(q8.refLength);
    expect(q8.conversions).toEqual([]);
    expect(q8.oProjBytes).toBe(64 * 64 * 1.125);
    expect(q8.max, `llama Q8_0 GGUF on ${out.adapter}`).toBeLessThanOrEqual(1e-4);
    // the 4-bit decode GEMV on integer activations under naga: within the derived bound of the
    // exact product, the same bits with and without dot4I8Packed
    expect(out.intActivations?.map((r) => r.variant)).toEqual(['nf4', 'nf4-dq']);
    for (const r of out.intActivations!) {
      expect(r.rows, r.variant).toBe(45);
      expect(r.worstRatio, r.variant).toBeLessThanOrEqual(1);
      expect(r.sameWithoutDot4, r.variant).toBe(true);
    }
    // the 4-bit decode GEMV on f16 activations under naga (where wgpu gives shader-f16): within the
    // f16 bound of webgpu-activation-precision.test.ts, and really computed in f16
    const h = out.f16Activations!;
    if (h.skip !== undefined) console.warn(`[webgpu deno] f16 activations not checked: ${h.skip}`);
    else {
      expect(h.rows).toBe(45);
      expect(h.worstRatio, 'f16 activations |gpu - exact| / bound').toBeLessThanOrEqual(1);
      expect(h.differsFromExact, 'the f16 path ran').toBe(true);
    }
  });
});
