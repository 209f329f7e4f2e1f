/**
 * Phi-3 and OLMo 2 beyond the parity fixtures (parity.test.ts, gguf-model.test.ts, webgpu.test.ts):
 * - config.json as the hub writes it (rope_scaling with type longrope / su, rope_theta and
 *   partial_rotary_factor at the top level, original_max_position_embeddings) gives the numbers
 *   transformers 5.23 uses (Phi3Config, _compute_longrope_parameters);
 * - bad LongRoPE settings are refused with a LowbitError naming them, before anything is loaded;
 *   mutated phi3 configs only ever throw LowbitError;
 * - LongRoPE's switch: forward() over a sequence crossing original_max_position_embeddings from a
 *   short cache gives the logits of one forward over the whole sequence (the cache is recomputed);
 * - a Phi-3's sliding_window is applied (attention extras { window }, as transformers masks it);
 * - a bitsandbytes checkpoint of a Phi-3 (fused qkv_proj / gate_up_proj stored quantized, as
 *   transformers saves them; written by saveBnbCheckpoint, byte-exact with bitsandbytes per
 *   checkpoints.test.ts) loads without a quantization config and gives transformers' logits.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, LowbitError, loadWeights, localSource, saveBnbCheckpoint, bnbQuantizationConfig, type LoadedWeight } from '../dist/index.js';
import { parseConfig } from '../dist/models/architectures.js';
import { configJsonFields, validateConfig } from '../dist/models/validate.js';
import { expectParity, REFERENCE_ROOT, referenceOf } from './helpers/parity.js';

const tmp = mkdtempSync(join(tmpdir(), 'lowbit-phi3-'));
beforeAll(async () => {
  await init();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Phi-3.5-mini-instruct's config.json numbers, with 48 factors per list (head_dim 96). */
const PHI35: Record<string, unknown> = {
  model_type: 'phi3', hidden_size: 3072, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, intermediate_size: 8192,
  vocab_size: 32064, max_position_embeddings: 131072, original_max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000.0,
  bos_token_id: 1, eos_token_id: 32000, sliding_window: 262144, tie_word_embeddings: false,
  rope_scaling: { type: 'longrope', short_factor: Array.from({ length: 48 }, (_, i) => 1 + i / 48), long_factor: Array.from({ length: 48 }, (_, i) => 1 + i) },
};

const code = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(LowbitError);
    return (e as LowbitError).code;
  }
};
const check = (c: Record<string, unknown>) => {
  const d = parseConfig(c);
  validateConfig(d, 'config.json', configJsonFields(d));
  return d as ReturnType<typeof parseConfig> & { rotaryDim: number; slidingWindow?: number; longRope?: { shortFactor: number[]; longFactor: number[]; originalMaxPositions: number; attentionFactor: number } };
};

describe('phi3 config.json', () => {
  it('Phi-3.5-mini (hub rope_scaling, type longrope): LongRoPE with the attention factor sqrt(1 + ln(32) / ln(4096)), full rotary', () => {
    const d = check(PHI35);
    expect(d).toMatchObject({ family: 'phi3', headDim: 96, rotaryDim: 96, ropeTheta: 10000, slidingWindow: 262144, tieWordEmbeddings: false });
    expect(d.longRope!.originalMaxPositions).toBe(4096);
    expect(d.longRope!.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(131072 / 4096) / Math.log(4096)), 12);
    expect(d.longRope!.longFactor).toHaveLength(48);
    // 'su' is Phi-3-128k's older name for it; an explicit attention_factor wins
    expect(check({ ...PHI35, rope_scaling: { ...(PHI35.rope_scaling as object), type: 'su', attention_factor: 1.5 } }).longRope!.attentionFactor).toBe(1.5);
  });

  it('Phi-4-mini: top-level partial_rotary_factor 0.75 turns 96 of head_dim 128; tied embeddings', () => {
    const d = check({
      ...PHI35, hidden_size: 3072, num_attention_heads: 24, num_key_value_heads: 8, vocab_size: 200064, partial_rotary_factor: 0.75, tie_word_embeddings: true,
      rope_scaling: { type: 'longrope', short_factor: new Array(48).fill(1), long_factor: new Array(48).fill(2) },
    });
    expect(d).toMatchObject({ headDim: 128, rotaryDim: 96, numKvHeads: 8, tieWordEmbeddings: true });
  });

  it('Phi-3-mini-4k: no rope scaling (plain rope), sliding_window 2047', () => {
    const d = check({ ...PHI35, max_position_embeddings: 4096, rope_scaling: null, sliding_window: 2047 });
    expect(d.longRope).toBeUndefined();
    expect(d.slidingWindow).toBe(2047);
  });

  it('bad LongRoPE settings: factor lists of the wrong length or with non-positive values, unknown rope types, odd rotary widths', () => {
    const rs = PHI35.rope_scaling as Record<string, unknown>;
    expect(code(() => check({ ...PHI35, rope_scaling: { ...rs, long_factor: [1, 2, 3] } }))).toBe('MALFORMED_FILE');
    expect(code(() => check({ ...PHI35, rope_scaling: { ...rs, short_factor: new Array(48).fill(0) } }))).toBe('MALFORMED_FILE');
    expect(code(() => check({ ...PHI35, rope_scaling: { ...rs, short_factor: 'wide' } }))).toBe('MALFORMED_FILE');
    expect(code(() => check({ ...PHI35, rope_scaling: { ...rs, type: 'dynamic' } }))).toBe('UNSUPPORTED_DTYPE');
    expect(code(() => check({ ...PHI35, partial_rotary_factor: 0.515, rope_scaling: null }))).toBe('MALFORMED_FILE'); // int(96 * 0.515) = 49: odd
    expect(check({ ...PHI35, partial_rotary_factor: 0.51, rope_scaling: null }).rotaryDim).toBe(48); // int(48.96), as transformers truncates
  });

  it('mutated phi3 configs only ever throw LowbitError', () => {
    const values = [0, -1, 0.5, 1, 2, 3, 7, 1e9, NaN, Infinity, null, 'x', [], [1, 2], {}, true];
    const keys = ['hidden_size', 'num_attention_heads', 'num_key_value_heads', 'partial_rotary_factor', 'original_max_position_embeddings', 'max_position_embeddings', 'rope_scaling', 'sliding_window', 'rope_theta'];
    let accepted = 0;
    for (const k of keys) {
      for (const v of values) {
        if (code(() => check({ ...PHI35, [k]: v })) === undefined) accepted++;
      }
    }
    expect(accepted).toBeGreaterThan(0);
  });
});

describe('olmo2 config.json', () => {
  it('OLMo-2-0425-1B numbers: family olmo2, biases from attention_bias', () => {
    const c = { model_type: 'olmo2', hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 16, num_key_value_heads: 16, intermediate_size: 8192, vocab_size: 100352, max_position_embeddings: 4096, rms_norm_eps: 1e-6, rope_theta: 500000, attention_bias: false, tie_word_embeddings: false, eos_token_id: 100257 };
    expect(check(c)).toMatchObject({ family: 'olmo2', headDim: 128, ropeTheta: 500000, qkvBias: false, oBias: false });
    expect(check({ ...c, attention_bias: true })).toMatchObject({ qkvBias: true, oBias: true });
  });
});

describe('LongRoPE crossing original_max_position_embeddings (phi4-mini fixture: 24)', () => {
  it('forward() from a short cache over a sequence past 24 gives the logits of one forward over the whole sequence', async () => {
    const ref = referenceOf('phi4-mini');
    const ids = [...ref.input_ids, ...ref.fp32.greedy_tokens.slice(0, 14)]; // 30 tokens
    const m = await AutoModelForCausalLM.fromPretrained(`${REFERENCE_ROOT}phi4-mini`, { tokenizer: false, cpuKernels: 'exact' });
    const whole = await m.forward(ids, 0);
    m.reset();
    await m.forward(ids.slice(0, 20), 0); // positions 0..19: short factors
    const tail = await m.forward(ids.slice(20), 20); // ends at 30 > 24: long factors, positions 0..19 recomputed
    const vocab = m.config.vocabSize;
    expect(tail.length).toBe(10 * vocab);
    let d = 0;
    for (let i = 0; i < tail.length; i++) d = Math.max(d, Math.abs(tail[i]! - whole[20 * vocab + i]!));
    expect(d).toBeLessThanOrEqual(1e-5);
    m.dispose();
  });
});

describe('phi3 sliding_window (the phi3 fixture has 10, its prompt 16)', () => {
  it('the window is applied: the same model without it agrees on the first 10 positions only; both backends get it from the config', async () => {
    const dir = join(tmp, 'phi3-no-window');
    cpSync(`${REFERENCE_ROOT}phi3`, dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(cfg.sliding_window).toBe(10);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, sliding_window: null }));
    const ids = referenceOf('phi3').input_ids;
    const windowed = await AutoModelForCausalLM.fromPretrained(`${REFERENCE_ROOT}phi3`, { tokenizer: false });
    const full = await AutoModelForCausalLM.fromPretrained(dir, { tokenizer: false });
    expect((windowed.config as unknown as { slidingWindow?: number }).slidingWindow).toBe(10);
    const [a, b] = [await windowed.forward(ids, 0), await full.forward(ids, 0)];
    const vocab = windowed.config.vocabSize;
    const rowDiff = (r: number) => Math.max(...Array.from({ length: vocab }, (_, i) => Math.abs(a[r * vocab + i]! - b[r * vocab + i]!)));
    for (let r = 0; r < 10; r++) expect(rowDiff(r)).toBeLessThanOrEqual(1e-6);
    expect(Math.max(...Array.from({ length: 6 }, (_, i) => rowDiff(10 + i)))).toBeGreaterThan(0.1);
    windowed.dispose();
    full.dispose();
  });
});

describe('pre-quantized Phi-3 (bitsandbytes checkpoint: the fused tensors stored quantized)', () => {
  for (const [variant, q] of [['nf4-dq', { quantType: 'nf4', doubleQuant: true }], ['int8', { quantType: 'int8' }]] as const) {
    it(`phi4-mini ${variant}: loads from the saved checkpoint and gives transformers' ${variant} logits`, async () => {
      const weights: LoadedWeight[] = [];
      for await (const w of loadWeights(await localSource(`${REFERENCE_ROOT}phi4-mini`), { quantization: q })) weights.push(w);
      expect(weights.find((w) => w.name === 'model.layers.0.self_attn.qkv_proj.weight')?.kind).toBe(variant === 'int8' ? 'int8' : '4bit');
      const out = join(tmp, `phi4-mini-${variant}`);
      await saveBnbCheckpoint(out, weights, JSON.parse(readFileSync(`${REFERENCE_ROOT}phi4-mini/config.json`, 'utf8')), bnbQuantizationConfig(q));
      const m = await AutoModelForCausalLM.fromPretrained(out, { tokenizer: false, cpuKernels: 'exact' });
      expectParity('phi4-mini', variant, await m.forward(referenceOf('phi4-mini').input_ids, 0));
      m.dispose();
    });
  }
});
