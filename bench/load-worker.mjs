// One measurement of the load suite, in its own process so that its peak RSS (VmHWM) is its own.
//   node bench/load-worker.mjs read|load DIR [quantType] [doubleQuant]
// Prints one JSON line: { mode, seconds, bytes, peakRss, quantizedBytes, largestTensorBytes, tensors }.
import { readFileSync } from 'node:fs';
import { init, localSource, SafetensorsFile, loadWeights, weightBytes } from '../dist/index.js';

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
} else {
  console.error('mode must be read or load');
  process.exit(2);
}
const seconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ mode, seconds, bytes, peakRss: peakRss(), quantizedBytes, largestTensorBytes: largest, tensors }));
