/**
 * Keeping the KV cache across turns: generate({ reuseCache }) and ChatSession (model.chat())
 * must give exactly the tokens a fresh generate over the whole conversation gives, while running
 * only the tokens after the common prefix with the cache. Checked on the tiny reference models
 * (token ids, CPU and WebGPU on Dawn) and on the default model (SmolLM2-135M-Instruct, its chat
 * template); plus history edits, an abort mid-turn, a full cache, and pipeline().
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, BitsAndBytesConfig, ChatSession, LowbitError, pipeline, TextStreamer, type CausalLM, type PrefillInfo } from '../dist/index.js';
import { testGpu } from './helpers/webgpu.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/reference-logits/', import.meta.url));
const SMOLLM = fileURLToPath(new URL('../.cache/models/smollm2-135m-instruct/', import.meta.url));
const nf4 = () => new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' });

beforeAll(async () => {
  await init();
});

/** A deterministic pseudo-random prompt of n ids below `vocab`. */
function ids(n: number, vocab: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % vocab);
}

/**
 * Three "turns" on token ids: each prompt extends the previous prompt + answer. Greedy with
 * reuseCache gives the fresh result and prefills only the new tail; an edit in the middle
 * re-runs from the edit.
 */
async function checkIdTurns(model: CausalLM, fresh: CausalLM): Promise<void> {
  const vocab = model.config.vocabSize;
  const o = { maxNewTokens: 6, eosTokenIds: [] };
  let history: number[] = [];
  for (let turn = 0; turn < 3; turn++) {
    const prompt = [...history, ...ids(5 + turn, vocab, 17 + turn)];
    let info: PrefillInfo | undefined;
    const kept = await model.generate({ ...o, inputIds: prompt, reuseCache: true, onPrefill: (p) => (info = p) });
    const full = await fresh.generate({ ...o, inputIds: prompt });
    expect(kept, `turn ${turn}`).toEqual(full);
    // The cache holds the prompt and every new token but the last (never run).
    const reusable = turn === 0 ? 0 : history.length - 1;
    expect(info).toEqual({ promptTokens: prompt.length, reusedTokens: reusable, prefilledTokens: prompt.length - reusable });
    expect(model.cachedTokens).toEqual([...prompt, ...kept.slice(0, -1)]);
    history = [...prompt, ...kept];
  }
  // An edit at position 4: only the first 4 tokens are kept, the rest runs again.
  const edited = [...history];
  edited[4] = (edited[4]! + 1) % vocab;
  let info: PrefillInfo | undefined;
  expect(await model.generate({ ...o, inputIds: edited, reuseCache: true, onPrefill: (p) => (info = p) })).toEqual(await fresh.generate({ ...o, inputIds: edited }));
  expect(info).toMatchObject({ reusedTokens: 4, prefilledTokens: edited.length - 4 });
  // The same prompt again: everything but its last token comes from the cache.
  await model.generate({ ...o, inputIds: edited, reuseCache: true, onPrefill: (p) => (info = p) });
  expect(info).toMatchObject({ reusedTokens: edited.length - 1, prefilledTokens: 1 });
  // Without reuseCache the cache starts empty (the default, as before).
  await model.generate({ ...o, inputIds: edited, onPrefill: (p) => (info = p) });
  expect(info).toMatchObject({ reusedTokens: 0, prefilledTokens: edited.length });
}

describe('generate({ reuseCache }) on the tiny reference models (CPU)', () => {
  // gemma2 / gemma3: sliding-window layers (windows of 6 and 5), so re-used prefixes cross the window
  for (const name of ['llama', 'qwen3', 'gpt2', 'gemma2', 'gemma3']) {
    it(`${name}: the fresh tokens, only the new tail prefilled (nf4)`, async () => {
      const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`, { quantizationConfig: nf4(), threads: 1, maxPositions: 128 });
      const fresh = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`, { quantizationConfig: nf4(), threads: 1, maxPositions: 128 });
      try {
        await checkIdTurns(model, fresh);
      } finally {
        model.dispose();
        fresh.dispose();
      }
    });
  }

  it('forward() keeps cachedTokens in step; reset() empties them; bad options are refused', async () => {
    const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}llama`, { threads: 1, maxPositions: 64 });
    try {
      await model.forward([1, 2, 3, 4]);
      await model.forward([9, 8], 2);
      expect(model.cachedTokens).toEqual([1, 2, 9, 8]);
      model.reset();
      expect(model.cachedTokens).toEqual([]);
      await expect(model.generate({ inputIds: [1], reuseCache: 'yes' as unknown as boolean })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(model.generate({ inputIds: [1], onPrefill: 3 as unknown as () => void })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      model.dispose();
    }
  });
});

const gpu = await testGpu();
describe.skipIf(gpu.skip !== undefined)('generate({ reuseCache }) on WebGPU (Dawn)', () => {
  for (const name of ['llama', 'gemma2']) {
    it(`${name} on the GPU: the tokens of a fresh generate, only the new tail prefilled`, async () => {
      const model = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`, { deviceMap: 'gpu', gpu: gpu.gpu!, maxPositions: 128 });
      const fresh = await AutoModelForCausalLM.fromPretrained(`${FIXTURES}${name}`, { deviceMap: 'gpu', gpu: gpu.gpu!, maxPositions: 128 });
      try {
        await checkIdTurns(model, fresh);
      } finally {
        model.dispose();
        fresh.dispose();
      }
    });
  }
});

describe.skipIf(!existsSync(SMOLLM))('ChatSession on the default model (chat template)', () => {
  let lm: CausalLM;
  beforeAll(async () => {
    lm = await AutoModelForCausalLM.fromPretrained(SMOLLM, { quantizationConfig: nf4(), maxPositions: 512 });
  });
  afterAll(() => lm?.dispose());
  const greedy = { maxNewTokens: 12 };

  it('three turns give exactly what a fresh generate over the whole conversation gives, prefilling far fewer tokens', async () => {
    const chat = lm.chat({ system: 'You are a concise assistant.', ...greedy });
    const questions = ['What is the capital of France?', 'And of Italy?', 'Which of the two is larger?'];
    let freshPrefill = 0;
    for (const q of questions) {
      const before = chat.messages;
      const reply = await chat.send(q);
      const conversation = [...before, { role: 'user', content: q }];
      const fresh = await lm.generate({ messages: conversation, ...greedy });
      expect(chat.lastTurn!.tokens, q).toEqual(fresh);
      expect(reply).toBe(lm.tokenizer!.decode(fresh, { skipSpecialTokens: true }));
      freshPrefill += lm.tokenizer!.applyChatTemplate(conversation, { addGenerationPrompt: true }).length;
    }
    expect(chat.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
    expect(chat.messages[2]!.content).toMatch(/Paris/);
    expect(chat.stats.turns).toBe(3);
    expect(chat.stats.promptTokens).toBe(freshPrefill);
    expect(chat.stats.prefilledTokens + chat.stats.reusedTokens).toBe(freshPrefill);
    // Turns 2 and 3 re-use everything before their new user message; the fresh generates in
    // between emptied the cache, so re-run the session on a model used by nothing else.
    const quiet = await AutoModelForCausalLM.fromPretrained(SMOLLM, { quantizationConfig: nf4(), maxPositions: 512 });
    try {
      const again = quiet.chat({ system: 'You are a concise assistant.', ...greedy });
      const turns = [];
      for (const q of questions) {
        await again.send(q);
        turns.push(again.lastTurn!);
      }
      expect(again.messages).toEqual(chat.messages);
      expect(turns[0]!.reusedTokens).toBe(0);
      for (const t of turns.slice(1)) {
        // At most the re-rendered end of the previous reply and the new message run again.
        expect(t.reusedTokens).toBeGreaterThan(t.promptTokens - 25);
        expect(t.prefilledTokens).toBe(t.promptTokens - t.reusedTokens);
      }
      expect(again.stats.prefilledTokens).toBeLessThan(freshPrefill / 2);
    } finally {
      quiet.dispose();
    }
  });

  it('a history edit re-runs from the first changed token; respond() answers the edited history', async () => {
    const chat = new ChatSession(lm, greedy);
    await chat.send('What is the capital of France?');
    await chat.send('And of Germany?');
    const edited = chat.messages.slice(0, 3);
    edited.push({ role: 'user', content: 'And of Spain?' });
    chat.setMessages(edited);
    const reply = await chat.respond();
    const fresh = await lm.generate({ messages: edited, ...greedy });
    expect(reply).toBe(lm.tokenizer!.decode(fresh, { skipSpecialTokens: true }));
    // The cache now holds the edited conversation (the fresh generate ran the same prompt): a
    // second edit of the last message re-runs only what follows the shared part.
    chat.setMessages(edited.slice(0, 3).concat({ role: 'user', content: 'And of Portugal?' }));
    await chat.respond();
    const t = chat.lastTurn!;
    const shared = lm.tokenizer!.applyChatTemplate(edited.slice(0, 3), {}).length;
    expect(t.reusedTokens).toBeGreaterThanOrEqual(shared);
    expect(t.prefilledTokens).toBeLessThan(t.promptTokens - shared + 1);
  });

  it('an abort mid-turn leaves the history as it was and the session usable', async () => {
    const chat = lm.chat(greedy);
    await chat.send('What is the capital of France?');
    const before = chat.messages;
    const abort = new AbortController();
    let pieces = 0;
    const streamer = new TextStreamer(lm.tokenizer!, () => {
      if (++pieces === 2) abort.abort(new Error('user pressed Ctrl-C'));
    });
    const failed = await chat.send('Tell me a long story about Paris.', { maxNewTokens: 200, signal: abort.signal, streamer }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(LowbitError);
    expect((failed as LowbitError).code).toBe('ABORTED');
    expect(chat.messages).toEqual(before);
    const reply = await chat.send('And of Italy?');
    const fresh = await lm.generate({ messages: [...before, { role: 'user', content: 'And of Italy?' }], ...greedy });
    expect(reply).toBe(lm.tokenizer!.decode(fresh, { skipSpecialTokens: true }));
  });

  it("a full KV cache: the reply stops at the cache's end ('cache-full'); a conversation that does not fit is LIMIT_EXCEEDED", async () => {
    const small = await AutoModelForCausalLM.fromPretrained(SMOLLM, { quantizationConfig: nf4(), maxPositions: 48 });
    try {
      const chat = small.chat({ maxNewTokens: 100, eosTokenIds: [] });
      const prompt = small.tokenizer!.applyChatTemplate([{ role: 'user', content: 'Count to one hundred.' }], { addGenerationPrompt: true }).length;
      await chat.send('Count to one hundred.');
      expect(chat.lastTurn!.finishReason).toBe('cache-full');
      expect(chat.lastTurn!.tokens).toHaveLength(48 - prompt + 1);
      const err = await chat.send('Go on.').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LowbitError);
      expect((err as LowbitError).code).toBe('LIMIT_EXCEEDED');
      expect((err as LowbitError).message).toMatch(/KV cache holds 48/);
      expect(chat.messages).toHaveLength(2);
      chat.reset();
      expect(chat.messages).toEqual([]);
      await chat.send('Hi', { maxNewTokens: 2 });
      expect(chat.lastTurn!.finishReason).toBe('length');
    } finally {
      small.dispose();
    }
  });

  it('pipeline(): text in, prompt + continuation out; messages in, messages + the reply out', async () => {
    const generator = await pipeline('text-generation', SMOLLM, { quantizationConfig: nf4(), maxPositions: 256 });
    try {
      const [text] = await generator('The capital of France is', { maxNewTokens: 4, eosTokenIds: [] });
      const cont = generator.tokenizer.decode(await lm.generate({ prompt: 'The capital of France is', maxNewTokens: 4, eosTokenIds: [] }), { skipSpecialTokens: true });
      expect(text.generated_text).toBe(`The capital of France is${cont}`);
      const [only] = await generator('The capital of France is', { maxNewTokens: 4, eosTokenIds: [], returnFullText: false });
      expect(only.generated_text).toBe(cont);
      // transformers' spellings work too
      const [snake] = await generator('The capital of France is', { max_new_tokens: 4, eosTokenIds: [], return_full_text: false });
      expect(snake.generated_text).toBe(cont);
      const question = [{ role: 'user', content: 'What is the capital of France?' }];
      const [chat] = await generator(question, { maxNewTokens: 12 });
      expect(chat.generated_text).toHaveLength(2);
      expect(chat.generated_text[1]).toEqual({ role: 'assistant', content: generator.tokenizer.decode(await lm.generate({ messages: question, maxNewTokens: 12 }), { skipSpecialTokens: true }) });
      expect(chat.generated_text[1]!.content).toMatch(/Paris/);
      await expect(pipeline('summarization' as 'text-generation', SMOLLM)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      generator.dispose();
    }
  });
});
