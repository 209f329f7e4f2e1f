// One llama.cpp build measuring one GGUF file, in a process of its own (bench/llamacpp.mjs starts
// it): two builds in one process would share libggml / libllama by soname, and with them the
// CPU backend the first one loaded.
//
//   node bench/llamacpp-worker.mjs '{"prefix": ..., "model": ..., "threads": [1, 2], ...}'
//
// Prints one JSON object per line: {kind: 'info', ...} once (llama.cpp release, the CPU backend
// variant it loaded, which weights it repacked), then {kind: 'result', threads, prefill, decode,
// tokens} per thread count, or {kind: 'error', message}.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const o = JSON.parse(process.argv[2]);
  // No downloads and no source builds: the prebuilt binaries from npm, or nothing.
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = 'true';
  const { getLlama, LlamaLogLevel } = await import(pathToFileURL(join(o.prefix, 'node_modules/node-llama-cpp/dist/index.js')).href);
  const logs = [];
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: false,
    // maxThreads 0: a context's `threads` is the number of threads it uses, not a hint.
    maxThreads: 0,
    logLevel: LlamaLogLevel.debug,
    logger: (level, message) => logs.push(`${level}: ${message}`),
  });
  const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
  const log = logs.join('\n');
  const backend = /loaded CPU backend from (\S+)/.exec(log)?.[1];
  const repacked = [...log.matchAll(/repack tensor (\S+) with (\S+)/g)];
  say({
    kind: 'info',
    release: llama.llamaCppRelease.release,
    buildType: llama.buildType,
    gpu: llama.gpu,
    systemInfo: llama.systemInfo,
    backend: backend ?? null,
    variant: backend ? /libggml-cpu-([\w-]+)\.(so|dll|dylib)$/.exec(backend)?.[1] ?? backend : null,
    repack: [...new Set(repacked.map((m) => m[2]))].join(',') || null,
    repackedTensors: repacked.length,
    repackMiB: Number(/CPU_REPACK model buffer size =\s*([\d.]+) MiB/.exec(log)?.[1] ?? 0),
  });

  const prompt = Array.from({ length: o.promptTokens }, (_, i) => ((i * 37) % 1000) + 5);
  for (const threads of o.threads) {
    const context = await model.createContext({ contextSize: o.contextSize, batchSize: o.promptTokens, threads, sequences: 1 });
    const seq = context.getSequence();
    // Warm-up: the first evaluation allocates the compute graph.
    await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 8));
    // Each rep: the prompt from an empty cache (prefill), then greedy decode steps after it
    // (positions promptTokens.. on), one token per step. Medians over reps.
    const prefills = [];
    const decodes = [];
    let tokens = [];
    const cpuSec = (c) => (c.user + c.system) / 1e6;
    let cpu = 0;
    let prefillCpu = 0;
    for (let r = 0; r < o.reps; r++) {
      await seq.clearHistory();
      let cpu0 = process.cpuUsage();
      let s = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(prompt);
      prefills.push((performance.now() - s) / 1000);
      prefillCpu += cpuSec(process.cpuUsage(cpu0));
      tokens = [];
      cpu0 = process.cpuUsage();
      s = performance.now();
      for await (const t of seq.evaluate([7], { temperature: 0 })) {
        tokens.push(t);
        if (tokens.length >= o.decodeSteps) break;
      }
      decodes.push((performance.now() - s) / 1000);
      cpu += cpuSec(process.cpuUsage(cpu0));
    }
    const sum = (xs) => xs.reduce((a, b) => a + b, 0);
    // CPU seconds per wall second: about `threads` on an idle machine, less when others take the cores.
    say({ kind: 'result', threads, prefill: o.promptTokens / median(prefills), decode: o.decodeSteps / median(decodes), cpuPerWall: { prefill: prefillCpu / sum(prefills), decode: cpu / sum(decodes) }, tokens });
    await context.dispose();
  }
  await model.dispose();
  await llama.dispose();
}

main().then(
  () => process.exit(0),
  (e) => {
    say({ kind: 'error', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  },
);
