/**
 * Sampling on the device (WebGpuBackend.sampleToken, shaders/sample_draw.wgsl) against the host's
 * pickToken (ts/generation/sampling.ts) on the same logits and the same random number: the same
 * token for greedy and sampled choices, with temperature, top-k, top-p and repetition penalty,
 * rows with many equal logits included; a decode step reads back 4 bytes. Then whole models:
 * generate() with a seed gives the CPU's tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { init, AutoModelForCausalLM, WebGpuBackend } from '../dist/index.js';
import { pickToken, seededRandom, type SamplingOptions } from '../dist/generation/sampling.js';
import { testGpu } from './helpers/webgpu.js';
import { REFERENCE_ROOT } from './helpers/parity.js';

const env = await testGpu();
const suite = env.skip ? describe.skip : describe;

let gpu: WebGpuBackend;

beforeAll(async () => {
  if (env.skip) return;
  await init();
  gpu = await WebGpuBackend.create({ gpu: env.gpu! });
});

afterAll(() => gpu?.dispose());

function rand(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

suite(`sampling on the device (${env.adapter ?? 'no adapter'})`, () => {
  // (vocab, logit scale, grid: logits rounded to multiples of it so that many are equal, or 0)
  const ROWS: [number, number, number][] = [[1000, 4, 0], [5003, 8, 0.25], [300, 2, 0.5]];
  const OPTIONS: SamplingOptions[] = [
    { doSample: false, repetitionPenalty: 1.3 },
    { doSample: true },
    { doSample: true, temperature: 0.7 },
    { doSample: true, temperature: 1.5, topP: 0.9 },
    { doSample: true, topP: 0.5, repetitionPenalty: 1.2 },
    { doSample: true, topK: 5 },
    { doSample: true, topK: 50, topP: 0.8, temperature: 1.2 },
    { doSample: true, topK: 40, repetitionPenalty: 0.8 },
    { doSample: true, topK: 1 },
  ];
  for (const [vocab, scale, grid] of ROWS) {
    it(`vocab ${vocab}${grid ? `, logits on a grid of ${grid} (many ties)` : ''}: the host's pickToken choice for every option set and draw`, async () => {
      let checked = 0;
      for (let row = 0; row < 4; row++) {
        let logits = rand(vocab, vocab + row * 17, scale);
        if (grid) logits = logits.map((v) => Math.round(v / grid) * grid);
        const seen = Array.from(rand(20, row + 3), (v) => Math.floor(Math.abs(v) * vocab) % vocab);
        const x = gpu.fromHost(logits, 1, vocab);
        for (const o of OPTIONS) {
          const draws = seededRandom(row * 101 + 7);
          for (let d = 0; d < (o.doSample ? 6 : 1); d++) {
            const u = o.doSample ? draws() : 0;
            const want = pickToken(logits, seen, o, () => u);
            gpu.resetStats();
            const got = await gpu.sampleToken(x, { ...o, seen, random: u });
            expect(got, `row ${row} ${JSON.stringify(o)} u=${u}`).toBe(want);
            // one id comes back, nothing per vocabulary entry
            expect(gpu.stats().bytesRead).toBe(4);
            checked++;
          }
        }
        gpu.release(x);
      }
      expect(checked).toBeGreaterThan(100);
    });
  }

  it('rejects what the host sampler would and a top-k the device cannot take', async () => {
    const x = gpu.fromHost(rand(2000, 1), 1, 2000);
    await expect(gpu.sampleToken(x, { doSample: true, temperature: 0, random: 0.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(gpu.sampleToken(x, { doSample: true, topP: 1.5, random: 0.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(gpu.sampleToken(x, { doSample: true, random: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(gpu.sampleToken(x, { doSample: true, topK: 1500, random: 0.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(gpu.sampleToken(x, { repetitionPenalty: 1.2, seen: [2000] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // top-k at or past the row's length is top-k off
    expect(await gpu.sampleToken(x, { doSample: true, topK: 2000, random: 0.25 })).toBe(await gpu.sampleToken(x, { doSample: true, random: 0.25 }));
    gpu.release(x);
  });

  // whole models: the seeded generate() on the GPU (device sampling) and on the CPU (host
  // sampling) choose the same tokens; the logits differ by f32 rounding only
  for (const model of ['llama', 'qwen2']) {
    it(`${model}: seeded generate() with temperature / top-k / top-p / repetition penalty gives the CPU's tokens, reading back 4 bytes a token`, async () => {
      const ref = JSON.parse(readFileSync(`${REFERENCE_ROOT}${model}/reference.json`, 'utf8'));
      const g = await AutoModelForCausalLM.fromPretrained(`${REFERENCE_ROOT}${model}`, { deviceMap: 'gpu', gpu: env.gpu! });
      const c = await AutoModelForCausalLM.fromPretrained(`${REFERENCE_ROOT}${model}`, { deviceMap: 'cpu' });
      const b = g.backend as WebGpuBackend;
      const cases: SamplingOptions[] = [
        { doSample: true, temperature: 1.3, seed: 1 },
        { doSample: true, topP: 0.9, seed: 2 },
        { doSample: true, topK: 20, topP: 0.95, temperature: 0.9, seed: 3 },
        { doSample: true, repetitionPenalty: 1.3, seed: 4 },
        { doSample: false, repetitionPenalty: 1.5 },
      ];
      for (const o of cases) {
        b.resetStats();
        const tokens = await g.generate({ inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [], ...o });
        const st = b.stats();
        expect(st.bytesRead, JSON.stringify(o)).toBe(4 * tokens.length);
        expect(tokens, JSON.stringify(o)).toEqual(await c.generate({ inputIds: ref.input_ids, maxNewTokens: 12, eosTokenIds: [], ...o }));
      }
      g.dispose();
      c.dispose();
    });
  }
});
