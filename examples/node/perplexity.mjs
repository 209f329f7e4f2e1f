#!/usr/bin/env node
// Perplexity of the default model on a fixed public-domain text (test/fixtures/text), per
// quantization, with the method of scripts/models/reference-perplexity.py (transformers): windows
// of --window tokens (default 1024), no BOS, each window scored from its second token on.
//
//   node examples/node/perplexity.mjs [--quant f32,int8,nf4,nf4-dq,fp4] [--window 1024] [--max-tokens N]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { init, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig } from '../../dist/index.js';

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const dir = fileURLToPath(new URL('../../.cache/models/smollm2-135m-instruct/', import.meta.url));
const text = readFileSync(fileURLToPath(new URL('../../test/fixtures/text/pride-and-prejudice-ch1-3.txt', import.meta.url)), 'utf8');
const window = Number(opt('--window', '1024'));
const QUANT = { f32: undefined, int8: { loadIn8bit: true }, nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, 'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }, fp4: { loadIn4bit: true, bnb4bitQuantType: 'fp4' } };
const variants = opt('--quant', Object.keys(QUANT).join(',')).split(',');

await init();
const tok = await AutoTokenizer.fromPretrained(dir);
let ids = tok.encode(text, { addSpecialTokens: false });
if (args.includes('--max-tokens')) ids = ids.slice(0, Number(opt('--max-tokens')));
let reference = {};
try {
  reference = JSON.parse(readFileSync(fileURLToPath(new URL('../../test/fixtures/text/reference-perplexity.json', import.meta.url)), 'utf8'));
} catch {}
console.log(`${ids.length} tokens, windows of ${window}`);
for (const v of variants) {
  const t0 = performance.now();
  const lm = await AutoModelForCausalLM.fromPretrained(dir, { ...(QUANT[v] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[v]) } : {}), maxPositions: window });
  let nll = 0;
  let count = 0;
  for (let s = 0; s < ids.length; s += window) {
    const chunk = ids.slice(s, s + window);
    if (chunk.length < 2) break;
    const logits = await lm.forward(chunk, 0);
    const V = lm.config.vocabSize;
    for (let i = 0; i + 1 < chunk.length; i++) {
      const row = logits.subarray(i * V, (i + 1) * V);
      let max = -Infinity;
      for (const x of row) if (x > max) max = x;
      let sum = 0;
      for (const x of row) sum += Math.exp(x - max);
      nll += Math.log(sum) + max - row[chunk[i + 1]];
      count++;
    }
  }
  lm.dispose();
  const ppl = Math.exp(nll / count);
  const ref = reference?.results?.[v]?.perplexity;
  console.log(`${v.padEnd(7)} perplexity ${ppl.toFixed(3)}${typeof ref === 'number' ? `   (transformers: ${ref.toFixed(3)})` : ''}   ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
