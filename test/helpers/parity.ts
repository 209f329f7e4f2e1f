/**
 * The transformers parity fixtures (test/fixtures/reference-logits, made by
 * scripts/fixtures/make_reference_logits.py) and their tolerances, shared by the CPU
 * (test/parity.test.ts) and WebGPU (test/webgpu.test.ts) suites; test/parity.test.ts's header
 * says why each tolerance is what it is.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { BitsAndBytesConfig } from '../../dist/index.js';

export const REFERENCE_ROOT = fileURLToPath(new URL('../fixtures/reference-logits/', import.meta.url));
export const PARITY_MODELS = ['llama', 'llama3-rope', 'qwen2', 'qwen3', 'gpt2', 'gemma2', 'gemma3'];

type Config = ConstructorParameters<typeof BitsAndBytesConfig>[0] | undefined;
/** The variants every backend runs (f32 compute). */
export const PARITY_VARIANTS: Record<string, Config> = {
  fp32: undefined,
  nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' },
  'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true },
  fp4: { loadIn4bit: true, bnb4bitQuantType: 'fp4' },
  'fp4-dq': { loadIn4bit: true, bnb4bitQuantType: 'fp4', bnb4bitUseDoubleQuant: true },
  int8: { loadIn8bit: true },
};

export function referenceOf(model: string): { input_ids: number[]; fp32: { greedy_tokens: number[] } } {
  return JSON.parse(readFileSync(`${REFERENCE_ROOT}${model}/reference.json`, 'utf8'));
}

export function logitsOf(model: string, variant: string): Float32Array {
  const b = readFileSync(`${REFERENCE_ROOT}${model}/logits-${variant}.f32`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** max and mean |a - b| */
function distance(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

/**
 * Checks our logits against transformers' for `variant` with that variant's tolerance.
 *
 * `fastKernels`: the CPU's integer 4-bit kernels (kernels/matmul4_int.rs). They add two
 * roundings per product to the 4-bit format's own: the code table to 1/8191 of absmax and the
 * activations to 1/16382 of their block maximum, both far below the format's own rounding (NF4's
 * code steps are 0.08–0.3 of absmax). The bound keeps margin for outlier blocks: the logits may
 * move from bitsandbytes' by at most a quarter of bitsandbytes' own 4-bit-vs-fp32 distance (max
 * and mean), measured on the same fixture (they move far less).
 */
export function expectParity(model: string, variant: string, ours: Float32Array, fastKernels = false): void {
  const theirs = logitsOf(model, variant);
  expect(ours.length).toBe(theirs.length);
  const { max, mean } = distance(ours, theirs);
  if (fastKernels) {
    const formatEffect = distance(logitsOf(model, variant.replace(/-dq$/, '')), logitsOf(model, 'fp32'));
    expect(max).toBeLessThanOrEqual(formatEffect.max / 4);
    expect(mean).toBeLessThanOrEqual(formatEffect.mean / 4);
  } else if (variant.endsWith('-dq')) {
    // at most half of bitsandbytes' own plain-vs-double-quant distance
    const dqEffect = distance(logitsOf(model, variant.slice(0, -3)), theirs).max;
    expect(max).toBeLessThanOrEqual(1e-2);
    expect(max).toBeLessThanOrEqual(dqEffect / 2);
  } else if (variant === 'nf4-bf16' || variant === 'nf4-f16') {
    // no farther than bitsandbytes' f32-compute logits, on average at most 2/3 of that
    const halfEffect = distance(logitsOf(model, 'nf4'), theirs);
    expect(max).toBeLessThanOrEqual(halfEffect.max);
    expect(mean).toBeLessThanOrEqual((2 / 3) * halfEffect.mean);
  } else if (variant === 'int8') {
    expect(max).toBeLessThanOrEqual(0.1);
    expect(mean).toBeLessThanOrEqual(1e-2);
  } else {
    expect(max).toBeLessThanOrEqual(1e-4);
  }
}
