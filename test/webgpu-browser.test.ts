/**
 * WebGPU end to end in a page of headless Chromium (Debian's chromium with
 * --enable-unsafe-webgpu; its adapter is SwiftShader on machines without a GPU): the page loads a
 * tiny Llama with deviceMap 'gpu' (fp32 and NF4) and generates 16 greedy tokens, and the same on
 * the CPU backend. Tokens must be identical to the CPU's (and, in fp32, to transformers'), logits
 * within the parity tolerance (1e-4: f32 on both, only the summation order differs). And decode
 * attention against 600 positions (test/runtimes/attention-split-check.js): the split path. And a
 * Q8_0 GGUF of the model on the GPU's native block-wise 8-bit kernel, against the CPU the same way.
 * And NF4 decode on integer activations beside the CPU's integer kernels.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runPage } from './helpers/chromium.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

type Run = { tokens: number[]; logits: number[]; device: string[] };

describe('WebGPU in Chromium', () => {
  it('a page generates on navigator.gpu with the same tokens as the CPU backend', async () => {
    if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('dist/ is missing: run `bash scripts/build.sh` first');
    const { result: out, logs } = await runPage<{ ok: boolean; error?: string; result?: Record<string, any> }>(ROOT, '/test/runtimes/browser-webgpu/', { args: ['--enable-unsafe-webgpu'], timeoutMs: 240_000 });
    expect(out.ok, `${out.error ?? ''}\n${logs.join('\n')}`).toBe(true);
    const r = out.result!;
    expect(r.adapter, 'Chromium exposed no WebGPU adapter').toBeTruthy();
    for (const q of ['fp32', 'nf4', 'q8_0']) {
      const gpu = r[`${q}-gpu`] as Run;
      const cpu = r[`${q}-cpu`] as Run;
      expect(gpu.device).toEqual(['webgpu']);
      expect(cpu.device).toEqual(['cpu']);
      expect(gpu.tokens, `${q}: GPU tokens on ${r.adapter}`).toEqual(cpu.tokens);
      let max = 0;
      for (let i = 0; i < cpu.logits.length; i++) max = Math.max(max, Math.abs(gpu.logits[i]! - cpu.logits[i]!));
      expect(gpu.logits.length).toBe(cpu.logits.length);
      expect(max, `${q}: max |GPU - CPU| logit`).toBeLessThanOrEqual(1e-4);
    }
    expect(r['fp32-gpu'].tokens).toEqual(r.reference);
    // the Q8_0 GGUF's linears stay 8-bit on the GPU (no conversion, 1.125 bytes per weight)
    expect(r['q8_0-gpu'].conversions).toEqual([]);
    expect(r['q8_0-gpu'].oProjBytes).toBe(64 * 64 * 1.125);
    expect(r.attention.dispatches, 'prefill on the ordinary kernel, decode split').toEqual([1, 2, 2]);
    expect(r.attention.worst, 'split attention |gpu - cpu| / (2e-6 + 1e-5 |cpu|)').toBeLessThanOrEqual(1);
    // the 4-bit decode GEMV on f16 activations (test/runtimes/f16-activation-check.js), where the
    // page's adapter has shader-f16
    if (r.f16Activations.skip !== undefined) console.warn(`[webgpu browser] f16 activations not checked: ${r.f16Activations.skip}`);
    else {
      expect(r.f16Activations.rows).toBe(45);
      expect(r.f16Activations.worstRatio, 'f16 activations |gpu - exact| / bound').toBeLessThanOrEqual(1);
      expect(r.f16Activations.differsFromExact, 'the f16 path ran').toBe(true);
    }
    // NF4 decode on integer activations (matmul4.wgsl INT_ACT) beside the CPU's integer kernels,
    // which quantize the same way (14 bits per block of 32, a 13-bit table, the same integer
    // sums): the same tokens, and one decode step's logits within 1e-5 (measured on SwiftShader:
    // 5e-7; only the float order, and an activation code one apart where WGSL's division rounds
    // differently, can separate them)
    const gi = r['nf4-int-gpu'] as Run;
    const ci = r['nf4-int-cpu'] as Run;
    expect(gi.device).toEqual(['webgpu']);
    expect(gi.tokens).toEqual(ci.tokens);
    expect(gi.logits.length).toBe(ci.logits.length);
    let maxInt = 0;
    for (let i = 0; i < ci.logits.length; i++) maxInt = Math.max(maxInt, Math.abs(gi.logits[i]! - ci.logits[i]!));
    expect(maxInt, 'nf4 integer activations: max |GPU - CPU| logit of a decode step').toBeLessThanOrEqual(1e-5);
  });
});
