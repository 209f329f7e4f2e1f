#!/usr/bin/env node
// Benchmark dispatcher: `npm run bench -- <suite> [--json] [suite options]`.
//
//   npm run bench -- quant            human-readable table
//   npm run bench -- quant --json     one JSON object per line:
//                                     {suite, case, metric, value, unit, vs, ratio[, goal]}
//
// Each suite is a module in this folder exporting `describe` (one line), `usage` (its options)
// and `run({ json, emit, args })`; it calls `emit(record)` for every figure and returns when
// done. Build first (`bash scripts/build.sh`): the suites load ../dist.
import process from 'node:process';

const SUITES = {
  quant: () => import('./quant.mjs'),
  load: () => import('./load.mjs'),
  cpu: () => import('./cpu.mjs'),
  webgpu: () => import('./webgpu.mjs'),
};

function help() {
  return [
    'usage: npm run bench -- <suite> [--json] [options]',
    '',
    'suites:',
    ...Object.keys(SUITES).map((s) => `  ${s}`),
    '',
    'common options:',
    '  --json    one JSON object per line instead of the table',
    '  --help    this text (with a suite: its options)',
  ].join('\n');
}

async function main(argv) {
  const json = argv.includes('--json');
  const wantHelp = argv.includes('--help') || argv.includes('-h');
  const rest = argv.filter((a) => a !== '--json' && a !== '--help' && a !== '-h');
  const suite = rest.find((a) => !a.startsWith('-'));
  if (suite === undefined) {
    if (wantHelp) {
      console.log(help());
      return 0;
    }
    console.error(`bench: no suite given (available: ${Object.keys(SUITES).join(', ')})\n\n${help()}`);
    return 2;
  }
  if (!Object.hasOwn(SUITES, suite)) {
    console.error(`bench: unknown suite '${suite}' (available: ${Object.keys(SUITES).join(', ')})`);
    return 2;
  }
  const mod = await SUITES[suite]();
  if (wantHelp) {
    console.log(`${suite}: ${mod.describe}\n\n${mod.usage}`);
    return 0;
  }
  const args = rest.filter((a) => a !== suite);
  const emit = json ? (rec) => process.stdout.write(`${JSON.stringify(rec)}\n`) : () => {};
  await mod.run({ json, emit, args });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    if (process.env.BENCH_DEBUG && err instanceof Error) console.error(err.stack);
    process.exitCode = 1;
  },
);
