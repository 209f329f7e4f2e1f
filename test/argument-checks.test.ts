/**
 * Property tests of the argument and config checks (issue 11), with a seeded generator of
 * arbitrary values (numbers of every kind, strings, arrays, typed arrays, objects, null):
 * - checkTokenIds accepts exactly the arrays / typed arrays of integers in [0, vocab), returns
 *   them unchanged, and refuses everything else with INVALID_ARGUMENT (never coerces);
 * - checkGenerateOptions and parseConfig + validateConfig only ever throw LowbitError;
 * - a config validateConfig accepts satisfies the bounds and divisibility it promises.
 */
import { describe, expect, it } from 'vitest';
import { LowbitError } from '../dist/index.js';
import { checkGenerateOptions, checkTokenIds } from '../dist/models/generate-checks.js';
import { parseConfig } from '../dist/models/architectures.js';
import { checkRuntimeMemory, configJsonFields, MODEL_LIMITS, validateConfig } from '../dist/models/validate.js';
import { moduleSizes } from '../dist/models/module-sizes.js';

/** xorshift32 */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, pick };
}
type R = ReturnType<typeof rng>;

const SPECIAL = [0, 1, -1, 0.5, 1.7, -0, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 53, Number.MAX_VALUE, Number.MIN_VALUE, 255, 256, 1e9];

function arbitrary(r: R, depth = 0): unknown {
  switch (r.int(depth > 2 ? 6 : 9)) {
    case 0: return r.pick(SPECIAL);
    case 1: return r.int(300);
    case 2: return r.pick(['', '12', 'abc', '1e3', ' 5', 'NaN']);
    case 3: return r.pick([null, undefined, true, false]);
    case 4: return BigInt(r.int(1000));
    case 5: return r.next() * 600 - 100;
    case 6: return Array.from({ length: r.int(5) }, () => arbitrary(r, depth + 1));
    case 7: return r.pick([Uint32Array, Int32Array, Float32Array, Uint8Array, Float64Array]).from(Array.from({ length: r.int(4) }, () => r.pick([1, 2, 255, 256, 1.5, -1])));
    default: return Object.fromEntries(Array.from({ length: r.int(4) }, () => [r.pick(['inputIds', 'prompt', 'messages', 'tokenizer', 'signal', 'stop', 'maxNewTokens', 'streamer', 'onToken', 'eosTokenIds', 'temperature']), arbitrary(r, depth + 1)]));
  }
}

function lowbitOnly(f: () => unknown): LowbitError | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (!(e instanceof LowbitError)) throw new Error(`not a LowbitError: ${String(e)}`, { cause: e });
    return e;
  }
}

describe('checkTokenIds', () => {
  it('accepts exactly arrays of integers in [0, vocab), unchanged; refuses the rest with INVALID_ARGUMENT', () => {
    const r = rng(11);
    const vocab = 256;
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const v = r.next() < 0.3 ? Array.from({ length: 1 + r.int(4) }, () => r.int(vocab)) : arbitrary(r);
      const list = Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView)) ? Array.from(v as ArrayLike<unknown>) : undefined;
      const valid = list !== undefined && list.every((x) => (typeof x === 'number' || typeof x === 'bigint') && Number.isInteger(Number(x)) && Number(x) >= 0 && Number(x) < vocab);
      const e = lowbitOnly(() => checkTokenIds(v, vocab));
      if (valid) {
        expect(e, `refused ${String(v)}`).toBeUndefined();
        expect(Array.from(checkTokenIds(v, vocab))).toEqual(list!.map((x) => Number(x) + 0)); // + 0: -0 is token 0
        accepted++;
      } else {
        expect(e?.code, `accepted ${String(v)}`).toBe('INVALID_ARGUMENT');
      }
    }
    expect(accepted).toBeGreaterThan(1000);
  });
});

describe('checkGenerateOptions', () => {
  it('throws nothing but LowbitError for arbitrary options', () => {
    const r = rng(5);
    let refused = 0;
    for (let i = 0; i < 5000; i++) if (lowbitOnly(() => checkGenerateOptions(arbitrary(r)))) refused++;
    expect(refused).toBeGreaterThan(0);
  });
});

describe('config validation', () => {
  const BASE: Record<string, unknown> = {
    model_type: 'llama', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
    intermediate_size: 128, vocab_size: 256, max_position_embeddings: 128, rms_norm_eps: 1e-6, eos_token_id: 2,
  };
  it('a mutated config.json is accepted only when its numbers are in bounds and agree, else MALFORMED_FILE / UNSUPPORTED_DTYPE', () => {
    const r = rng(99);
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const c: Record<string, unknown> = { ...BASE };
      for (let k = r.int(3); k >= 0; k--) c[r.pick(Object.keys(BASE))] = r.next() < 0.5 ? arbitrary(r) : r.pick([1, 2, 3, 4, 8, 16, 32, 64, 65536, 65537, 2 ** 22, 1e9]);
      const e = lowbitOnly(() => validateConfig(parseConfig(c), 'config.json', configJsonFields({ family: 'llama', modelType: 'llama' })));
      if (e) {
        expect(['MALFORMED_FILE', 'UNSUPPORTED_DTYPE']).toContain(e.code);
        continue;
      }
      accepted++;
      const d = parseConfig(c);
      for (const [v, max] of [[d.hiddenSize, MODEL_LIMITS.hiddenSize], [d.numLayers, MODEL_LIMITS.layers], [d.headDim, MODEL_LIMITS.headDim], [d.vocabSize, MODEL_LIMITS.vocabSize], [d.intermediateSize, MODEL_LIMITS.intermediateSize]] as const) {
        expect(Number.isInteger(v) && v >= 1 && v <= max).toBe(true);
      }
      expect(d.numHeads % d.numKvHeads).toBe(0);
      expect(d.headDim % 2).toBe(0);
      expect(d.normEps > 0 && d.normEps < 1).toBe(true);
    }
    expect(accepted).toBeGreaterThan(100);
  });
});

describe('wasm32 memory check', () => {
  // Llama 2 7B's shapes: 32 layers, hidden 4096, MLP 11008, 32 heads, vocab 32000, f16 weights.
  const config = parseConfig({ model_type: 'llama', hidden_size: 4096, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, intermediate_size: 11008, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5 });
  const infos = (quantize: boolean) => {
    const out: Array<{ name: string; shape: number[]; bytes: number; quantize: boolean }> = [];
    const t = (name: string, shape: number[], q = false) => out.push({ name, shape, bytes: shape.reduce((a, b) => a * b, 1) * 2, quantize: q && quantize });
    t('model.embed_tokens.weight', [32000, 4096]);
    t('model.norm.weight', [4096]);
    t('lm_head.weight', [32000, 4096]);
    for (let l = 0; l < 32; l++) {
      for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) t(`model.layers.${l}.self_attn.${n}.weight`, [4096, 4096], true);
      for (const n of ['gate_proj', 'up_proj']) t(`model.layers.${l}.mlp.${n}.weight`, [11008, 4096], true);
      t(`model.layers.${l}.mlp.down_proj.weight`, [4096, 11008], true);
      t(`model.layers.${l}.input_layernorm.weight`, [4096]);
      t(`model.layers.${l}.post_attention_layernorm.weight`, [4096]);
    }
    return out;
  };
  const nf4 = { quantType: 'nf4' as const, blocksize: 64 };
  const largest = 11008 * 4096 * 4;
  const check = (quantize: boolean, maxPositions: number, threads: number) =>
    lowbitOnly(() => checkRuntimeMemory(config, moduleSizes(config, infos(quantize), quantize ? nf4 : undefined, maxPositions), () => 'cpu', maxPositions, quantize ? largest : 0, threads));

  it('a 7B model in NF4 fits with 2 threads at 1024 positions, not with one; its 4096-position f32 KV cache alone is 4 GiB', () => {
    expect(check(true, 1024, 2)).toBeUndefined();
    expect(check(true, 1024, 1)?.code).toBe('OUT_OF_MEMORY');
    expect(check(true, 4096, 8)?.message).toMatch(/KV cache 4\.00 GiB/);
    expect(check(false, 1024, 2)?.code).toBe('OUT_OF_MEMORY');
    expect(check(false, 1024, 8)).toBeUndefined();
    expect(check(true, 1 << 20, 8)?.message).toMatch(/maxPositions 1048576/);
  });
});
