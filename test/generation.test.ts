/**
 * model.generate() options on the real default model (SmolLM2-135M-Instruct, installed by
 * scripts/models/fetch-default-model.sh, which `npm test` runs through setup): prompt / messages
 * through the tokenizer found next to the weights, TextStreamer, stop strings, sampling options
 * and their errors.
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, BitsAndBytesConfig, LowbitError, StopStrings, TextStreamer, type CausalLM } from '../dist/index.js';

const DIR = fileURLToPath(new URL('../.cache/models/smollm2-135m-instruct/', import.meta.url));

let lm: CausalLM;
beforeAll(async () => {
  if (!(existsSync(DIR) && readdirSync(DIR).some((f) => f.endsWith('.gguf')))) throw new Error(`the default model is missing in ${DIR}: run bash scripts/models/fetch-default-model.sh`);
  await init();
  lm = await AutoModelForCausalLM.fromPretrained(DIR, { quantizationConfig: new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }), maxPositions: 512 });
});
afterAll(() => lm?.dispose());

const question = [{ role: 'user' as const, content: 'What is the capital of France?' }];

describe('generate', () => {
  it('loads the tokenizer next to the weights; messages and a TextStreamer give the answer as text', async () => {
    expect(lm.tokenizer).toBeDefined();
    let text = '';
    let ended = 0;
    const streamer = new TextStreamer(lm.tokenizer!, (piece, final) => {
      text += piece;
      if (final) ended++;
    });
    const ids = await lm.generate({ messages: question, maxNewTokens: 24, streamer });
    expect(ended).toBe(1);
    expect(text).toMatch(/Paris/);
    // The streamed text is the decoded ids without special tokens.
    expect(text).toBe(lm.tokenizer!.decode(ids, { skipSpecialTokens: true }));
    // Greedy and deterministic: the same ids from the rendered ids.
    const rendered = lm.tokenizer!.applyChatTemplate(question, { addGenerationPrompt: true, tokenize: true });
    expect(await lm.generate({ inputIds: rendered, maxNewTokens: 24 })).toEqual(ids);
  });

  it('prompt text is encoded with the tokenizer', async () => {
    const viaText = await lm.generate({ prompt: 'The capital of France is', maxNewTokens: 4, eosTokenIds: [] });
    const viaIds = await lm.generate({ inputIds: lm.tokenizer!.encode('The capital of France is'), maxNewTokens: 4, eosTokenIds: [] });
    expect(viaText).toEqual(viaIds);
    expect(lm.tokenizer!.decode(viaText)).toMatch(/^ Paris/);
  });

  it('stops at a stop string, keeping the token that completes it', async () => {
    const full = await lm.generate({ prompt: 'The capital of France is', maxNewTokens: 16, eosTokenIds: [] });
    const fullText = lm.tokenizer!.decode(full);
    const stop = fullText.includes('.') ? '.' : fullText.trim().split(/\s+/)[1]!;
    const cut = await lm.generate({ prompt: 'The capital of France is', maxNewTokens: 16, eosTokenIds: [], stop: [stop, 'never-appears'] });
    expect(cut.length).toBeLessThan(full.length);
    expect(full.slice(0, cut.length)).toEqual(cut);
    const cutText = lm.tokenizer!.decode(cut);
    expect(cutText).toContain(stop);
    expect(lm.tokenizer!.decode(cut.slice(0, -1))).not.toContain(stop);
  });

  it('sampling is reproducible with a seed and differs across seeds', async () => {
    const o = { prompt: 'Once upon a time', maxNewTokens: 12, doSample: true, temperature: 1.2, topK: 50, topP: 0.95, eosTokenIds: [] };
    const a = await lm.generate({ ...o, seed: 1 });
    expect(await lm.generate({ ...o, seed: 1 })).toEqual(a);
    const others = await Promise.all([2, 3, 4].map((seed) => lm.generate({ ...o, seed })));
    expect(others.some((b) => b.join() !== a.join())).toBe(true);
  });

  it('sampling without a seed differs from call to call', async () => {
    const o = { prompt: 'Once upon a time', maxNewTokens: 12, doSample: true, temperature: 1.2, topK: 50, topP: 0.95, eosTokenIds: [] };
    const runs = new Set<string>();
    for (let i = 0; i < 4; i++) runs.add((await lm.generate(o)).join());
    // Four draws of 12 tokens from top-50 at temperature 1.2: all equal only if the seed were fixed.
    expect(runs.size).toBeGreaterThan(1);
  });

  it('an abort from a timer stops generation between tokens', async () => {
    const ac = new AbortController();
    let n = 0;
    const run = lm.generate({
      prompt: 'Once upon a time',
      maxNewTokens: 100,
      eosTokenIds: [],
      signal: ac.signal,
      // The timer can only fire if generate returns to the event loop between tokens.
      onToken: () => void (n++ === 0 && setTimeout(() => ac.abort(), 0)),
    });
    await expect(run).rejects.toMatchObject({ name: 'LowbitError', code: 'ABORTED', cause: { name: 'AbortError' } });
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(5);
  });

  it('maxNewTokens 0 returns no tokens and ends the streamer', async () => {
    let final = false;
    const ids = await lm.generate({ prompt: 'Hi', maxNewTokens: 0, streamer: { put: () => expect.unreachable(), end: () => (final = true) } });
    expect(ids).toEqual([]);
    expect(final).toBe(true);
  });

  it('rejects bad options with INVALID_ARGUMENT', async () => {
    const bad = async (o: Parameters<CausalLM['generate']>[0], re: RegExp) => {
      const e = await lm.generate(o).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(LowbitError);
      expect((e as LowbitError).code).toBe('INVALID_ARGUMENT');
      expect((e as LowbitError).message).toMatch(re);
    };
    await bad({ prompt: 'a', inputIds: [1] }, /exactly one of/);
    await bad({}, /exactly one of/);
    await bad({ prompt: 'a', temperature: 0, doSample: true }, /temperature/);
    await bad({ prompt: 'a', topP: 1.5 }, /topP/);
    await bad({ prompt: 'a', topK: -1 }, /topK/);
    await bad({ prompt: 'a', maxNewTokens: 2.5 }, /maxNewTokens/);
    await bad({ prompt: 'a', stop: [''] }, /stop/);
  });

  it('prompt or stop strings without a tokenizer are refused clearly', async () => {
    const bare = await AutoModelForCausalLM.fromPretrained(DIR, { tokenizer: false, maxPositions: 64 });
    try {
      expect(bare.tokenizer).toBeUndefined();
      await expect(bare.generate({ prompt: 'Hi' })).rejects.toThrow(/needs a tokenizer/);
      expect(() => new StopStrings(['x'], undefined)).toThrow(/need a tokenizer/);
    } finally {
      bare.dispose();
    }
  });
});
