// Deno side of the WebGPU parity test (test/webgpu-deno.test.ts): the transformers fixtures of
// test/parity.test.ts on Deno's own navigator.gpu (wgpu; shaders compiled by naga instead of
// Dawn's Tint), printing one JSON line with the differences for the Node side to check; and decode
// attention against a long context (the split path) next to the CPU backend.
//   node_modules/.bin/deno run --allow-read --allow-env test/runtimes/deno-webgpu-check.ts
import * as lowbit from '../../dist/index.js';
import { splitAttentionCheck } from './attention-split-check.js';
import { f16ActivationCheck } from './f16-activation-check.js';
import { intActivationBound } from '../helpers/int-activations.ts';

const ROOT = new URL('../fixtures/reference-logits/', import.meta.url);
const MODELS = ['llama', 'llama3-rope', 'qwen2', 'gpt2'];
const VARIANTS: Record<string, Record<string, unknown> | undefined> = {
  fp32: undefined,
  nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' },
  'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true },
  fp4: { loadIn4bit: true, bnb4bitQuantType: 'fp4' },
  'fp4-dq': { loadIn4bit: true, bnb4bitQuantType: 'fp4', bnb4bitUseDoubleQuant: true },
  int8: { loadIn8bit: true },
};

async function f32(url: URL): Promise<Float32Array> {
  const b = await Deno.readFile(url);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

await lowbit.init();
let gpu: lowbit.WebGpuBackend;
try {
  gpu = await lowbit.WebGpuBackend.create();
} catch (e) {
  console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, skip: (e as Error).message }));
  Deno.exit(0);
}
const adapter = gpu.name;
const attention = await splitAttentionCheck(lowbit, gpu);
gpu.dispose();

const results: Record<string, unknown>[] = [];
for (const model of MODELS) {
  const dir = new URL(`${model}/`, ROOT);
  const ref = JSON.parse(await Deno.readTextFile(new URL('reference.json', dir)));
  for (const [variant, q] of Object.entries(VARIANTS)) {
    const m = await lowbit.AutoModelForCausalLM.fromPretrained(dir.pathname, { deviceMap: 'gpu', ...(q ? { quantizationConfig: new lowbit.BitsAndBytesConfig(q) } : {}) });
    const ours = await m.forward(ref.input_ids, 0);
    const theirs = await f32(new URL(`logits-${variant}.f32`, dir));
    let max = 0;
    let sum = 0;
    for (let i = 0; i < ours.length; i++) {
      const d = Math.abs(ours[i]! - theirs[i]!);
      max = Math.max(max, d);
      sum += d;
    }
    const r: Record<string, unknown> = { model, variant, length: ours.length, refLength: theirs.length, max, mean: sum / ours.length };
    if (variant.endsWith('-dq')) {
      const plain = await f32(new URL(`logits-${variant.slice(0, -3)}.f32`, dir));
      let dq = 0;
      for (let i = 0; i < plain.length; i++) dq = Math.max(dq, Math.abs(plain[i]! - theirs[i]!));
      r.dqEffect = dq;
    }
    if (variant === 'fp32') {
      r.tokens = await m.generate({ inputIds: ref.input_ids, maxNewTokens: 32, eosTokenIds: [] });
      r.refTokens = ref.fp32.greedy_tokens;
    }
    m.dispose();
    results.push(r);
  }
}
// a Q8_0 GGUF on the GPU: its linears run natively (matmul_blockwise8.wgsl under naga), against
// transformers' own load of the file
const GGUF = new URL('../fixtures/gguf-model/', import.meta.url);
const ggufRef = JSON.parse(await Deno.readTextFile(new URL('reference.json', GGUF)));
const q8 = await lowbit.AutoModelForCausalLM.fromPretrained(new URL('llama-q8_0.gguf', GGUF).pathname, { deviceMap: 'gpu', tokenizer: false });
const q8Logits = await q8.forward(ggufRef.input_ids, 0);
const q8Want = await f32(new URL('logits-q8_0.f32', GGUF));
let q8Max = 0;
for (let i = 0; i < q8Want.length; i++) q8Max = Math.max(q8Max, Math.abs(q8Logits[i]! - q8Want[i]!));
const q8_0 = { max: q8Max, length: q8Logits.length, refLength: q8Want.length, conversions: q8.formatConversions, oProjBytes: q8.getMemoryFootprint().byModule['model.layers.0.self_attn.o_proj'] };
q8.dispose();
// The 4-bit decode GEMV on integer activations (matmul4.wgsl INT_ACT) under naga: nf4 and nf4 +
// double quant against the CPU's exact product, as the worst ratio of the error to the derived
// bound (test/helpers/int-activations.ts), and with / without dot4I8Packed (the same bits)
const intActivations: Record<string, unknown>[] = [];
{
  const rand = (n: number, seed: number, scale: number) => {
    let s = seed >>> 0 || 1;
    return new Float32Array(n).map(() => (((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1) * scale);
  };
  const cpu = new lowbit.CpuBackend();
  cpu.kernels = 'exact';
  const dot = await lowbit.WebGpuBackend.create({ intActivations: true, packedDot: true });
  const unpacked = await lowbit.WebGpuBackend.create({ intActivations: true, packedDot: false });
  const [n, k, bs] = [45, 576, 64];
  for (const dq of [false, true]) {
    const { packed, quantState } = lowbit.quantize4bit(rand(n * k, 3, 0.2), { quantType: 'nf4', blocksize: bs, compressStatistics: dq, shape: [n, k] });
    const w = { kind: '4bit' as const, name: 'w', packed, quantState };
    const x = rand(k, 5, 2);
    for (let i = 7; i < k; i += 97) x[i] = 30;
    const run = async (b: lowbit.Backend) => b.read(b.linearForward(b.fromHost(x, 1, k), b.linear(w)));
    const [want, got, other] = [await run(cpu), await run(dot), await run(unpacked)];
    const deq = lowbit.dequantize4bit(packed, quantState, { outDtype: 'float32' }) as Float32Array;
    const bound = intActivationBound(x, deq, quantState.absmaxF32(), bs, n, k, false);
    let worst = 0;
    for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(got[j]! - want[j]!) / bound[j]!);
    intActivations.push({ variant: dq ? 'nf4-dq' : 'nf4', packedDot: dot.packedDot, worstRatio: worst, sameWithoutDot4: got.every((v, j) => Object.is(v, other[j])), rows: got.length });
  }
  dot.dispose();
  unpacked.dispose();
}
// the 4-bit decode GEMV on f16 activations under naga, where wgpu gives shader-f16
const f16Activations = await f16ActivationCheck(lowbit);
console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, adapter, attention, results, q8_0, intActivations, f16Activations }));
