/**
 * AutoModelForCausalLM.fromPretrained on llama-architecture GGUF files.
 *
 * test/fixtures/gguf-model/ (scripts/fixtures/make_gguf_model_fixture.py) holds the tiny fp32
 * Llama of test/fixtures/reference-logits/llama/ converted the way llama.cpp's converter does
 * (llama.* metadata, llama.cpp names, attn_q / attn_k rows permuted), as F32 and as Q8_0:
 * - F32: logits within 1e-4 of transformers' logits-fp32.f32 and the same 32 greedy tokens (only
 *   right if the Q/K rows are un-permuted exactly);
 * - Q8_0: the linears stay 8-bit (block-wise, int8 code, blocks of 32, exact) and the logits are
 *   within 1e-4 of transformers' own load of the same GGUF (logits-q8_0.f32);
 * - F32 + BitsAndBytesConfig nf4: runs, close to the fp32 logits (NF4 is lossy).
 * - Qwen2 / Qwen3 (<arch>-f32.gguf / <arch>-q8_0.gguf, the tiny models of reference-logits/<arch>/
 *   converted as llama.cpp's Qwen2Model / Qwen3Model do: <arch>.* metadata, q/k/v biases or
 *   attn_q_norm / attn_k_norm, Q/K not permuted).
 * The real default model (SmolLM2-135M-Instruct Q4_1, scripts/models/fetch-default-model.sh) is
 * checked when it is present: " Paris" after "The capital of France is", top-5 logits close to
 * transformers 5.23's (which dequantizes the same file to f32).
 */
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, BitsAndBytesConfig, LowbitError, loadWeights, localSource, GgufFile, dequantizeBlockwise, type LoadedWeight } from '../dist/index.js';
import { ggufToConfig, ggufToHfName } from '../dist/models/gguf-model.js';
import { unpermuteHeadRows } from '../dist/models/llama.js';
import { GEMMA2 } from '../dist/models/gemma2.js';

const DIR = fileURLToPath(new URL('./fixtures/gguf-model/', import.meta.url));
const REF = fileURLToPath(new URL('./fixtures/reference-logits/llama/', import.meta.url));
const REAL_DIR = fileURLToPath(new URL('../.cache/models/smollm2-135m-instruct/', import.meta.url));
const REAL = existsSync(REAL_DIR) ? readdirSync(REAL_DIR).find((f) => f.endsWith('.gguf')) : undefined;

const ref = JSON.parse(readFileSync(`${REF}reference.json`, 'utf8')) as { input_ids: number[]; fp32: { greedy_tokens: number[] } };
const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const maxDiff = (a: Float32Array, b: Float32Array) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

const tmp = mkdtempSync(join(tmpdir(), 'lowbit-gguf-model-'));
beforeAll(async () => {
  await init();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('GGUF llama models', () => {
  it('F32 GGUF: logits within 1e-4 of transformers and the same 32 greedy tokens', async () => {
    const m = await AutoModelForCausalLM.fromPretrained(`${DIR}llama-f32.gguf`);
    expect(m.config).toMatchObject({ family: 'llama', hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, vocabSize: 256, maxPositions: 128, ropeTheta: 10000, tieWordEmbeddings: false, bosTokenId: 1, eosTokenIds: [2] });
    expect(m.config.normEps).toBe(Math.fround(1e-6)); // stored as f32
    const ours = await m.forward(ref.input_ids, 0);
    expect(maxDiff(ours, f32(`${REF}logits-fp32.f32`))).toBeLessThanOrEqual(1e-4);
    const tokens = await m.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] });
    expect(tokens).toEqual(ref.fp32.greedy_tokens);
    m.dispose();
  });

  it('Q8_0 GGUF: linears stay block-wise 8-bit (~1.1 bytes/weight), logits within 1e-4 of transformers loading the same file', async () => {
    // tokenizer: false — this fixture's tokenizer is SentencePiece ('llama'), which lowbit does not build from GGUF metadata.
    const m = await AutoModelForCausalLM.fromPretrained(`${DIR}llama-q8_0.gguf`, { tokenizer: false });
    const fp = m.getMemoryFootprint();
    // one byte per weight + one f32 scale per block of 32 (the int8 code is not stored per layer); f32 would be 4
    const linears: [string, number, number][] = [['self_attn.q_proj', 64, 64], ['self_attn.k_proj', 32, 64], ['self_attn.v_proj', 32, 64], ['self_attn.o_proj', 64, 64], ['mlp.gate_proj', 128, 64], ['mlp.up_proj', 128, 64], ['mlp.down_proj', 64, 128]];
    for (const l of [0, 1]) for (const [name, n, k] of linears) expect(fp.byModule[`model.layers.${l}.${name}`]).toBe(n * k * 1.125);
    expect(fp.byModule['lm_head']).toBe(256 * 64 * 1.125);
    expect(fp.byModule['model.embed_tokens']).toBe(256 * 64 * 4); // embeddings are dequantized to f32
    const ours = await m.forward(ref.input_ids, 0);
    expect(maxDiff(ours, f32(`${DIR}logits-q8_0.f32`))).toBeLessThanOrEqual(1e-4);
    m.dispose();
  });

  it('loadWeights on a Q8_0 GGUF: linears as blockwise8 (exact), embeddings dense; keepQ8_0: false or a quantization config dequantize', async () => {
    const src = await localSource(DIR);
    const load = async (options: Parameters<typeof loadWeights>[1]) => {
      const out = new Map<string, LoadedWeight>();
      for await (const w of loadWeights(src, { file: 'llama-q8_0.gguf', ...options })) out.set(w.name, w);
      return out;
    };
    const kept = await load({});
    const gg = await GgufFile.open(await src.open('llama-q8_0.gguf'));
    for (const [name, w] of kept) {
      const info = gg.tensors.get(name)!;
      const linear = info.ggmlType === 'Q8_0' && name !== 'token_embd.weight';
      expect(w.kind).toBe(linear ? 'blockwise8' : 'dense');
      if (w.kind !== 'blockwise8') continue;
      expect([w.shape, w.blocksize]).toEqual([info.shape, 32]);
      // bit for bit the GGUF dequantizer's f32 (ggml: d * q)
      const deq = dequantizeBlockwise(w.q, { absmax: w.absmax, code: w.code, blocksize: w.blocksize });
      expect(Buffer.from(deq.buffer).equals(Buffer.from((await gg.dequantize(name, 'float32')).buffer))).toBe(true);
    }
    await gg.source.close?.();
    expect([...(await load({ keepQ8_0: false })).values()].every((w) => w.kind === 'dense')).toBe(true);
    const nf4 = await load({ quantization: { quantType: 'nf4' } });
    expect(nf4.get('blk.0.ffn_up.weight')!.kind).toBe('4bit');
    expect(nf4.get('output.weight')!.kind).toBe('dense');
  });

  it('F32 GGUF + BitsAndBytesConfig nf4: Q/K quantized after un-permuting, logits close to fp32', async () => {
    const q = new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' });
    const m = await AutoModelForCausalLM.fromPretrained(`${DIR}llama-f32.gguf`, { quantizationConfig: q });
    const fp = m.getMemoryFootprint();
    // Every attention / MLP linear is 4-bit: [64 -> 64] q_proj is 64*64/2 packed bytes + absmax, far below 64*64*4.
    expect(fp.byModule['model.layers.0.self_attn.q_proj']).toBeLessThan(64 * 64);
    expect(fp.byModule['model.layers.0.self_attn.k_proj']).toBeLessThan(32 * 64);
    const ours = await m.forward(ref.input_ids, 0);
    const d = maxDiff(ours, f32(`${REF}logits-fp32.f32`));
    expect(d).toBeGreaterThan(0);
    // bitsandbytes' own nf4 logits of this model are ~0.1 from fp32 (reference.json); same quantizer here.
    expect(d).toBeLessThanOrEqual(maxDiff(f32(`${REF}logits-nf4.f32`), f32(`${REF}logits-fp32.f32`)) * 1.5 + 1e-3);
    expect(maxDiff(ours, f32(`${REF}logits-nf4.f32`))).toBeLessThanOrEqual(1e-4);
    m.dispose();
  });

  it('a folder with one .gguf and no config.json loads from the GGUF', async () => {
    const dir = join(tmp, 'only-gguf');
    rmSync(dir, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    copyFileSync(`${DIR}llama-q8_0.gguf`, join(dir, 'model.Q8_0.gguf'));
    const m = await AutoModelForCausalLM.fromPretrained(dir);
    expect(maxDiff(await m.forward(ref.input_ids, 0), f32(`${DIR}logits-q8_0.f32`))).toBeLessThanOrEqual(1e-4);
    m.dispose();
  });

  it('a GGUF of another architecture is UNSUPPORTED_DTYPE, naming it', async () => {
    const bytes = new Uint8Array(readFileSync(`${DIR}llama-f32.gguf`));
    const key = new TextEncoder().encode('general.architecture');
    const at = Buffer.from(bytes).indexOf(Buffer.from(key));
    const v = Buffer.from(bytes).indexOf(Buffer.from('llama'), at + key.length);
    bytes.set(new TextEncoder().encode('gemma'), v);
    const path = join(tmp, 'other-arch.gguf');
    writeFileSync(path, bytes);
    const err = await AutoModelForCausalLM.fromPretrained(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LowbitError);
    expect((err as LowbitError).code).toBe('UNSUPPORTED_DTYPE');
    expect((err as LowbitError).message).toMatch(/architecture 'gemma' is not supported \(supported: llama, qwen2, qwen3, gemma2, gemma3\)/);
  });

  for (const [arch, family, extra] of [['qwen2', 'llama', 'q/k/v biases'], ['qwen3', 'qwen3', 'attn_q_norm / attn_k_norm']] as const) {
    it(`${arch} GGUF (${arch}.* metadata, ${extra}, no Q/K permutation): F32 within 1e-4 of transformers and the same 32 greedy tokens; Q8_0 within 1e-4 of transformers loading that file`, async () => {
      const QREF = fileURLToPath(new URL(`./fixtures/reference-logits/${arch}/`, import.meta.url));
      const qref = JSON.parse(readFileSync(`${QREF}reference.json`, 'utf8')) as { input_ids: number[]; fp32: { greedy_tokens: number[] } };
      const m = await AutoModelForCausalLM.fromPretrained(`${DIR}${arch}-f32.gguf`, { tokenizer: false });
      expect(m.config).toMatchObject({ family, modelType: arch, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, tieWordEmbeddings: false, qkvBias: arch === 'qwen2' });
      expect(maxDiff(await m.forward(qref.input_ids, 0), f32(`${QREF}logits-fp32.f32`))).toBeLessThanOrEqual(1e-4);
      expect(await m.generate({ inputIds: qref.input_ids, maxNewTokens: 32, eosTokenIds: [] })).toEqual(qref.fp32.greedy_tokens);
      m.dispose();
      const q = await AutoModelForCausalLM.fromPretrained(`${DIR}${arch}-q8_0.gguf`, { tokenizer: false });
      expect(q.getMemoryFootprint().byModule['model.layers.0.self_attn.o_proj']).toBe(64 * 64 * 1.125);
      expect(maxDiff(await q.forward(qref.input_ids, 0), f32(`${DIR}logits-${arch}-q8_0.f32`))).toBeLessThanOrEqual(1e-4);
      q.dispose();
    });
  }

  for (const [arch, layers, window, softcaps] of [['gemma2', 2, 6, { attnSoftcap: 1.5, finalSoftcap: 4 }], ['gemma3', 6, 5, {}]] as const) {
    it(`${arch} GGUF (${arch}.* metadata, norms stored as 1 + w, Gemma's tensor names, tied head): F32 within 1e-4 of transformers and the same 32 greedy tokens; Q8_0 within 1e-4 of transformers loading that file`, async () => {
      const GREF = fileURLToPath(new URL(`./fixtures/reference-logits/${arch}/`, import.meta.url));
      const gref = JSON.parse(readFileSync(`${GREF}reference.json`, 'utf8')) as { input_ids: number[]; fp32: { greedy_tokens: number[] } };
      const m = await AutoModelForCausalLM.fromPretrained(`${DIR}${arch}-f32.gguf`, { tokenizer: false });
      const sliding = Array.from({ length: layers }, (_, i) => (i + 1) % (arch === 'gemma2' ? 2 : 6) !== 0);
      expect(m.config).toMatchObject({ family: arch, modelType: arch, hiddenSize: 64, numLayers: layers, headDim: 16, tieWordEmbeddings: true, activation: 'gelu_pytorch_tanh', queryPreAttnScalar: 16, slidingWindow: window, slidingLayers: sliding, ...softcaps });
      if (arch === 'gemma3') expect(m.config).toMatchObject({ ropeTheta: 1e6, ropeLinearFactor: 4, localRopeTheta: 10000 });
      expect(maxDiff(await m.forward(gref.input_ids, 0), f32(`${GREF}logits-fp32.f32`))).toBeLessThanOrEqual(1e-4);
      expect(await m.generate({ inputIds: gref.input_ids, maxNewTokens: 32, eosTokenIds: [] })).toEqual(gref.fp32.greedy_tokens);
      m.dispose();
      const q = await AutoModelForCausalLM.fromPretrained(`${DIR}${arch}-q8_0.gguf`, { tokenizer: false });
      expect(maxDiff(await q.forward(gref.input_ids, 0), f32(`${DIR}logits-${arch}-q8_0.f32`))).toBeLessThanOrEqual(1e-4);
      q.dispose();
    });
  }

  it('gemma norms: the GGUF side subtracts the stored 1 exactly (the safetensors side adds it back to the same f32)', () => {
    const w = new Float32Array([-0.3, 0, 0.123456, 1.5, -0.9999]);
    const stored = Float32Array.from(w, (x) => x + 1);
    const fix = GEMMA2.gguf!.fixTensor!('blk.0.attn_norm.weight', {} as never)!;
    const back = fix({ kind: 'dense', name: 'blk.0.attn_norm.weight', dtype: 'F32', shape: [5], data: new Uint8Array(stored.buffer) });
    const f = new Float32Array((back as { data: Uint8Array }).data.buffer);
    expect(Array.from(f, (x) => Math.fround(x + 1))).toEqual(Array.from(stored));
    expect(GEMMA2.gguf!.fixTensor!('blk.0.attn_q.weight', {} as never)).toBeUndefined();
    expect(ggufToHfName('blk.3.post_ffw_norm.weight', { modelType: 'gemma2' } as never)).toBe('model.layers.3.post_feedforward_layernorm.weight');
    expect(ggufToHfName('blk.3.ffn_norm.weight', { modelType: 'gemma2' } as never)).toBe('model.layers.3.pre_feedforward_layernorm.weight');
    expect(ggufToHfName('blk.3.attn_q_norm.weight', { modelType: 'gemma2' } as never)).toBeUndefined();
    expect(ggufToHfName('blk.3.attn_q_norm.weight', { modelType: 'gemma3' } as never)).toBe('model.layers.3.self_attn.q_norm.weight');
  });

  it('ggufToConfig reads llama.* keys (tied head when output.weight is absent)', () => {
    const md = new Map<string, unknown>([
      ['general.architecture', 'llama'], ['llama.block_count', 30], ['llama.embedding_length', 576], ['llama.feed_forward_length', 1536],
      ['llama.attention.head_count', 9], ['llama.attention.head_count_kv', 3], ['llama.attention.layer_norm_rms_epsilon', 1e-5],
      ['llama.rope.freq_base', 100000], ['llama.rope.dimension_count', 64], ['llama.context_length', 8192], ['llama.vocab_size', 49152],
      ['tokenizer.ggml.bos_token_id', 1], ['tokenizer.ggml.eos_token_id', 2n],
    ]);
    const c = ggufToConfig(md as never, new Map([['token_embd.weight', { shape: [49152, 576] }]]));
    expect(c).toMatchObject({ hiddenSize: 576, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64, intermediateSize: 1536, vocabSize: 49152, maxPositions: 8192, ropeTheta: 100000, normEps: 1e-5, tieWordEmbeddings: true, bosTokenId: 1, eosTokenIds: [2] });
    expect(() => ggufToConfig(new Map([['general.architecture', 'llama'], ['llama.embedding_length', 8], ['llama.attention.head_count', 2], ['llama.block_count', 1], ['llama.feed_forward_length', 8], ['llama.vocab_size', 4], ['llama.rope.scaling.type', 'yarn']]) as never)).toThrow(/rope scaling 'yarn'/);
  });

  it('names and the Q/K un-permutation', () => {
    const LLAMA_CFG = { modelType: 'llama' } as never;
    expect(ggufToHfName('token_embd.weight', LLAMA_CFG)).toBe('model.embed_tokens.weight');
    expect(ggufToHfName('blk.12.attn_output.weight', LLAMA_CFG)).toBe('model.layers.12.self_attn.o_proj.weight');
    expect(ggufToHfName('blk.0.ffn_norm.weight', LLAMA_CFG)).toBe('model.layers.0.post_attention_layernorm.weight');
    expect(ggufToHfName('output.weight', LLAMA_CFG)).toBe('lm_head.weight');
    expect(ggufToHfName('blk.0.unknown.weight', LLAMA_CFG)).toBeUndefined();
    // 2 heads of 4 rows; HF rows 0..7 permuted by llama.cpp become [0, 2, 1, 3, 4, 6, 5, 7].
    const permuted = [0, 2, 1, 3, 4, 6, 5, 7];
    const data = new Uint8Array(new Float32Array(permuted.flatMap((r) => [r, r + 0.5])).buffer);
    const out = unpermuteHeadRows({ kind: 'dense', name: 'blk.0.attn_q.weight', dtype: 'F32', shape: [8, 2], data }, 2);
    expect(Array.from(new Float32Array(out.data.buffer))).toEqual([0, 1, 2, 3, 4, 5, 6, 7].flatMap((r) => [r, r + 0.5]));
    // Block-wise 8-bit (Q8_0 kept 8-bit): rows of 64 = 2 blocks of 32 each; codes and scales move together.
    const q = Uint8Array.from(permuted.flatMap((r) => Array.from({ length: 64 }, (_, c) => r * 16 + (c >> 5))));
    const absmax = Float32Array.from(permuted.flatMap((r) => [r, r + 0.5]));
    const code = Float32Array.from({ length: 256 }, (_, i) => (i << 24) >> 24);
    const b8 = unpermuteHeadRows({ kind: 'blockwise8', name: 'blk.0.attn_q.weight', shape: [8, 64], q, absmax, code, blocksize: 32 }, 2);
    expect(Array.from(b8.absmax)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].flatMap((r) => [r, r + 0.5]));
    expect(Array.from(b8.q)).toEqual([0, 1, 2, 3, 4, 5, 6, 7].flatMap((r) => Array.from({ length: 64 }, (_, c) => r * 16 + (c >> 5))));
    expect(() => unpermuteHeadRows({ kind: 'blockwise8', name: 'blk.0.attn_q.weight', shape: [8, 48], q: new Uint8Array(384), absmax: new Float32Array(12), code, blocksize: 32 }, 2)).toThrow(LowbitError);
  });

  it.skipIf(REAL === undefined)(
    `real model${REAL === undefined ? ' (SKIPPED: .cache/models/smollm2-135m-instruct/*.gguf is absent; run scripts/models/fetch-default-model.sh)' : ''}: SmolLM2-135M-Instruct Q4_1 says " Paris"`,
    async () => {
      const m = await AutoModelForCausalLM.fromPretrained(join(REAL_DIR, REAL!), { maxPositions: 64 });
      expect(m.config).toMatchObject({ numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64, vocabSize: 49152, tieWordEmbeddings: true, bosTokenId: 1 });
      // "The capital of France is" (the GGUF's tokenizer, via transformers 5.23).
      const ids = [504, 3575, 282, 4649, 314];
      const logits = await m.forward(ids, 0);
      const last = logits.subarray(logits.length - m.config.vocabSize);
      expect(last.every(Number.isFinite)).toBe(true);
      const top = Array.from(last.keys()).sort((a, b) => last[b]! - last[a]!).slice(0, 5);
      // transformers 5.23 on the same GGUF (dequantized to f32): ' Paris', ' the', ' London', ' Le', ' New'.
      expect(top).toEqual([7042, 260, 4528, 2250, 1315]);
      const theirs = [17.371261596679688, 14.888594627380371, 13.244979858398438, 13.009464263916016, 12.951519012451172];
      for (const [i, id] of top.entries()) expect(Math.abs(last[id]! - theirs[i]!)).toBeLessThanOrEqual(1e-2);
      m.dispose();
    },
    120_000,
  );
});
