/**
 * The demo page (examples/browser, vite) in headless Chromium: built with its vite config, served
 * with the default model (SmolLM2-135M-Instruct Q4_1 GGUF under /models/, Range requests; no
 * network). With ?autorun=1 the page plans the memory chart, loads the model as NF4 + double
 * quant in its worker, and answers the prompt; the test then checks the page's DOM (every stage
 * done, the chart's four bars in the planner's order, the device table, the streamed answer and
 * its tokens/s) and a screenshot: not blank, and the chart's bar colour present where the chart
 * is drawn (decoded by the browser itself, no pixel-perfect golden).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPage } from './helpers/chromium.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const VITE = join(ROOT, 'node_modules/vite/bin/vite.js');
const MODELS = join(ROOT, '.cache/models');
const MODEL = 'smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf';
const TINY_LLAMA = join(ROOT, 'test/fixtures/reference-logits/llama');

let tmp: string;

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist/worker.js'))) throw new Error('dist/ is missing: run `bash scripts/build.sh` first');
  if (!existsSync(join(MODELS, MODEL))) throw new Error('the default model is missing: run scripts/models/fetch-default-model.sh');
  tmp = await mkdtemp(join(tmpdir(), 'lowbit-demo-'));
  await new Promise<void>((ok, fail) =>
    execFile('node', [VITE, 'build', 'examples/browser', '--config', 'examples/browser/vite.config.js', '--outDir', join(tmp, 'dist'), '--emptyOutDir', '--logLevel', 'warn'], { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) =>
      err ? fail(new Error(`vite build examples/browser: ${err.message}\n${stdout}\n${stderr}`)) : ok(),
    ),
  );
  await symlink(MODELS, join(tmp, 'dist/models'), 'dir');
}, 120_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

interface PageState {
  stages: { id: string; state: string; detail: string }[];
  bars: { quant: string; bytes: number; height: number }[];
  loadedText: string;
  modules: { name: string; device: string; mib: number }[];
  messages: { role: string; text: string }[];
  speed: string;
  error: string | null;
  chartBox: { x: number; y: number; width: number; height: number };
}

/** DOM state of the finished page, then a screenshot decoded in the page: colours counted overall and inside the chart. */
async function inspect(page: Page) {
  const state = await page.evaluate((): PageState => {
    const q = (s: string) => [...document.querySelectorAll(s)];
    const box = document.getElementById('chart')!.getBoundingClientRect();
    return {
      stages: q('#stages li').map((li) => ({ id: li.id, state: (li as HTMLElement).dataset.state!, detail: li.querySelector('.detail')!.textContent! })),
      bars: q('#chart g[data-quant]').map((g) => ({ quant: g.getAttribute('data-quant')!, bytes: Number(g.getAttribute('data-bytes')), height: (g.querySelector('.bar-weights') as SVGRectElement).getBBox().height + (g.querySelector('.bar-kv') as SVGRectElement).getBBox().height })),
      loadedText: document.getElementById('loaded-bytes')?.textContent ?? '',
      modules: q('#modules tbody tr').map((tr) => ({ name: tr.children[0]!.textContent!, device: tr.children[1]!.textContent!, mib: Number(tr.children[2]!.textContent) })),
      messages: q('#messages .msg').map((m) => ({ role: m.classList.contains('user') ? 'user' : 'assistant', text: m.textContent! })),
      speed: document.getElementById('speed')!.textContent!,
      error: document.getElementById('error')!.hidden ? null : document.getElementById('error')!.textContent,
      chartBox: { x: box.x + scrollX, y: box.y + scrollY, width: box.width, height: box.height },
    };
  });
  const shot = await page.screenshot({ fullPage: true });
  // LOWBIT_DEMO_SCREENSHOT=path keeps the screenshot, to look at
  if (process.env.LOWBIT_DEMO_SCREENSHOT) await writeFile(process.env.LOWBIT_DEMO_SCREENSHOT, shot);
  const png = shot.toString('base64');
  const pixels = await page.evaluate(async ({ png, box }) => {
    const bitmap = await createImageBitmap(await (await fetch(`data:image/png;base64,${png}`)).blob());
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext('2d')!;
    ctx.drawImage(bitmap, 0, 0);
    const { data, width, height } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
    const colours = new Set<number>();
    let nonWhite = 0, barInChart = 0, barOutside = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 4;
        const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
        colours.add((r << 16) | (g << 8) | b);
        if (r < 240 || g < 240 || b < 240) nonWhite++;
        // the chart's weights colour, #2f6fde
        if (Math.abs(r - 0x2f) < 8 && Math.abs(g - 0x6f) < 8 && Math.abs(b - 0xde) < 8) {
          const inside = x >= box.x && x < box.x + box.width && y >= box.y && y < box.y + box.height;
          if (inside) barInChart++;
          else barOutside++;
        }
      }
    }
    return { total: width * height, distinct: colours.size, nonWhite, barInChart, barOutside };
  }, { png, box: state.chartBox });
  // The app's other page: quantization only (NF4, FP4, INT4 of a 512 x 512 matrix, and a NaN refused).
  await page.goto(new URL('/quantize.html', page.url()).href);
  await page.waitForFunction(() => document.querySelectorAll('#out tr').length === 4 && document.getElementById('err')!.textContent !== '', undefined, { timeout: 60_000 });
  const quantize = await page.evaluate(() => ({
    rows: [...document.querySelectorAll('#out tr')].slice(1).map((tr) => [...tr.children].map((td) => td.textContent!)),
    err: document.getElementById('err')!.textContent!,
  }));
  // Picked files instead of a URL: the tiny Llama fixture (config.json + model.safetensors, no
  // tokenizer) through the file input, then Load.
  await page.goto(new URL('/?quant=nf4', page.url()).href);
  await page.setInputFiles('#files', ['config.json', 'model.safetensors'].map((f) => join(TINY_LLAMA, f)));
  await page.click('#load');
  await page.waitForFunction(() => document.getElementById('stage-ready')!.dataset.state === 'done' || !document.getElementById('error')!.hidden, undefined, { timeout: 60_000 });
  const picked = await page.evaluate(() => ({
    dropped: document.getElementById('dropped')!.textContent!,
    ready: document.getElementById('stage-ready')!.dataset.state!,
    bars: [...document.querySelectorAll('#chart g[data-quant]')].map((g) => g.getAttribute('data-quant')!),
    modules: document.querySelectorAll('#modules tbody tr').length,
    error: document.getElementById('error')!.textContent!,
    sendDisabled: (document.getElementById('send') as HTMLButtonElement).disabled,
  }));
  return { state, pixels, quantize, picked };
}

describe('the demo page (examples/browser)', () => {
  it('loads the default model in its worker, draws the memory chart and answers', async () => {
    const query = new URLSearchParams({ model: `/models/${MODEL}`, quant: 'nf4-dq', device: 'cpu', prompt: 'What is the capital of France?', maxNewTokens: '16', autorun: '1' });
    const run = await runPage<{ ok: boolean; error?: string; answer: { text: string; stats: { newTokens: number; decodeTokensPerSecond: number } }; info: { memory: number } }>(join(tmp, 'dist'), `/?${query}`, {
      timeoutMs: 120_000,
      inspect,
    });
    const r = run.result;
    expect(r.ok, `${r.error}\n${run.logs.join('\n')}`).toBe(true);
    const { state, pixels } = run.inspected as Awaited<ReturnType<typeof inspect>>;
    console.log(`demo: answer ${JSON.stringify(r.answer.text)} at ${r.answer.stats.decodeTokensPerSecond.toFixed(1)} tok/s; screenshot ${JSON.stringify(pixels)}`);

    expect(state.error).toBeNull();
    expect(state.stages.map((s) => s.state)).toEqual(['done', 'done', 'done', 'done', 'done']);
    // the chart: the planner's four choices, smaller and smaller (nf4 + dq is planned as the GPU
    // holds it, absmax widened to f32: the same bytes as nf4), bar heights in proportion
    expect(state.bars.map((b) => b.quant)).toEqual(['none', 'int8', 'nf4', 'nf4-dq']);
    for (let i = 1; i < 4; i++) {
      if (i < 3) expect(state.bars[i]!.bytes).toBeLessThan(state.bars[i - 1]!.bytes);
      else expect(state.bars[i]!.bytes).toBeLessThanOrEqual(state.bars[i - 1]!.bytes);
      expect(state.bars[i]!.height / state.bars[0]!.height).toBeCloseTo(state.bars[i]!.bytes / state.bars[0]!.bytes, 2);
    }
    expect(state.loadedText).toMatch(/^loaded: \d+\.\d MiB$/);
    // where each module runs: embeddings, the 30 layers as one run, the norm (tied lm_head)
    expect(state.modules.map((m) => m.name)).toContain('model.layers.0-29');
    expect(new Set(state.modules.map((m) => m.device))).toEqual(new Set(['cpu']));
    expect(state.modules.find((m) => m.name === 'model.layers.0-29')!.mib).toBeGreaterThan(10);
    // loaded NF4 + dq on the CPU: at most the plan (the CPU keeps double-quant absmax compressed)
    const loaded = Number(/loaded: (\d+\.\d) MiB/.exec(state.loadedText)![1]) * 2 ** 20;
    expect(loaded).toBeLessThanOrEqual(state.bars[3]!.bytes);
    expect(loaded).toBeGreaterThan(0.9 * state.bars[3]!.bytes);
    // the streamed answer and its speed
    expect(state.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(r.answer.text).toContain('Paris');
    expect(state.messages[1]!.text).toContain(r.answer.text);
    expect(state.messages[1]!.text).toMatch(/\d+ tokens, \d+\.\d tokens\/s/);
    expect(r.answer.stats.newTokens).toBe(16);
    expect(state.speed).toMatch(/tokens\/s decode/);
    // the screenshot: a drawn page, with the chart's bars where the chart is
    expect(pixels.distinct).toBeGreaterThan(50);
    // text, inputs, bars: a blank or unstyled-and-empty page has almost none off the background
    expect(pixels.nonWhite / pixels.total).toBeGreaterThan(0.05);
    expect(pixels.barInChart).toBeGreaterThan(2000);

    // quantize.html: 512 x 512 weights at 4 bits: 131072 packed bytes per format
    const { quantize } = run.inspected as Awaited<ReturnType<typeof inspect>>;
    expect(quantize.rows.map((r) => [r[0], r[1]])).toEqual([['nf4', '131072'], ['fp4', '131072'], ['int4', '131072']]);
    for (const r of quantize.rows) expect(Number(r[3])).toBeLessThan(0.2);
    expect(quantize.err).toContain('NON_FINITE');

    // picked files: loaded from Blobs in the worker, charted and placed; no tokenizer -> a clear message
    const { picked } = run.inspected as Awaited<ReturnType<typeof inspect>>;
    expect(picked.dropped).toContain('2 file(s)');
    expect(picked.ready).toBe('done');
    expect(picked.bars).toEqual(['none', 'int8', 'nf4', 'nf4-dq']);
    expect(picked.modules).toBeGreaterThan(2);
    expect(picked.error).toContain('no usable tokenizer');
    expect(picked.sendDisabled).toBe(true);
  }, 180_000);
});
