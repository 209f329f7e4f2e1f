// `npm run bench -- load`: streaming quantize-on-load of a TinyLlama-1.1B-shaped fp16 checkpoint
// with random weights (made by scripts/make-random-checkpoint.mjs on first use, 2.2 GB under
// .cache/models/), with NF4 + double quantization.
//
// Figures, each next to its reference measured in the same run:
// - peak resident memory of the load (VmHWM of its own process) vs the bound
//   quantized size + 3 x the largest fp16 tensor, and vs the quantized size;
// - load throughput (GB of checkpoint per second) vs the raw read throughput of the same file
//   through the same source (tensor by tensor, nothing kept), measured before and after the load.
// - peak resident memory of the whole AutoModelForCausalLM.fromPretrained (nf4 + double quant,
//   one CPU thread; modules built as their tensors arrive) vs the model's memory footprint and
//   vs the loadWeights-only peak (which keeps every loaded weight, as a loader must).
// The file is read once first so both phases read from the page cache alike.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

export const describe = 'quantize-on-load of a TinyLlama-shaped fp16 checkpoint: peak RSS and throughput vs raw reads';
export const usage = ['options:', '  --shape tinyllama|smollm2-135m   checkpoint shape (default tinyllama)', '  --quant-type nf4|fp4|int4|int8   (default nf4)', '  --no-double-quant', '  --reps N                          loads to run (default 2; the median is reported)'].join('\n');

const here = fileURLToPath(new URL('.', import.meta.url));

function worker(mode, dir, qt, dq) {
  const r = spawnSync(process.execPath, [here + 'load-worker.mjs', mode, dir, qt, String(dq)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`load worker (${mode}) failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function run({ json, emit, args }) {
  const get = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
  const shape = get('--shape', 'tinyllama');
  const qt = get('--quant-type', 'nf4');
  const dq = !args.includes('--no-double-quant');
  const reps = Number(get('--reps', '2'));
  const dir = `${here}../.cache/models/${shape}-shape-f16`;
  if (!existsSync(`${dir}/model.safetensors`)) {
    if (!json) console.log(`making ${dir} (random weights, once) ...`);
    execFileSync(process.execPath, [`${here}../scripts/make-random-checkpoint.mjs`, '--shape', shape, '--out', dir], { stdio: json ? 'ignore' : 'inherit' });
  }
  worker('read', dir, qt, dq); // warm the page cache
  const reads = [], loads = [], models = [];
  for (let i = 0; i < reps; i++) {
    reads.push(worker('read', dir, qt, dq));
    loads.push(worker('load', dir, qt, dq));
    models.push(worker('model', dir, qt, dq));
  }
  reads.push(worker('read', dir, qt, dq));
  const read = reads.find((r) => r.seconds === median(reads.map((x) => x.seconds)));
  const load = loads.find((r) => r.seconds === median(loads.map((x) => x.seconds)));
  const model = models.find((r) => r.peakRss === median(models.map((x) => x.peakRss)));
  const GB = 1e9;
  const readBw = read.bytes / read.seconds / GB;
  const loadBw = load.bytes / load.seconds / GB;
  const bound = load.quantizedBytes + 3 * read.largestTensorBytes;
  const meta = { suite: 'meta', case: 'load', node: process.version, cpu: os.cpus()[0]?.model, cores: os.cpus().length, shape, quant_type: qt, double_quant: dq, checkpoint_bytes: read.bytes, tensors: read.tensors, largest_tensor_bytes: read.largestTensorBytes, reps };
  const recs = [
    meta,
    { suite: 'load', case: 'raw_read', metric: 'throughput', value: readBw, unit: 'GB/s', vs: null, ratio: null, samples: reads.length },
    { suite: 'load', case: 'quantize_on_load', metric: 'throughput', value: loadBw, unit: 'GB/s', vs: readBw, ratio: loadBw / readBw, samples: loads.length },
    { suite: 'load', case: 'quantize_on_load', metric: 'quantized_size', value: load.quantizedBytes / GB, unit: 'GB', vs: read.bytes / GB, ratio: load.quantizedBytes / read.bytes },
    { suite: 'load', case: 'quantize_on_load', metric: 'peak_rss', value: load.peakRss / GB, unit: 'GB', vs: load.quantizedBytes / GB, ratio: load.peakRss / load.quantizedBytes },
    { suite: 'load', case: 'quantize_on_load', metric: 'peak_rss_vs_bound', value: load.peakRss / GB, unit: 'GB', vs: bound / GB, ratio: load.peakRss / bound, limit: 'quantized size + 3 x largest fp16 tensor', within: load.peakRss <= bound },
    { suite: 'load', case: 'raw_read', metric: 'peak_rss', value: read.peakRss / GB, unit: 'GB', vs: null, ratio: null },
    { suite: 'load', case: 'from_pretrained', metric: 'footprint', value: model.quantizedBytes / GB, unit: 'GB', vs: load.quantizedBytes / GB, ratio: model.quantizedBytes / load.quantizedBytes, samples: models.length },
    { suite: 'load', case: 'from_pretrained', metric: 'peak_rss', value: model.peakRss / GB, unit: 'GB', vs: model.quantizedBytes / GB, ratio: model.peakRss / model.quantizedBytes },
    { suite: 'load', case: 'from_pretrained', metric: 'peak_rss_vs_load_weights', value: model.peakRss / GB, unit: 'GB', vs: load.peakRss / GB, ratio: model.peakRss / load.peakRss },
    { suite: 'load', case: 'from_pretrained', metric: 'seconds', value: model.seconds, unit: 's', vs: load.seconds, ratio: model.seconds / load.seconds },
  ];
  for (const r of recs) emit(r);
  if (json) return;
  const f = (x, d = 2) => x.toFixed(d);
  console.log(`lowbit bench load — ${shape}-shaped fp16 checkpoint (random weights), ${qt}${dq ? ' + double quant' : ''}, blocksize 64, one thread`);
  console.log(`  ${meta.cpu} · ${meta.cores} cores · node ${process.version} · ${f(read.bytes / GB)} GB, ${read.tensors} tensors, largest ${f(read.largestTensorBytes / 2 ** 20, 1)} MiB`);
  console.log(`  median of ${reps} loads, ${reps} fromPretrained and ${reads.length} raw reads (interleaved, page cache warm); each in its own process; GB = 1e9 bytes\n`);
  console.log(`  raw read            ${f(readBw)} GB/s                                  (peak RSS ${f(read.peakRss / GB)} GB)`);
  console.log(`  quantize-on-load    ${f(loadBw)} GB/s   = ${f(loadBw / readBw)} x raw read`);
  console.log(`  quantized size      ${f(load.quantizedBytes / GB)} GB    = ${f(load.quantizedBytes / read.bytes)} x the checkpoint`);
  console.log(`  peak RSS            ${f(load.peakRss / GB)} GB    = ${f(load.peakRss / load.quantizedBytes)} x the quantized size`);
  console.log(`  bound               ${f(bound / GB)} GB    (quantized size + 3 x largest fp16 tensor): ${load.peakRss <= bound ? 'within' : 'EXCEEDED'} (${f(load.peakRss / bound)} of it)`);
  console.log(`\n  AutoModelForCausalLM.fromPretrained (threads 1, median peak of ${models.length}), in ${f(model.seconds, 1)} s = ${f(model.seconds / load.seconds)} x loadWeights alone`);
  console.log(`  model footprint     ${f(model.quantizedBytes / GB)} GB    (weights + ${f((model.quantizedBytes - load.quantizedBytes) / GB)} GB of KV caches and f32 vectors)`);
  console.log(`  peak RSS            ${f(model.peakRss / GB)} GB    = ${f(model.peakRss / model.quantizedBytes)} x the footprint, ${f(model.peakRss / load.peakRss)} x the loadWeights-only peak`);
}
