/**
 * WebGPU end to end in a page of headless Chromium (Debian's chromium with
 * --enable-unsafe-webgpu; its adapter is SwiftShader on machines without a GPU): the page loads a
 * tiny Llama with deviceMap 'gpu' (fp32 and NF4) and generates 16 greedy tokens, and the same on
 * the CPU backend. Tokens must be identical to the CPU's (and, in fp32, to transformers'), logits
 * within the parity tolerance (1e-4: f32 on both, only the summation order differs).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { serveStatic } from './runtimes/static-server.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const CHROMIUM = process.env.LOWBIT_CHROMIUM ?? '/usr/bin/chromium';

type Run = { tokens: number[]; logits: number[]; device: string[] };

describe('WebGPU in Chromium', () => {
  it('a page generates on navigator.gpu with the same tokens as the CPU backend', async () => {
    if (!existsSync(join(ROOT, 'dist/index.js'))) throw new Error('dist/ is missing: run `bash scripts/build.sh` first');
    if (!existsSync(CHROMIUM)) throw new Error(`chromium is not installed (${CHROMIUM} is missing): run \`bash scripts/setup.sh --with-browser\` or set LOWBIT_CHROMIUM`);
    const { chromium } = await import('playwright-core');
    const tmp = await mkdtemp(join(tmpdir(), 'lowbit-webgpu-browser-'));
    const server = await serveStatic(ROOT);
    const home = join(tmp, 'home');
    const context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache') },
      args: ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
      timeout: 60_000,
    });
    const logs: string[] = [];
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
      await page.goto(`${server.origin}/test/runtimes/browser-webgpu/`, { waitUntil: 'load' });
      await page.waitForFunction(() => (window as any).__lowbitResult !== undefined, undefined, { timeout: 240_000, polling: 500 }).catch((e) => {
        throw new Error(`the page set no result: ${e.message}\n${logs.join('\n')}`);
      });
      const out = (await page.evaluate(() => (window as any).__lowbitResult)) as { ok: boolean; error?: string; result?: Record<string, any> };
      expect(out.ok, `${out.error ?? ''}\n${logs.join('\n')}`).toBe(true);
      const r = out.result!;
      expect(r.adapter, 'Chromium exposed no WebGPU adapter').toBeTruthy();
      for (const q of ['fp32', 'nf4']) {
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
    } finally {
      await context.close();
      await server.close();
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
