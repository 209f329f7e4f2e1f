// Deno side of test/cache.test.ts: loads 'org/llama' from the hub-shaped server at argv[0]
// through the model cache (HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN from the environment, as
// Node reads them) and prints one JSON line: the logits of a few tokens and the download events.
//   deno run --allow-read --allow-write --allow-env --allow-net test/runtimes/deno-cache-check.ts <hub url>
import * as lowbit from '../../dist/index.js';

const endpoint = Deno.args[0]!;
await lowbit.init();
const downloads: { file: string; done: number; total: number }[] = [];
const model = await lowbit.AutoModelForCausalLM.fromPretrained('org/llama', {
  endpoint,
  tokenizer: false,
  onProgress: (e) => {
    if (e.phase === 'download' && e.download) downloads.push({ file: e.download.file, done: e.download.fileBytesDone, total: e.download.fileBytesTotal });
  },
});
const logits = await model.forward([1, 72, 101, 108, 108, 111], 0);
model.dispose();
console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, logits: Array.from(logits), downloads }));
