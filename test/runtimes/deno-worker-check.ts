// Deno side of test/worker-deno.test.ts: lowbit/worker in Deno (a Web Worker there too). Loads the
// tiny Llama of test/fixtures/reference-logits/llama (a local folder, fp32, no tokenizer) in a
// worker, generates its greedy tokens with onToken streaming, and prints one JSON line.
// Run from the repository root (Deno resolves the worker's npm imports through package.json).
import { fromPretrainedInWorker } from '../../dist/worker.js';

const dir = new URL('../fixtures/reference-logits/llama/', import.meta.url).pathname;
const ref = JSON.parse(await Deno.readTextFile(`${dir}reference.json`)) as { input_ids: number[]; fp32: { greedy_tokens: number[] } };
const model = await fromPretrainedInWorker(dir, { tokenizer: false, maxPositions: 64 });
const streamed: number[] = [];
const ids = await model.generate({ inputIds: ref.input_ids, maxNewTokens: ref.fp32.greedy_tokens.length, eosTokenIds: [], onToken: (t) => streamed.push(t) });
const info = model.info;
model.dispose();
console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, ids, streamed, reference: ref.fp32.greedy_tokens, threads: info.threads, deviceMap: [...new Set(Object.values(info.deviceMap))] }));
