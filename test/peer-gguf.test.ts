/**
 * scripts/make-peer-gguf.mjs: the GGUF files llama.cpp runs beside lowbit in `npm run bench -- cpu`.
 *
 * - Q4_0 / Q8_0 blocks byte for byte as gguf-py (llama.cpp's Python port of ggml's reference
 *   quantizers) makes them, on edge cases (test/fixtures/peer-gguf, scripts/fixtures/make_peer_quant_fixture.py);
 * - a tiny random checkpoint converted to each type parses with lowbit's GGUF reader: metadata,
 *   tensor names, types and shapes as llama.cpp expects them, and every tensor, dequantized and
 *   (Q/K) un-permuted with lowbit's own inverse, back within its format's error bound;
 * - the F16 GGUF loaded by AutoModelForCausalLM (config from the metadata, Q/K un-permuted) gives
 *   the logits of the safetensors checkpoint it came from;
 * - bad input is refused with a message.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, GgufFile, loadWeights, localSource } from '../dist/index.js';
import { unpermuteHeadRows } from '../dist/models/llama.js';
// @ts-expect-error plain .mjs scripts, no type declarations
import { writeCheckpoint } from '../scripts/make-random-checkpoint.mjs';
// @ts-expect-error plain .mjs scripts, no type declarations
import { f16ToF32, f32ToF16, makePeerGgufs, quantizeQ4_0, quantizeQ8_0, writePeerGguf } from '../scripts/make-peer-gguf.mjs';

const FIX = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/peer-gguf/quants.json', import.meta.url)), 'utf8')) as {
  cases: Array<{ name: string; input_f32_bits: number[]; q4_0: string; q8_0: string }>;
};
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const tmp = mkdtempSync(join(tmpdir(), 'lowbit-peer-gguf-'));
const TINY = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 320, tie_word_embeddings: false };

beforeAll(async () => {
  await init();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The checkpoint's tensors as f32, by name. */
async function sourceTensors(dir: string): Promise<Map<string, { shape: number[]; values: Float32Array; f16: Uint16Array }>> {
  const out = new Map();
  for await (const w of loadWeights(await localSource(dir))) {
    if (w.kind !== 'dense' || w.dtype !== 'F16') throw new Error(`${w.name}: expected dense F16`);
    const f16 = new Uint16Array(w.data.slice().buffer);
    out.set(w.name, { shape: w.shape, f16, values: Float32Array.from(f16, (h) => f16ToF32(h)) });
  }
  return out;
}

describe('peer GGUF (llama.cpp) conversion', () => {
  it('Q4_0 and Q8_0 blocks are byte-identical to gguf-py on edge cases and normals', () => {
    expect(FIX.cases.length).toBeGreaterThanOrEqual(10);
    for (const c of FIX.cases) {
      const x = new Float32Array(Uint32Array.from(c.input_f32_bits).buffer);
      expect(hex(quantizeQ4_0(x)), `${c.name} Q4_0`).toBe(c.q4_0);
      expect(hex(quantizeQ8_0(x)), `${c.name} Q8_0`).toBe(c.q8_0);
    }
    expect(() => quantizeQ4_0(new Float32Array(48))).toThrow(/multiple of 32/);
  });

  it('f32 -> f16 rounds to nearest even and round-trips every finite f16', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue; // inf / NaN
      expect(f32ToF16(f16ToF32(h))).toBe(h);
    }
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie -> even (1.0)
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (1 + 2^-9)
    expect(f32ToF16(2 ** -25)).toBe(0); // half the smallest subnormal -> even (0)
    expect(f32ToF16(3 * 2 ** -25)).toBe(2); // 1.5 subnormal steps -> 2
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds past the largest f16
  });

  it('a tiny checkpoint in q4_0, q8_0 and f16: metadata, names, types, shapes, values within the format bound', async () => {
    const src = join(tmp, 'tiny-shape-f16');
    writeCheckpoint(src, TINY);
    const paths = makePeerGgufs(src, join(tmp, 'tiny-shape-gguf'));
    const ref = await sourceTensors(src);
    const hd = TINY.hidden_size / TINY.num_attention_heads;
    for (const [type, path] of Object.entries(paths) as Array<[string, string]>) {
      const gg = await GgufFile.open(await (await localSource(join(path, '..'))).open(path.split('/').pop()!));
      expect([gg.version, gg.alignment]).toEqual([3, 32]);
      const md = gg.metadata;
      expect(Object.fromEntries([...md].filter(([k]) => !k.startsWith('tokenizer.ggml.to') && k !== 'tokenizer.ggml.scores'))).toMatchObject({
        'general.architecture': 'llama',
        'general.file_type': { f16: 1, q4_0: 2, q8_0: 7 }[type],
        'llama.context_length': 2048,
        'llama.embedding_length': 64,
        'llama.block_count': 2,
        'llama.feed_forward_length': 128,
        'llama.attention.head_count': 4,
        'llama.attention.head_count_kv': 2,
        'llama.rope.dimension_count': hd,
        'llama.rope.freq_base': 10000,
        'llama.attention.layer_norm_rms_epsilon': Math.fround(1e-5),
        'tokenizer.ggml.model': 'llama',
        'tokenizer.ggml.bos_token_id': 1,
        'tokenizer.ggml.eos_token_id': 2,
      });
      const tokens = Array.from(md.get('tokenizer.ggml.tokens') as ArrayLike<string>);
      expect(tokens.length).toBe(TINY.vocab_size);
      expect(new Set(tokens).size).toBe(TINY.vocab_size);
      expect(tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
      expect(tokens[3 + 0x0a]).toBe('<0x0A>');
      expect((md.get('tokenizer.ggml.scores') as ArrayLike<number>).length).toBe(TINY.vocab_size);
      const types = Array.from(md.get('tokenizer.ggml.token_type') as ArrayLike<number>);
      expect([types[0], types[1], types[3], types[259]]).toEqual([2, 3, 6, 1]);

      const linear = { q4_0: 'Q4_0', q8_0: 'Q8_0', f16: 'F16' }[type]!;
      const names = [...gg.tensors.keys()];
      expect(names).toHaveLength(ref.size);
      expect(names.slice(0, 4)).toEqual(['token_embd.weight', 'blk.0.attn_norm.weight', 'blk.0.attn_q.weight', 'blk.0.attn_k.weight']);
      expect(names.at(-1)).toBe('output.weight');
      for (const name of names) {
        const info = gg.info(name);
        const hf = name
          .replace(/^blk\.(\d+)\./, 'model.layers.$1.')
          .replace('token_embd', 'model.embed_tokens').replace('output_norm', 'model.norm').replace(/^output\./, 'lm_head.')
          .replace('attn_norm', 'input_layernorm').replace('ffn_norm', 'post_attention_layernorm')
          .replace('attn_q', 'self_attn.q_proj').replace('attn_k', 'self_attn.k_proj').replace('attn_v', 'self_attn.v_proj').replace('attn_output', 'self_attn.o_proj')
          .replace('ffn_gate', 'mlp.gate_proj').replace('ffn_up', 'mlp.up_proj').replace('ffn_down', 'mlp.down_proj');
        const want = ref.get(hf)!;
        expect(want, `${name} -> ${hf}`).toBeDefined();
        expect(info.shape, name).toEqual(want.shape);
        expect(info.ggmlType, name).toBe(info.shape.length === 1 ? 'F32' : name.startsWith('blk.') ? linear : 'F16');
        let got = await gg.dequantize(name, 'float32');
        if (/attn_[qk]/.test(name)) {
          const nHead = name.includes('attn_q') ? TINY.num_attention_heads : TINY.num_key_value_heads;
          const dense = { kind: 'dense' as const, name, dtype: 'F32' as const, shape: info.shape, data: new Uint8Array(got.buffer, got.byteOffset, got.byteLength) };
          got = new Float32Array(unpermuteHeadRows(dense, nHead).data.buffer);
        }
        if (info.ggmlType === 'F16' || info.ggmlType === 'F32') {
          expect(Array.from(got), name).toEqual(Array.from(want.values));
          continue;
        }
        // Per block of 32: Q8_0 is off by at most d/2 (d = amax/127), Q4_0 by at most d (d = amax/8;
        // the clamp to 15 costs up to a whole step for values near -max); the f16 scale adds up to
        // |q| * d * 2^-11 <= amax * 2^-11.
        let worst = 0;
        for (let b = 0; b < got.length; b += 32) {
          let amax = 0;
          for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(want.values[b + j]!));
          const bound = (info.ggmlType === 'Q8_0' ? amax / 254 : amax / 8) + amax * 2 ** -11 + 1e-9;
          for (let j = 0; j < 32; j++) {
            const e = Math.abs(got[b + j]! - want.values[b + j]!);
            expect(e, `${name}[${b + j}]`).toBeLessThanOrEqual(bound);
            worst = Math.max(worst, e / (amax || 1));
          }
        }
        // Really quantized (not copied): the largest error is a visible part of the bound.
        expect(worst, name).toBeGreaterThan(info.ggmlType === 'Q8_0' ? 1 / 254 / 4 : 1 / 16 / 4);
      }
      await gg.source.close?.();
    }
  });

  it('the F16 GGUF of a tied-head checkpoint loads to the same logits as the safetensors', async () => {
    const src = join(tmp, 'tied-shape-f16');
    writeCheckpoint(src, { ...TINY, tie_word_embeddings: true });
    const path = join(tmp, 'tied.gguf');
    writePeerGguf(src, path, 'f16');
    const a = await AutoModelForCausalLM.fromPretrained(src, { maxPositions: 64 });
    const b = await AutoModelForCausalLM.fromPretrained(path, { maxPositions: 64 });
    expect(b.config).toMatchObject({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, vocabSize: 320, tieWordEmbeddings: true, ropeTheta: 10000 });
    const ids = [1, 17, 300, 42, 5, 260, 99, 3];
    const la = await a.forward(ids, 0);
    const lb = await b.forward(ids, 0);
    expect(lb.length).toBe(la.length);
    let d = 0;
    for (let i = 0; i < la.length; i++) d = Math.max(d, Math.abs(la[i]! - lb[i]!));
    // Same f16 weights, same kernels: only a wrong Q/K permutation or config would move them.
    expect(d).toBeLessThanOrEqual(1e-5);
    a.dispose();
    b.dispose();
  });

  it('refuses what it cannot convert, saying why', () => {
    const odd = join(tmp, 'odd-shape-f16');
    writeCheckpoint(odd, { ...TINY, hidden_size: 48, num_attention_heads: 4, num_key_value_heads: 2 });
    expect(() => writePeerGguf(odd, join(tmp, 'odd.gguf'), 'q4_0')).toThrow(/rows of 48 values, not a multiple of 32/);
    expect(() => writePeerGguf(odd, join(tmp, 'odd.gguf'), 'q5_k')).toThrow(/unknown type 'q5_k'/);
    const small = join(tmp, 'small-vocab-f16');
    writeCheckpoint(small, { ...TINY, vocab_size: 200 });
    expect(() => writePeerGguf(small, join(tmp, 'small.gguf'), 'f16')).toThrow(/vocabulary of 200 tokens/);
  });
});
