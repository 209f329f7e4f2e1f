/**
 * `lowbit chat`: a conversation with the model's chat template that keeps the KV cache between
 * turns (a ChatSession: each turn runs only the new tokens). In a terminal it is interactive
 * (readline: history, line editing); from a pipe, every line of stdin is one user message.
 *
 *   /reset   forget the conversation (and the cache)     /exit (or Ctrl-D)   leave
 *   Ctrl-C   while the model answers: stop that answer (the turn is dropped, the chat goes on);
 *            at the prompt: leave with exit code 130
 *
 * With --json, stdout carries JSON lines: {"type":"text","text"} per streamed piece, then
 * {"type":"turn", …} with the turn's counts ({"type":"interrupted"} for a stopped answer,
 * {"type":"reset"} after /reset).
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { LowbitError } from '../errors.js';
import { TextStreamer } from '../generation/streamer.js';
import type { ChatSession } from '../models/chat-session.js';
import { describeError, EXIT, intOption, SAMPLING_ARGS, samplingOptions, UsageError } from './common.js';
import { checkModelArgs, loadedLine, loadModel, MODEL_ARGS, MODEL_USAGE } from './load.js';

export const CHAT_USAGE = `lowbit chat --model <dir | file.gguf | org/name | url> [options]

  An interactive chat (the model's chat template; the KV cache is kept between turns, so each
  turn runs only the new tokens). From a pipe, each line of stdin is one user message.
  /reset forgets the conversation, /exit or Ctrl-D leaves; Ctrl-C stops the answer being written.
${MODEL_USAGE}
  --system TEXT          a system message the conversation starts with
  --max-new-tokens N     per answer (default 256)
  --sample               sample instead of greedy; --temperature T (default 0.7), --top-k K,
                         --top-p P (default 0.9), --seed N (default: random)
  --json                 JSON lines on stdout: text pieces and one summary per turn`;

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Runs the chat; resolves with the exit code (0 at /exit or end of input, 130 for Ctrl-C at the prompt). */
export async function chat(argv: string[], loadSignal: AbortSignal, takeOverSigint: () => void): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...MODEL_ARGS,
      system: { type: 'string' },
      'max-new-tokens': { type: 'string', default: '256' },
      ...SAMPLING_ARGS,
    },
  });
  if (positionals.length > 0) throw new UsageError(`chat takes no positional arguments (got '${positionals[0]}'): type the messages after it starts, or pipe them in`);
  checkModelArgs(v, 'chat');
  const maxNewTokens = intOption('max-new-tokens', v['max-new-tokens'], 1)!;
  const sampling = samplingOptions(v);
  const json = v.json!;
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true && !json;
  const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

  const loaded = await loadModel(v, 'chat', loadSignal);
  const { model } = loaded;
  let session: ChatSession;
  try {
    if (model.tokenizer === undefined) throw new LowbitError('NOT_FOUND', `this model has no tokenizer lowbit can use (${model.tokenizerUnavailable ?? 'none found'}), so it cannot chat`);
    session = model.chat({ ...(v.system !== undefined ? { system: v.system } : {}), maxNewTokens, ...sampling });
  } catch (e) {
    model.dispose();
    throw e;
  }
  if (!json) process.stderr.write(`${loadedLine(loaded, v.model!)}\n${interactive ? 'Type a message; /reset forgets the conversation, /exit or Ctrl-D leaves, Ctrl-C stops an answer.\n' : ''}`);

  const rl = createInterface({ input: process.stdin, ...(interactive ? { output: process.stdout, terminal: true, prompt: '> ' } : { terminal: false }) });
  let answering: AbortController | undefined;
  let exitCode: number = EXIT.ok;
  // Ctrl-C: in a terminal readline sees it as a key ('SIGINT' on rl); from a pipe it is the signal.
  const interrupt = () => {
    if (answering !== undefined) answering.abort(new Error('Ctrl-C'));
    else {
      exitCode = EXIT.interrupted;
      rl.close();
    }
  };
  rl.on('SIGINT', interrupt);
  takeOverSigint();
  process.on('SIGINT', interrupt);
  // Any failure ends the loop with this error (after the model is freed).
  let failure: unknown;

  try {
    if (interactive) rl.prompt();
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '/exit' || line === '/quit') break;
      if (line === '/reset') {
        session.reset();
        if (json) out({ type: 'reset' });
        else if (interactive) process.stderr.write('(conversation reset)\n');
      } else if (line !== '') {
        answering = new AbortController();
        const t0 = performance.now();
        let first = 0;
        let n = 0;
        const streamer = new TextStreamer(session.tokenizer, (piece, final) => {
          if (json) {
            if (piece !== '') out({ type: 'text', text: piece });
          } else process.stdout.write(final ? `${piece}\n` : piece);
        });
        try {
          await session.send(line, {
            signal: answering.signal,
            streamer,
            onToken: () => {
              if (++n === 1) first = performance.now();
            },
          });
          const t = session.lastTurn!;
          const t1 = performance.now();
          const tps = n > 1 ? (n - 1) / ((t1 - first) / 1000) : 0;
          if (json) {
            out({ type: 'turn', text: t.text, tokens: t.tokens, newTokens: t.tokens.length, promptTokens: t.promptTokens, reusedTokens: t.reusedTokens, prefilledTokens: t.prefilledTokens, finishReason: t.finishReason, prefillSeconds: r3(n > 0 ? (first - t0) / 1000 : 0), decodeTokensPerSecond: r3(tps) });
          } else if (interactive) {
            const note = t.finishReason === 'cache-full' ? ' — the KV cache is full: /reset to go on' : t.finishReason === 'length' ? ` — stopped at --max-new-tokens ${maxNewTokens}` : '';
            process.stderr.write(`\x1b[2m[${t.tokens.length} tokens, ${tps.toFixed(1)} tokens/s; prefilled ${t.prefilledTokens} of ${t.promptTokens} prompt tokens${note}]\x1b[0m\n`);
          }
        } catch (e) {
          const { code, message } = describeError(e);
          if (code === 'INTERRUPTED') {
            if (json) out({ type: 'interrupted' });
            else process.stdout.write('\n');
            if (!json) process.stderr.write('(answer stopped; it is not kept in the conversation)\n');
          } else if (interactive && code === 'LIMIT_EXCEEDED') {
            process.stderr.write(`lowbit: ${code}: ${message}\n`);
          } else {
            failure = e;
            break;
          }
        } finally {
          answering = undefined;
        }
      }
      if (interactive) rl.prompt();
    }
  } finally {
    process.off('SIGINT', interrupt);
    rl.close();
    const s = session.stats;
    if (!json && failure === undefined) process.stderr.write(`${interactive ? '\n' : ''}${s.turns} turn(s): ${s.newTokens} new tokens; prefilled ${s.prefilledTokens} of ${s.promptTokens} prompt tokens (${s.reusedTokens} from the KV cache)\n`);
    model.dispose();
  }
  if (failure !== undefined) throw failure;
  return exitCode;
}
