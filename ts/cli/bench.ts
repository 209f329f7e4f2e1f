/**
 * `lowbit bench`: how fast a model runs here, measured as bench/cpu.mjs measures the models
 * (prefill = a generate() of one new token after a P-token prompt: the prompt's tokens per
 * second; decode = greedy generation, tokens after the first per second), median of --runs
 * after one warm-up run. Prompt ids are fixed (no tokenizer needed), so runs compare.
 */
import { parseArgs } from 'node:util';
import { intOption, MiB } from './common.js';
import { loadedLine, loadModel, MODEL_ARGS, MODEL_USAGE } from './load.js';
import { progressBars } from './progress.js';

export const BENCH_USAGE = `lowbit bench --model <dir | file.gguf | org/name | url> [options]

  Prefill and decode tokens/s of a model on this machine (median of --runs after a warm-up).
${MODEL_USAGE}
  --prompt-tokens N      prefill length (default 64)
  --new-tokens N         decode length (default 32)
  --runs N               measured runs (default 3)
  --json                 one JSON object on stdout`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function bench(argv: string[], signal: AbortSignal): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      ...MODEL_ARGS,
      'prompt-tokens': { type: 'string', default: '64' },
      'new-tokens': { type: 'string', default: '32' },
      runs: { type: 'string', default: '3' },
    },
  });
  const promptTokens = intOption('prompt-tokens', v['prompt-tokens'], 1)!;
  const newTokens = intOption('new-tokens', v['new-tokens'], 2)!;
  const runs = intOption('runs', v.runs, 1)!;
  // the cache must hold the prompt and the decoded tokens
  const needed = promptTokens + newTokens;
  const loaded = await loadModel({ ...v, 'max-positions': v['max-positions'] ?? String(Math.max(needed, 64)) }, 'bench', signal);
  const { model } = loaded;
  try {
    const json = v.json!;
    if (!json) process.stderr.write(`${loadedLine(loaded, v.model!)}\n`);
    const vocab = model.config.vocabSize;
    const prompt = Array.from({ length: promptTokens }, (_, i) => ((i * 37) % 1000 + 5) % vocab);
    const progress = progressBars(process.stderr.isTTY === true && !json);
    const step = progress.stage('bench', runs + 1, 'items');
    const prefill: number[] = [];
    const decode: number[] = [];
    try {
      for (let r = 0; r <= runs; r++) {
        let s = performance.now();
        await model.generate({ inputIds: prompt, maxNewTokens: 1, eosTokenIds: [], signal });
        const p = promptTokens / ((performance.now() - s) / 1000);
        let first = 0;
        let n = 0;
        await model.generate({
          inputIds: prompt.slice(0, 8),
          maxNewTokens: newTokens,
          eosTokenIds: [],
          signal,
          onToken: () => {
            if (++n === 1) first = performance.now();
          },
        });
        s = performance.now();
        const d = (n - 1) / ((s - first) / 1000);
        // run 0 warms up (first-use compilation, page faults)
        if (r > 0) {
          prefill.push(p);
          decode.push(d);
        }
        step(r + 1);
      }
    } finally {
      progress.stop();
    }
    const result = {
      type: 'bench', model: v.model, quant: loaded.quant, devices: loaded.devices, threads: loaded.threads,
      promptTokens, newTokens, runs,
      prefillTokensPerSecond: Math.round(median(prefill) * 10) / 10,
      decodeTokensPerSecond: Math.round(median(decode) * 10) / 10,
      loadSeconds: Math.round(loaded.loadSeconds * 1000) / 1000,
      memoryBytes: model.getMemoryFootprint().total,
    };
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(`prefill ${result.prefillTokensPerSecond} tokens/s (${promptTokens}-token prompt)\ndecode  ${result.decodeTokensPerSecond} tokens/s (${newTokens} tokens)\n`);
      process.stderr.write(`median of ${runs} run(s) after a warm-up; memory ${MiB(result.memoryBytes)}\n`);
    }
  } finally {
    model.dispose();
  }
}
