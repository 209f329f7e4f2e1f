// Read bandwidth of several threads at once, measured the way `bench cpu` measures one thread:
// every thread (the main thread and threads - 1 worker threads) has its own wasm instance with
// its own buffer (QuantBench.read_pass, the same kernel), and all of them read at the same time.
// One round = every thread reads its buffer once; bandwidth = bytes read by all threads / wall
// time of the round (start to the last finish). This file is also the worker's script.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { init } from '../dist/index.js';
import { QuantBench } from '../dist/wasm/pkg/lowbit_wasm.js';

// ctl words: [0] rounds the main thread has started (-1: stop), [1] worker passes finished.
if (!isMainThread && workerData?.readBandwidth) {
  const { elements, sab } = workerData;
  const ctl = new Int32Array(sab);
  await init();
  const qb = new QuantBench(elements, 64, 'nf4');
  qb.read_pass();
  parentPort.postMessage('ready');
  for (let r = 1; ; r++) {
    Atomics.wait(ctl, 0, r - 1);
    if (Atomics.load(ctl, 0) < 0) break;
    qb.read_pass();
    Atomics.add(ctl, 1, 1);
    Atomics.notify(ctl, 1);
  }
  qb.free();
}

/**
 * `threads` threads with `bytesPerThread` bytes each (f16 elements = bytes / 2), ready to read:
 * `round()` returns the GB/s of one round, `close()` stops the workers.
 */
export async function parallelReader({ threads, bytesPerThread }) {
  await init();
  const elements = Math.floor(bytesPerThread / 2);
  const sab = new SharedArrayBuffer(8);
  const ctl = new Int32Array(sab);
  const workers = [];
  for (let i = 1; i < threads; i++) workers.push(new Worker(new URL(import.meta.url), { workerData: { readBandwidth: true, elements, sab }, execArgv: [] }));
  const own = new QuantBench(elements, 64, 'nf4');
  await Promise.all(workers.map((w) => new Promise((ok, fail) => { w.once('message', ok); w.once('error', fail); })));
  own.read_pass();
  let r = 0;
  return {
    round() {
      r++;
      const t0 = performance.now();
      Atomics.store(ctl, 0, r);
      Atomics.notify(ctl, 0);
      own.read_pass();
      for (let done; (done = Atomics.load(ctl, 1)) < r * (threads - 1); ) Atomics.wait(ctl, 1, done, 1000);
      return (threads * own.input_bytes()) / ((performance.now() - t0) / 1000) / 1e9;
    },
    async close() {
      Atomics.store(ctl, 0, -1);
      Atomics.notify(ctl, 0);
      own.free();
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
