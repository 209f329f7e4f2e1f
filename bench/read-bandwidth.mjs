// Read bandwidth of several threads at once, measured the way `bench cpu` measures one thread:
// every thread (the main thread and threads - 1 worker threads) has its own wasm instance with
// its own buffer (QuantBench.read_pass, the same kernel), and all of them read at the same time.
// Bandwidth = bytes read by all threads / wall time of the round (start to the last finish);
// the median over the rounds is returned. This file is also the worker's script.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { init } from '../dist/index.js';
import { QuantBench } from '../dist/wasm/pkg/lowbit_wasm.js';

// ctl words: [0] the round the main thread has started, [1] worker passes finished in all.
if (!isMainThread && workerData?.readBandwidth) {
  const { elements, rounds, sab } = workerData;
  const ctl = new Int32Array(sab);
  await init();
  const qb = new QuantBench(elements, 64, 'nf4');
  qb.read_pass();
  parentPort.postMessage('ready');
  for (let r = 1; r <= rounds; r++) {
    Atomics.wait(ctl, 0, r - 1);
    qb.read_pass();
    Atomics.add(ctl, 1, 1);
    Atomics.notify(ctl, 1);
  }
  qb.free();
}

/** GB/s of `threads` threads each reading `bytesPerThread` bytes (f16 elements = bytes / 2) at once. */
export async function parallelReadBandwidth({ threads, bytesPerThread, rounds = 9 }) {
  await init();
  const elements = Math.floor(bytesPerThread / 2);
  const sab = new SharedArrayBuffer(8);
  const ctl = new Int32Array(sab);
  const workers = [];
  for (let i = 1; i < threads; i++) workers.push(new Worker(new URL(import.meta.url), { workerData: { readBandwidth: true, elements, rounds, sab }, execArgv: [] }));
  const own = new QuantBench(elements, 64, 'nf4');
  try {
    await Promise.all(workers.map((w) => new Promise((ok, fail) => { w.once('message', ok); w.once('error', fail); })));
    own.read_pass();
    const times = [];
    for (let r = 1; r <= rounds; r++) {
      const t0 = performance.now();
      Atomics.store(ctl, 0, r);
      Atomics.notify(ctl, 0);
      own.read_pass();
      for (let done; (done = Atomics.load(ctl, 1)) < r * (threads - 1); ) Atomics.wait(ctl, 1, done, 1000);
      times.push((performance.now() - t0) / 1000);
    }
    times.sort((a, b) => a - b);
    return (threads * own.input_bytes()) / times[Math.floor(times.length / 2)] / 1e9;
  } finally {
    own.free();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
