#!/usr/bin/env node
/**
 * The `lowbit` command (package.json "bin"; Node only): `lowbit generate | chat | quantize |
 * inspect | bench …`. Exit codes: 0 done, 1 failed (the error's code and message on stderr),
 * 2 bad command line, 130 interrupted (Ctrl-C). With --json a failure is also one JSON object on stderr:
 * {"type":"error","code":…,"message":…}.
 */
import { describeError, EXIT, exitCodeOf, UsageError } from './cli/common.js';
import { bench, BENCH_USAGE } from './cli/bench.js';
import { chat, CHAT_USAGE } from './cli/chat.js';
import { generate, GENERATE_USAGE } from './cli/generate.js';
import { inspect, INSPECT_USAGE } from './cli/inspect.js';
import { quantize, QUANTIZE_USAGE } from './cli/quantize.js';

const indent = (text: string) => text.split('\n').map((l) => (l === '' ? '' : `  ${l}`)).join('\n');

const USAGE = `lowbit: bitsandbytes-style 4/8-bit quantization and LLM inference (wasm SIMD128, WebGPU)

usage:
${indent(GENERATE_USAGE)}

${indent(CHAT_USAGE)}

${indent(QUANTIZE_USAGE)}

${indent(INSPECT_USAGE)}

${indent(BENCH_USAGE)}

  lowbit --help | --version

exit codes: 0 done, 1 failed (LowbitError code on stderr), 2 bad command line, 130 interrupted`;

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const json = rest.includes('--json');
  const abort = new AbortController();
  // Ctrl-C stops the command (chat replaces this once loaded: there it stops the answer being written).
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? EXIT.usage : EXIT.ok;
    }
    if (command === '--version' || command === '-v') {
      process.stdout.write(`${await version()}\n`);
      return EXIT.ok;
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      const usage = { generate: GENERATE_USAGE, chat: CHAT_USAGE, quantize: QUANTIZE_USAGE, inspect: INSPECT_USAGE, bench: BENCH_USAGE }[command];
      if (usage !== undefined) {
        process.stdout.write(`${usage}\n`);
        return EXIT.ok;
      }
    }
    if (command === 'generate') await generate(rest, abort.signal);
    else if (command === 'chat') return await chat(rest, abort.signal, () => process.off('SIGINT', onSigint));
    else if (command === 'quantize') await quantize(rest, abort.signal);
    else if (command === 'inspect') await inspect(rest);
    else if (command === 'bench') await bench(rest, abort.signal);
    else throw new UsageError(`unknown command '${command}' (commands: generate, chat, quantize, inspect, bench)`);
    return EXIT.ok;
  } catch (e) {
    // parseArgs' own errors (unknown option, missing value) are usage errors too.
    const usage = e instanceof UsageError || (typeof (e as { code?: unknown }).code === 'string' && (e as { code: string }).code.startsWith('ERR_PARSE_ARGS'));
    const err = usage && !(e instanceof UsageError) ? new UsageError((e as Error).message) : e;
    const { code, message } = describeError(err);
    if (json) process.stderr.write(`${JSON.stringify({ type: 'error', code, message })}\n`);
    else process.stderr.write(`lowbit: ${code === 'USAGE' ? '' : `${code}: `}${message}${code === 'USAGE' ? '\n(lowbit --help lists the commands and options)' : ''}\n`);
    return exitCodeOf(err);
  }
}

// Exit once stdout has drained (a pipe may still hold the output); worker threads are unref'd.
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
