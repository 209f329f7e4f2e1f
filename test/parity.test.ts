/**
 * Parity with transformers (test/fixtures/reference-logits, made by
 * scripts/fixtures/make_reference_logits.py with transformers 5.23 + bitsandbytes 0.50.2 on CPU):
 * - fp32: logits within 1e-4 and 32 greedy tokens identical;
 * - nf4 / fp4: our 4-bit weights are bit-identical to bitsandbytes', and both compute in f32, so
 *   only summation order differs: logits within 1e-4;
 * - nf4 / fp4 + double quant: the 4-bit codes are identical, but a few nested absmax codes are not
 *   (we pick the exactly nearest dynamic-map entry, bitsandbytes 0.50's CPU kernel a 65 536-bin
 *   lookup-table approximation, and torch's f32 mean differs from ours in the last bit; README,
 *   Formats). A different nested code rescales one 4-bit block, so logits move by ~1e-3. Bound:
 *   1e-2, and at most half the distance between bitsandbytes' own plain and
 *   double-quantized logits — i.e. we reproduce double quantization, not just plain 4-bit;
 * - int8: activations go through fp16 and int8 roundings that flip with tiny input changes
 *   (the fixture's own noise experiment moves logits by up to 0.043): max 0.1, mean 1e-2;
 * - nf4 with a bfloat16 / float16 compute dtype: input, weight, bias and output of every 4-bit
 *   linear rounded to the dtype as bitsandbytes does (one linear alone matches bitsandbytes bit for
 *   bit, crates/lowbit-core/tests/kernels_half.rs and a torch check). In a model an f32 sum in
 *   another order, or an upstream op one f32 ulp apart, now and then lands on the other side of a
 *   rounding boundary, and these random tiny models amplify a one-ulp flip of the dtype (their
 *   NF4-vs-fp32 logits differ by ~1). Measured: bf16 within 1e-6 on three models (8.8e-3 on
 *   llama3-rope), f16 4.6e-4 … 1.6e-3. Bound: no farther than bitsandbytes' own float32-compute
 *   logits are from its half-compute ones, and on average at most 2/3 of that distance.
 * The 4-bit variants above run with cpuKernels: 'exact'; the default fast kernels (int8
 * activations, integer dots) are checked against the same logits with the bound derived in
 * test/helpers/parity.ts (at most a quarter of bitsandbytes' own 4-bit-vs-fp32 distance).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, BitsAndBytesConfig, CpuBackend, QuantState, type LoadedWeight, type DenseWeight } from '../dist/index.js';
import { expectParity, PARITY_MODELS, PARITY_VARIANTS, REFERENCE_ROOT, referenceOf } from './helpers/parity.js';

const ROOT = REFERENCE_ROOT;
const MODELS = PARITY_MODELS;
const VARIANTS: typeof PARITY_VARIANTS = {
  ...PARITY_VARIANTS,
  'nf4-bf16': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitComputeDtype: 'bfloat16' },
  'nf4-f16': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitComputeDtype: 'float16' },
};

beforeAll(async () => {
  await init();
});

describe('parity with transformers', () => {
  for (const model of MODELS) {
    const ref = referenceOf(model);
    for (const [variant, q] of Object.entries(VARIANTS)) {
      // 4-bit with f32 compute runs the fast integer kernels by default: check both.
      const fastApplies = q?.loadIn4bit === true && q.bnb4bitComputeDtype === undefined;
      if (fastApplies) {
        it(`${model} ${variant} (fast kernels, the default)`, async () => {
          const m = await AutoModelForCausalLM.fromPretrained(`${ROOT}${model}`, { quantizationConfig: new BitsAndBytesConfig(q) });
          expectParity(model, variant, await m.forward(ref.input_ids, 0), true);
          m.dispose();
        });
      }
      it(`${model} ${variant}${fastApplies ? " (cpuKernels: 'exact')" : ''}`, async () => {
        const m = await AutoModelForCausalLM.fromPretrained(`${ROOT}${model}`, { ...(q ? { quantizationConfig: new BitsAndBytesConfig(q) } : {}), cpuKernels: 'exact' });
        const ours = await m.forward(ref.input_ids, 0);
        expectParity(model, variant, ours);
        if (variant === 'fp32') {
          const tokens = await m.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] });
          expect(tokens).toEqual(ref.fp32.greedy_tokens);
        }
        m.dispose();
      });
    }
  }
});

/** A CPU backend that rebuilds double-quantized absmax to f32 before building each layer, as the backend did before it kept them compressed. */
class F32AbsmaxBackend extends CpuBackend {
  override linear(weight: LoadedWeight, bias?: DenseWeight, options?: Parameters<CpuBackend['linear']>[2]) {
    if (weight.kind === '4bit' && weight.quantState.nested) {
      const st = weight.quantState;
      const flat = new QuantState({ quantType: st.quantType, blocksize: st.blocksize, dtype: st.dtype, shape: [...st.shape], code: st.code, absmax: st.absmaxF32() });
      weight = { ...weight, quantState: flat };
    }
    return super.linear(weight, bias, options);
  }
}

describe('double quant: compressed absmax on the CPU', () => {
  for (const model of MODELS) {
    it(`${model}: nf4-dq and fp4-dq logits equal those of the f32-absmax layers bit for bit, in less memory`, async () => {
      const ref = referenceOf(model);
      for (const variant of ['nf4-dq', 'fp4-dq', 'nf4']) {
        const quantizationConfig = new BitsAndBytesConfig(VARIANTS[variant]!);
        const nested = await AutoModelForCausalLM.fromPretrained(`${ROOT}${model}`, { quantizationConfig });
        const flatBackend = new F32AbsmaxBackend();
        const flat = await AutoModelForCausalLM.fromPretrained(`${ROOT}${model}`, { quantizationConfig, backend: flatBackend });
        const [a, b] = [await nested.forward(ref.input_ids, 0), await flat.forward(ref.input_ids, 0)];
        expect(Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length)), `${model} ${variant}`).toEqual(Array.from(new Uint32Array(b.buffer, b.byteOffset, b.length)));
        const [fa, fb] = [nested.getMemoryFootprint().total, flat.getMemoryFootprint().total];
        if (variant === 'nf4') expect(fa).toBe(fb);
        else expect(fa).toBeLessThan(fb);
        nested.dispose();
        flat.dispose();
        flatBackend.dispose();
      }
    });
  }
});
