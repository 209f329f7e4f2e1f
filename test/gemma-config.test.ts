/**
 * Gemma 2 / Gemma 3 config.json as the hub's checkpoints write it (google/gemma-2-2b-it,
 * google/gemma-3-1b-it, the text config of google/gemma-3-4b-it; numbers copied from those
 * files) and as transformers 5 saves it (nested rope_parameters, layer_types): the fields the
 * tiny parity fixtures cannot show (real sizes, default patterns, rope scaling on the global
 * layers only), and the errors for what lowbit does not run.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { init, LowbitError } from '../dist/index.js';
import { parseConfig } from '../dist/models/architectures.js';
import { configJsonFields, validateConfig } from '../dist/models/validate.js';

beforeAll(async () => {
  await init();
});

const GEMMA2_2B = {
  model_type: 'gemma2', hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 26, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh', max_position_embeddings: 8192, rms_norm_eps: 1e-6, rope_theta: 10000.0, vocab_size: 256000, query_pre_attn_scalar: 256,
  sliding_window: 4096, attn_logit_softcapping: 50.0, final_logit_softcapping: 30.0, bos_token_id: 2, eos_token_id: [1, 107], tie_word_embeddings: true,
};

const GEMMA3_1B = {
  model_type: 'gemma3_text', hidden_size: 1152, intermediate_size: 6912, num_hidden_layers: 26, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh', max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 1000000.0, rope_local_base_freq: 10000.0, rope_scaling: null,
  vocab_size: 262144, query_pre_attn_scalar: 256, sliding_window: 512, sliding_window_pattern: 6, final_logit_softcapping: null, attn_logit_softcapping: null,
  bos_token_id: 2, eos_token_id: [1, 106],
};

const check = (c: ReturnType<typeof parseConfig>) => validateConfig(c, 'config.json', configJsonFields(c));

describe('Gemma config.json', () => {
  it('Gemma 2 (2B): every other layer sliding from layer 0, soft-caps, tied head, query_pre_attn_scalar', () => {
    const c = parseConfig(GEMMA2_2B);
    check(c);
    expect(c).toMatchObject({ family: 'gemma2', headDim: 256, numKvHeads: 4, queryPreAttnScalar: 256, attnSoftcap: 50, finalSoftcap: 30, slidingWindow: 4096, tieWordEmbeddings: true, activation: 'gelu_pytorch_tanh', eosTokenIds: [1, 107] });
    expect((c as unknown as { slidingLayers: boolean[] }).slidingLayers).toEqual(Array.from({ length: 26 }, (_, i) => i % 2 === 0));
    expect((c as unknown as { localRopeTheta?: number }).localRopeTheta).toBeUndefined();
  });

  it('Gemma 3 (1B, hub style): local base 10000 on the sliding layers, 1e6 on every 6th, no soft-capping', () => {
    const c = parseConfig(GEMMA3_1B) as unknown as Record<string, unknown>;
    check(c as never);
    expect(c).toMatchObject({ family: 'gemma3', ropeTheta: 1e6, localRopeTheta: 10000, slidingWindow: 512, queryPreAttnScalar: 256, tieWordEmbeddings: true });
    expect(c.attnSoftcap).toBeUndefined();
    expect(c.finalSoftcap).toBeUndefined();
    expect(c.ropeLinearFactor).toBeUndefined();
    expect(c.slidingLayers).toEqual(Array.from({ length: 26 }, (_, i) => (i + 1) % 6 !== 0));
  });

  it('Gemma 3 (4B text config): linear rope scaling applies to the global layers (rope_scaling), as does transformers 5\'s nested rope_parameters', () => {
    const hub = parseConfig({ ...GEMMA3_1B, num_hidden_layers: 34, rope_scaling: { factor: 8.0, rope_type: 'linear' } }) as unknown as Record<string, unknown>;
    expect(hub).toMatchObject({ ropeTheta: 1e6, ropeLinearFactor: 8, localRopeTheta: 10000 });
    const nested = parseConfig({
      ...GEMMA3_1B, rope_theta: undefined, rope_local_base_freq: undefined, layer_types: Array.from({ length: 26 }, (_, i) => ((i + 1) % 3 ? 'sliding_attention' : 'full_attention')),
      rope_parameters: { full_attention: { rope_type: 'linear', factor: 8.0, rope_theta: 500000 }, sliding_attention: { rope_type: 'default', rope_theta: 20000 } },
    }) as unknown as Record<string, unknown>;
    expect(nested).toMatchObject({ ropeTheta: 500000, ropeLinearFactor: 8, localRopeTheta: 20000 });
    expect(nested.slidingLayers).toEqual(Array.from({ length: 26 }, (_, i) => (i + 1) % 3 !== 0));
  });

  it('refuses what it does not run, with the field named', () => {
    const code = (c: Record<string, unknown>) => {
      try {
        check(parseConfig(c));
      } catch (e) {
        expect(e).toBeInstanceOf(LowbitError);
        return `${(e as LowbitError).code}: ${(e as LowbitError).message}`;
      }
      return 'accepted';
    };
    expect(code({ ...GEMMA2_2B, layer_types: ['sliding_attention'] })).toMatch(/^MALFORMED_FILE: .*layer_types/);
    expect(code({ ...GEMMA2_2B, hidden_activation: 'silu' })).toMatch(/^UNSUPPORTED_DTYPE: .*hidden_activation 'silu'/);
    expect(code({ ...GEMMA2_2B, attn_logit_softcapping: -1 })).toMatch(/^MALFORMED_FILE: .*attn_logit_softcapping/);
    expect(code({ ...GEMMA2_2B, sliding_window: 0.5 })).toMatch(/^MALFORMED_FILE: .*sliding_window/);
    expect(code({ ...GEMMA3_1B, rope_scaling: { rope_type: 'yarn', factor: 8 } })).toMatch(/^UNSUPPORTED_DTYPE: .*rope type 'yarn'/);
    expect(code({ ...GEMMA3_1B, use_bidirectional_attention: true })).toMatch(/^UNSUPPORTED_DTYPE: .*bidirectional/);
    expect(code({ ...GEMMA3_1B, model_type: 'gemma3' })).toMatch(/^UNSUPPORTED_DTYPE: .*model_type 'gemma3' is not supported \(supported: .*gemma2, gemma3_text/);
  });
});
