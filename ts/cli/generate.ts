/**
 * `lowbit generate`: loads a model (quantizing it while it streams in), generates from a prompt
 * and streams the text to stdout. With --json, stdout carries one JSON object per line instead:
 * {"type":"text","text":…} per streamed piece, then {"type":"done",…} with the ids and timings.
 * Statistics and progress go to stderr (progress only when stderr is a terminal).
 */
import { parseArgs } from 'node:util';
import { TextStreamer } from '../generation/streamer.js';
import type { ChatMessage } from '../tokenizer/index.js';
import { intOption, MiB, SAMPLING_ARGS, samplingOptions, UsageError } from './common.js';
import { checkModelArgs, loadedLine, loadModel, MODEL_ARGS, MODEL_USAGE } from './load.js';

export const GENERATE_USAGE = `lowbit generate --model <dir | file.gguf | org/name | url> [--prompt TEXT] [options]

  The prompt is --prompt, else the positional words, else stdin when it is not a terminal.
${MODEL_USAGE}
  --prompt, -p TEXT      the user message (rendered with the model's chat template)
  --system TEXT          a system message before it
  --raw                  use the prompt as is, without the chat template
  --max-new-tokens N     (default 128)
  --sample               sample instead of greedy; --temperature T (default 0.7), --top-k K,
                         --top-p P (default 0.9), --seed N (default: random)
  --stop TEXT            stop once the text contains TEXT (repeatable)
  --json                 JSON lines on stdout instead of text`;

function readStdin(): Promise<string> {
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    process.stdin.on('data', (c: Buffer) => chunks.push(c));
    process.stdin.on('end', () => ok(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', fail);
  });
}

export async function generate(argv: string[], signal: AbortSignal): Promise<void> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...MODEL_ARGS,
      prompt: { type: 'string', short: 'p' },
      system: { type: 'string' },
      raw: { type: 'boolean', default: false },
      'max-new-tokens': { type: 'string', default: '128' },
      ...SAMPLING_ARGS,
      stop: { type: 'string', multiple: true },
    },
  });
  checkModelArgs(v, 'generate');
  const maxNewTokens = intOption('max-new-tokens', v['max-new-tokens'])!;
  const sampling = samplingOptions(v);
  let prompt = v.prompt ?? (positionals.length > 0 ? positionals.join(' ') : undefined);
  if (prompt === undefined && !process.stdin.isTTY) prompt = (await readStdin()).replace(/\n$/, '');
  if (prompt === undefined || prompt === '') throw new UsageError('generate needs a prompt: --prompt TEXT, words after the options, or stdin');

  const json = v.json!;
  const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  const loaded = await loadModel(v, 'generate', signal);
  const { model, loadSeconds } = loaded;
  try {
    const tok = model.tokenizer;
    if (tok === undefined) throw new UsageError(`this model has no tokenizer lowbit can use (${model.tokenizerUnavailable ?? 'none found'}), so it cannot take a text prompt`);
    const messages: ChatMessage[] = [...(v.system !== undefined ? [{ role: 'system', content: v.system }] : []), { role: 'user', content: prompt }];
    const chat = !v.raw && tok.chatTemplate !== undefined;
    const inputIds = chat ? tok.applyChatTemplate(messages, { addGenerationPrompt: true, tokenize: true }) : tok.encode(v.system !== undefined ? `${v.system}\n${prompt}` : prompt);
    if (!json) process.stderr.write(`${loadedLine(loaded, v.model!)}\n`);

    let text = '';
    let first = 0;
    const ids: number[] = [];
    const t1 = performance.now();
    const streamer = new TextStreamer(tok, (piece, final) => {
      text += piece;
      if (json) {
        if (piece !== '') out({ type: 'text', text: piece });
      } else process.stdout.write(final ? `${piece}\n` : piece);
    });
    await model.generate({
      inputIds,
      maxNewTokens,
      ...sampling,
      ...(v.stop ? { stop: v.stop } : {}),
      signal,
      streamer,
      onToken: (id) => {
        if (ids.push(id) === 1) first = performance.now();
      },
    });
    const t2 = performance.now();
    const prefillSeconds = ids.length > 0 ? (first - t1) / 1000 : 0;
    const decodeTokensPerSecond = ids.length > 1 ? (ids.length - 1) / ((t2 - first) / 1000) : 0;
    const footprint = model.getMemoryFootprint();
    if (json) {
      const r3 = (x: number) => Math.round(x * 1000) / 1000;
      out({
        type: 'done', text, tokens: ids, promptTokens: inputIds.length, newTokens: ids.length, chatTemplate: chat,
        loadSeconds: r3(loadSeconds), prefillSeconds: r3(prefillSeconds), decodeTokensPerSecond: r3(decodeTokensPerSecond),
        devices: loaded.devices, threads: loaded.threads, memoryBytes: footprint.total,
      });
    } else {
      process.stderr.write(`${inputIds.length} prompt tokens, prefill ${prefillSeconds.toFixed(2)} s; ${ids.length} new tokens, ${decodeTokensPerSecond.toFixed(1)} tokens/s; memory ${MiB(footprint.total)}\n`);
    }
  } finally {
    model.dispose();
  }
}
