/**
 * Tokenizers: the default real model's GGUF tokenizer (SmolLM2-135M-Instruct, tokenizer.ggml.pre =
 * 'smollm') against transformers' (test/fixtures/tokenizer/smollm2-gguf.json, made by
 * scripts/fixtures/make_tokenizer_fixtures.py): encode ids, decode, chat template text and ids,
 * streaming decode; the same tokenizer through tokenizer.json + tokenizer_config.json; GGUF
 * pre-tokenizers on a tiny vocabulary; errors.
 *
 * The GGUF is not committed: scripts/setup.sh fetches it (scripts/models/fetch-default-model.sh).
 * When it is missing these tests fail, they do not skip.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, localSource, AutoTokenizer, GgufFile, LowbitError, tokenizerJsonFromGguf, type Tokenizer, type GgufValue } from '../dist/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MODEL_DIR = join(ROOT, '.cache/models/smollm2-135m-instruct');
const GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const ref = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/tokenizer/smollm2-gguf.json'), 'utf8')) as {
  special: { bos_token: string; bos_token_id: number; eos_token: string; eos_token_id: number; unk_token: string; pad_token: string; vocab_size: number; add_bos_token: boolean };
  differ: string[];
  encode: Array<{ name: string; text?: string; ids: number[]; ids_llamacpp?: number[]; decode: string; decode_skip: string }>;
  chat: Array<{ name: string; messages: Array<{ role: string; content: string }>; add_generation_prompt: boolean; text: string; ids: number[] }>;
};
const BOOK = readFileSync(join(ROOT, 'test/fixtures/text/pride-and-prejudice-ch1-3.txt'), 'utf8');
const cases = ref.encode.map((e) => ({ ...e, text: e.text ?? BOOK }));

let tok: Tokenizer;
const tmp = mkdtempSync(join(tmpdir(), 'lowbit-tokenizer-'));

beforeAll(async () => {
  if (!existsSync(join(MODEL_DIR, GGUF))) {
    throw new Error(`${join(MODEL_DIR, GGUF)} is missing: run \`bash scripts/models/fetch-default-model.sh\` (scripts/setup.sh does)`);
  }
  await init();
  tok = await AutoTokenizer.fromPretrained(MODEL_DIR);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Streams ids one at a time; returns the pieces. */
function stream(t: Tokenizer, ids: number[], skipSpecialTokens = false): string[] {
  const s = t.decodeStream({ skipSpecialTokens });
  const pieces = ids.map((id) => s.push(id));
  pieces.push(s.flush());
  return pieces;
}

describe('SmolLM2 GGUF tokenizer (tokenizer.ggml.*) vs transformers', () => {
  it('reads the special tokens', () => {
    expect(tok.kind).toBe('gguf');
    expect(tok.vocabSize).toBe(ref.special.vocab_size);
    expect([tok.bosToken, tok.bosTokenId]).toEqual([ref.special.bos_token, ref.special.bos_token_id]);
    expect([tok.eosToken, tok.eosTokenIds]).toEqual([ref.special.eos_token, [ref.special.eos_token_id]]);
    expect([tok.unkToken, tok.padToken]).toEqual([ref.special.unk_token, ref.special.pad_token]);
    expect(tok.chatTemplate).toContain('<|im_start|>');
  });

  it('encode equals transformers exactly (the book, 4,734 tokens, and tricky strings)', () => {
    // Only where transformers' GGUF loader and llama.cpp's 'smollm' pre-tokenizer disagree does
    // lowbit (which follows llama.cpp) differ from transformers: see the fixture script.
    expect(ref.differ).toEqual(['unicode-digits']);
    expect(cases[0]!.ids.length).toBe(4734);
    for (const c of cases) {
      const ids = tok.encode(c.text);
      expect(ids, `${c.name}: llama.cpp pre-tokenizer ids`).toEqual(c.ids_llamacpp ?? c.ids);
      if (!ref.differ.includes(c.name)) expect(ids, `${c.name}: transformers ids`).toEqual(c.ids);
    }
  });

  it('addSpecialTokens adds nothing here (add_bos_token is false)', () => {
    expect(tok.encode('Hello world', { addSpecialTokens: true })).toEqual(tok.encode('Hello world', { addSpecialTokens: false }));
  });

  it('decode(encode(x)) == x, and decode equals transformers (with and without special tokens)', () => {
    for (const c of cases) {
      expect(tok.decode(tok.encode(c.text)), c.name).toBe(c.text);
      expect(tok.decode(c.ids), `${c.name}: decode`).toBe(c.decode);
      expect(tok.decode(c.ids, { skipSpecialTokens: true }), `${c.name}: decode skip`).toBe(c.decode_skip);
    }
    expect(tok.decode([])).toBe('');
  });

  it('the chat template renders as transformers (text and ids)', () => {
    for (const c of ref.chat) {
      expect(tok.applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt, tokenize: false }), c.name).toBe(c.text);
      expect(tok.applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt, tokenize: true }), c.name).toEqual(c.ids);
      expect(tok.applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt }), `${c.name}: tokenize defaults to true`).toEqual(c.ids);
    }
    const custom = tok.applyChatTemplate([{ role: 'user', content: 'x' }], { tokenize: false, chatTemplate: '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}' });
    expect(custom).toBe('<|im_start|>[user] x');
  });

  it('decodeStream gives whole UTF-8 characters that concatenate to the full decode', () => {
    for (const c of [...cases, ...ref.chat.map((x) => ({ name: x.name, ids: x.ids, text: x.text }))]) {
      const pieces = stream(tok, c.ids);
      expect(pieces.join(''), c.name).toBe(tok.decode(c.ids));
      for (const p of pieces) expect(p.includes('\uFFFD'), `${c.name}: piece ${JSON.stringify(p)}`).toBe(false);
      expect(stream(tok, c.ids, true).join(''), `${c.name}: skip special`).toBe(tok.decode(c.ids, { skipSpecialTokens: true }));
    }
    // a 4-byte emoji comes in byte tokens: nothing is given out until it is whole
    const ids = tok.encode('🤗');
    expect(ids.length).toBeGreaterThan(1);
    const pieces = stream(tok, ids);
    expect(pieces.slice(0, -2).every((p) => p === '')).toBe(true);
    expect(pieces.join('')).toBe('🤗');
    // an incomplete character is held back, and flush() gives it out as U+FFFD
    const s = tok.decodeStream();
    expect(s.push(ids[0]!)).toBe('');
    expect(s.flush()).toBe('\uFFFD');
  });

  it('AutoTokenizer.fromGguf(GgufFile) and a path to the .gguf give the same tokenizer', async () => {
    const src = await localSource(MODEL_DIR);
    const range = await src.open(GGUF);
    const file = await GgufFile.open(range);
    const t = await AutoTokenizer.fromGguf(file);
    await range.close?.();
    const t2 = await AutoTokenizer.fromPretrained(join(MODEL_DIR, GGUF));
    for (const x of [t, t2]) {
      expect(x.encode(BOOK)).toEqual(cases[0]!.ids);
      expect(x.applyChatTemplate(ref.chat[0]!.messages, { addGenerationPrompt: true, tokenize: false })).toBe(ref.chat[0]!.text);
    }
  });
});

describe('tokenizer.json + tokenizer_config.json folder', () => {
  let gguf: { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> };
  beforeAll(async () => {
    const src = await localSource(MODEL_DIR);
    const range = await src.open(GGUF);
    gguf = tokenizerJsonFromGguf((await GgufFile.open(range)).metadata, GGUF);
    await range.close?.();
  });

  it('reads tokenizer.json, tokenizer_config.json (chat_template, bos/eos) and generation_config.json', async () => {
    const dir = join(tmp, 'folder');
    const { chat_template, ...rest } = gguf.tokenizerConfig;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(gguf.tokenizerJson));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...rest, bos_token: { content: rest.bos_token, special: true }, chat_template }));
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [2, 0] }));
    const t = await AutoTokenizer.fromPretrained(dir);
    expect(t.kind).toBe('tokenizer.json');
    expect([t.bosTokenId, t.eosTokenIds]).toEqual([1, [2, 0]]);
    for (const c of cases) expect(t.encode(c.text), c.name).toEqual(c.ids_llamacpp ?? c.ids);
    for (const c of ref.chat) expect(t.applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt, tokenize: false })).toBe(c.text);
  });

  it('add_bos_token: true adds BOS when tokenizer.json adds nothing; chat_template.jinja wins', async () => {
    const dir = join(tmp, 'bos');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(gguf.tokenizerJson));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...gguf.tokenizerConfig, add_bos_token: true }));
    writeFileSync(join(dir, 'chat_template.jinja'), '{% for m in messages %}{{ m.content }}{% endfor %}');
    const t = await AutoTokenizer.fromPretrained(dir);
    expect(t.encode('Hello world')).toEqual([1, 19556, 905]);
    expect(t.encode('Hello world', { addSpecialTokens: false })).toEqual([19556, 905]);
    expect(t.applyChatTemplate([{ role: 'user', content: 'Hello world' }], { tokenize: false })).toBe('Hello world');
    // the folder also holds no GGUF: preferGguf finds none and falls back to tokenizer.json
    expect((await AutoTokenizer.fromPretrained(dir, { preferGguf: true })).kind).toBe('tokenizer.json');
  });
});

/** A tiny byte-level BPE GGUF vocabulary: the 256 byte characters, a few merged tokens, <s>. */
function tinyGguf(pre: string | undefined, extra: Record<string, GgufValue> = {}): Map<string, GgufValue> {
  const bytes: string[] = [];
  for (let b = 0, n = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    bytes.push(String.fromCharCode(printable ? b : 256 + n++));
  }
  const tokens = ['<s>', ...bytes, '12', '34', '123', 'hello'];
  const types = new Int32Array(tokens.length).fill(1);
  types[0] = 3;
  const m = new Map<string, GgufValue>([
    ['tokenizer.ggml.model', 'gpt2'],
    ['tokenizer.ggml.tokens', tokens],
    ['tokenizer.ggml.token_type', types],
    ['tokenizer.ggml.merges', ['1 2', '3 4', '12 3']],
    ['tokenizer.ggml.bos_token_id', 0],
    ['tokenizer.ggml.eos_token_id', 0],
  ]);
  if (pre !== undefined) m.set('tokenizer.ggml.pre', pre);
  for (const [k, v] of Object.entries(extra)) m.set(k, v);
  return m;
}

async function tiny(pre: string, extra: Record<string, GgufValue> = {}) {
  const p = tokenizerJsonFromGguf(tinyGguf(pre, extra), 'tiny.gguf');
  const t = await AutoTokenizer.fromJson(p.tokenizerJson, p.tokenizerConfig);
  const pieces = (s: string, o?: { addSpecialTokens?: boolean }) => t.encode(s, o).map((id) => t.idToToken(id));
  return { t, pieces };
}

describe('GGUF pre-tokenizers (llama.cpp regexes) on a tiny vocabulary', () => {
  it("'llama-bpe': \\p{N}{1,3} groups, ignore_merges, BOS by default", async () => {
    const { pieces } = await tiny('llama-bpe');
    expect(pieces('1234')).toEqual(['<s>', '123', '4']);
    expect(pieces('hello', { addSpecialTokens: false })).toEqual(['hello']); // whole token, no merges needed
    expect(pieces("IT'S", { addSpecialTokens: false })).toEqual(['I', 'T', "'", 'S']); // "'S" is one piece (case-insensitive contraction)
    const off = await tiny('llama-bpe', { 'tokenizer.ggml.add_bos_token': false });
    expect(off.pieces('1234')).toEqual(['123', '4']);
  });

  it("'gpt-2': one number piece, merges by rank; 'smollm': every digit alone", async () => {
    expect((await tiny('gpt-2')).pieces('1234')).toEqual(['12', '34']);
    expect((await tiny('gpt-2')).pieces('hello')).toEqual(['h', 'e', 'l', 'l', 'o']);
    expect((await tiny('smollm')).pieces('1234')).toEqual(['1', '2', '3', '4']);
    expect((await tiny('smollm')).pieces('a 12')).toEqual(['a', 'Ġ', '1', '2']);
  });

  it('an unknown pre-tokenizer or tokenizer model is a clear UNSUPPORTED error', () => {
    for (const [meta, what] of [
      [tinyGguf('no-such-pre'), "tokenizer.ggml.pre = 'no-such-pre'"],
      [tinyGguf(undefined), 'tokenizer.ggml.pre = (missing)'],
      [tinyGguf('smollm', { 'tokenizer.ggml.model': 'llama' }), "tokenizer.ggml.model = 'llama'"],
    ] as const) {
      let err: unknown;
      try {
        tokenizerJsonFromGguf(meta, 'tiny.gguf');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(LowbitError);
      expect((err as LowbitError).code).toBe('INVALID_ARGUMENT');
      expect((err as LowbitError).message).toMatch(/^UNSUPPORTED/);
      expect((err as LowbitError).message).toContain(what);
      expect((err as LowbitError).message).toContain('tiny.gguf');
    }
  });
});

describe('errors', () => {
  it('decode of an id outside the vocabulary, a missing chat template, a source without a tokenizer', async () => {
    expect(() => tok.decode([49152])).toThrow(/not a token id/);
    expect(() => tok.decode([-1])).toThrow(LowbitError);
    const { t } = await tiny('gpt-2');
    expect(() => t.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/no chat template/);
    const empty = join(tmp, 'empty');
    mkdirSync(empty, { recursive: true });
    await expect(AutoTokenizer.fromPretrained(empty)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
