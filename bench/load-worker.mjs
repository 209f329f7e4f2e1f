// One measurement of the load suite, in its own process so that its peak RSS (VmHWM) is its own.
//   node bench/load-worker.mjs read|load|model DIR [quantType] [doubleQuant]
// Prints one JSON line: { mode, seconds, bytes, peakRss, quantizedBytes, largestTensorBytes, tensors }
// (model: the whole AutoModelForCausalLM.fromPretrained on one CPU thread; quantizedBytes is the
// model's memory footprint, KV caches included, and rssAfter the resident size once it is loaded).
import { readFileSync } from 'node:fs';
import { init, localSource, SafetensorsFile, loadWeights, weightBytes, AutoModelForCausalLM, BitsAndBytesConfig } from '../dist/index.js';

function peakRss() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.memoryUsage().rss; // not a peak; Linux gives the real one
}

const [mode, dir, quantType = 'nf4', dq = 'true'] = process.argv.slice(2);
await init();
const source = await localSource(dir);
const t0 = performance.now();
let bytes = 0, quantizedBytes = 0, largest = 0, tensors = 0;
if (mode === 'read') {
  // The raw read throughput of the same file through the same source, tensor by tensor.
  const st = await SafetensorsFile.open(await source.open('model.safetensors'));
  for (const info of [...st.tensors.values()].sort((a, b) => a.start - b.start)) {
    const data = await st.read(info.name);
    bytes += data.byteLength;
    largest = Math.max(largest, data.byteLength);
    tensors++;
  }
  await st.source.close?.();
} else if (mode === 'load') {
  const kept = []; // a real loader keeps every weight: so do we
  for await (const w of loadWeights(source, { quantization: { quantType, doubleQuant: dq === 'true' }, onProgress: (e) => { bytes = e.bytesDone; } })) {
    kept.push(w);
    quantizedBytes += weightBytes(w);
    tensors++;
  }
} else if (mode === 'model') {
  const quantizationConfig = quantType === 'int8' ? new BitsAndBytesConfig({ loadIn8bit: true }) : new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: quantType, bnb4bitUseDoubleQuant: dq === 'true' });
  const model = await AutoModelForCausalLM.fromPretrained(dir, { quantizationConfig, threads: 1, tokenizer: false, onProgress: (e) => { bytes = e.bytesDone; tensors = e.tensorsDone ?? tensors; } });
  quantizedBytes = model.getMemoryFootprint().total;
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ mode, seconds, bytes, peakRss: peakRss(), rssAfter: process.memoryUsage().rss, quantizedBytes, largestTensorBytes: 0, tensors }));
  model.dispose();
  process.exit(0);
} else {
  console.error('mode must be read, load or model');
  process.exit(2);
}
const seconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ mode, seconds, bytes, peakRss: peakRss(), quantizedBytes, largestTensorBytes: largest, tensors }));
