#!/usr/bin/env node
// Perplexity of the default model on a fixed public-domain text (test/fixtures/text), per
// quantization, with the method of scripts/models/reference-perplexity.py (transformers): windows
// of --window tokens (default 1024), no BOS, each window scored from its second token on.
// Each 4-bit variant runs with the CPU's exact f32 kernels and with the fast integer kernels (the
// default), and prints how often their top-1 next-token predictions agree.
// --decode scores token by token (one forward() per position on the KV cache), as generation
// runs: the fast kernels serve inputs of up to 4 rows, so this is the mode that measures them;
// without it each window is one forward() of up to --window rows.
// --device gpu runs the same on the WebGPU backend (deviceMap 'gpu'; Node: the `webgpu` package):
// each 4-bit variant with the f32 decode GEMV ('exact') and on integer activations (matmul4.wgsl
// INT_ACT, 'fast'), with dot4I8Packed where the adapter has it (--no-packed-dot: without);
// --gpu-activations f16 makes 'fast' the f16 activations instead (matmul4.wgsl F16_COMPUTE).
//
//   node examples/node/perplexity.mjs [--quant f32,int8,nf4,nf4-dq,fp4] [--window 1024] [--max-tokens N] [--decode]
//     [--device cpu|gpu] [--gpu-activations int|f16] [--no-packed-dot] [--json]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as lowbit from '../../dist/index.js';

const { init, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig } = lowbit;

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const dir = fileURLToPath(new URL('../../.cache/models/smollm2-135m-instruct/', import.meta.url));
const text = readFileSync(fileURLToPath(new URL('../../test/fixtures/text/pride-and-prejudice-ch1-3.txt', import.meta.url)), 'utf8');
const window = Number(opt('--window', '1024'));
const QUANT = { f32: undefined, int8: { loadIn8bit: true }, nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, 'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }, fp4: { loadIn4bit: true, bnb4bitQuantType: 'fp4' } };
const variants = opt('--quant', Object.keys(QUANT).join(',')).split(',');
const json = args.includes('--json');
const decode = args.includes('--decode');
const gpu = opt('--device', 'cpu') === 'gpu';
const packedDot = !args.includes('--no-packed-dot');
const gpuActivations = opt('--gpu-activations', 'int');
if (gpuActivations !== 'int' && gpuActivations !== 'f16') throw new Error(`--gpu-activations takes int or f16, got ${gpuActivations}`);

await init();
const build = typeof lowbit.wasmBuild === 'function' ? lowbit.wasmBuild() : 'simd128';
const tok = await AutoTokenizer.fromPretrained(dir);
let ids = tok.encode(text, { addSpecialTokens: false });
if (args.includes('--max-tokens')) ids = ids.slice(0, Number(opt('--max-tokens')));
let reference = {};
try {
  reference = JSON.parse(readFileSync(fileURLToPath(new URL('../../test/fixtures/text/reference-perplexity.json', import.meta.url)), 'utf8'));
} catch {}
let adapter;
if (gpu) {
  const b = await lowbit.WebGpuBackend.create({ packedDot });
  adapter = `${b.name}, fast = ${gpuActivations === 'int' ? `integer activations${b.packedDot ? ' with dot4I8Packed' : ''}` : 'f16 activations'}`;
  b.dispose();
}
if (!json) console.log(`${ids.length} tokens, windows of ${window}, ${decode ? 'token by token (decode)' : 'one forward() per window'}, ${gpu ? adapter : `wasm build ${build}`}`);

/** NLL sum, count and the argmax of every scored position, for one model. */
async function score(lm) {
  let nll = 0;
  const top1 = [];
  for (let s = 0; s < ids.length; s += window) {
    const chunk = ids.slice(s, s + window);
    if (chunk.length < 2) break;
    const V = lm.config.vocabSize;
    const logits = decode ? undefined : await lm.forward(chunk, 0);
    for (let i = 0; i + 1 < chunk.length; i++) {
      const row = logits ? logits.subarray(i * V, (i + 1) * V) : await lm.forward([chunk[i]], i);
      let max = -Infinity;
      let arg = 0;
      for (let v = 0; v < V; v++) if (row[v] > max) ((max = row[v]), (arg = v));
      let sum = 0;
      for (const x of row) sum += Math.exp(x - max);
      nll += Math.log(sum) + max - row[chunk[i + 1]];
      top1.push(arg);
    }
  }
  return { ppl: Math.exp(nll / top1.length), top1 };
}

for (const v of variants) {
  const kernels = QUANT[v]?.loadIn4bit ? ['exact', 'fast'] : ['exact'];
  const res = {};
  for (const k of kernels) {
    const t0 = performance.now();
    const device = gpu ? { deviceMap: 'gpu', webgpu: { intActivations: k === 'fast' && gpuActivations === 'int', f16Activations: k === 'fast' && gpuActivations === 'f16', packedDot } } : { cpuKernels: k };
    const lm = await AutoModelForCausalLM.fromPretrained(dir, { ...(QUANT[v] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[v]) } : {}), maxPositions: window, ...device });
    res[k] = { ...(await score(lm)), seconds: (performance.now() - t0) / 1000 };
    lm.dispose();
  }
  const ref = reference?.results?.[v]?.perplexity;
  const row = { variant: v, ...(gpu ? { device: adapter } : { build }), mode: decode ? 'decode' : 'prefill', tokens: ids.length, exact: res.exact.ppl, ...(typeof ref === 'number' ? { transformers: ref } : {}) };
  if (res.fast) {
    let agree = 0;
    for (let i = 0; i < res.exact.top1.length; i++) agree += res.exact.top1[i] === res.fast.top1[i] ? 1 : 0;
    Object.assign(row, { fast: res.fast.ppl, fast_vs_exact: res.fast.ppl / res.exact.ppl - 1, top1_agreement: agree / res.exact.top1.length });
  }
  if (json) console.log(JSON.stringify(row));
  else
    console.log(
      `${v.padEnd(7)} perplexity exact ${res.exact.ppl.toFixed(3)}` +
        (res.fast ? `   fast ${res.fast.ppl.toFixed(3)} (${(100 * row.fast_vs_exact).toFixed(2)} %, top-1 agreement ${(100 * row.top1_agreement).toFixed(1)} %)` : '') +
        (typeof ref === 'number' ? `   (transformers: ${ref.toFixed(3)})` : ''),
    );
}
