// The threaded CPU backend in every runtime (Node in test/runtimes.test.ts, Deno in
// deno-check.ts, Chromium in browser/main.js — a cross-origin-isolated page, whose main thread
// cannot Atomics.wait and spins instead): a few layers on one thread and on three threads
// (main + 2 workers, small layers split too), outputs as hex so that runtimes compare bytes.
// Plain JavaScript with no imports; the caller passes the initialized library.

function rand(n, seed, scale = 1) {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => (u() * 2 - 1) * scale);
}

function hex(f32) {
  const u8 = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  let s = '';
  for (let i = 0; i < u8.length; i++) s += (u8[i] < 16 ? '0' : '') + u8[i].toString(16);
  return s;
}

function denseWeight(name, data, shape) {
  return { kind: 'dense', name, dtype: 'F32', shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** { autoThreads, calibrated: { threads, speedup }, threads, outputs: { case: hex }, same: { case: bool } } */
export async function runThreadChecks(lowbit) {
  const { CpuBackend, quantize4bit, int8VectorwiseQuant, toHalf } = lowbit;
  // 'auto' without its speed test: every core; with it (the default): the cores or one thread
  const auto = await CpuBackend.create({ autoMinSpeedup: 0 });
  const autoThreads = auto.threads;
  auto.dispose();
  const tested = await CpuBackend.create();
  const calibrated = { threads: tested.threads, speedup: tested.threadSpeedup ?? null };
  tested.dispose();
  const one = await CpuBackend.create({ threads: 1 });
  const many = await CpuBackend.create({ threads: 3, minSliceElements: 1 });
  const [n, k] = [160, 100];
  const W = rand(n * k, 1, 0.05);
  const nf4 = quantize4bit(W, { quantType: 'nf4', blocksize: 64, compressStatistics: true, shape: [n, k] });
  const q8 = int8VectorwiseQuant(toHalf(W, 'float16'), { shape: [n, k] });
  const h = toHalf(W, 'float16');
  const layers = {
    nf4_dq_k100: { kind: '4bit', name: 'nf4', packed: nf4.packed, quantState: nf4.quantState },
    int8: { kind: 'int8', name: 'int8', CB: q8.CB, SCB: q8.SCB, shape: [n, k] },
    f16: { kind: 'dense', name: 'f16', dtype: 'F16', shape: [n, k], data: new Uint8Array(h.data.buffer, h.data.byteOffset, h.data.byteLength) },
  };
  const outputs = {};
  const same = {};
  const x = rand(3 * k, 2, 8); // large enough for int8 outlier columns
  for (const [name, w] of Object.entries(layers)) {
    const a = one.linear(w);
    const b = many.linear(w);
    for (const m of [1, 3]) {
      const ya = await one.read(one.linearForward(one.fromHost(x.subarray(0, m * k), m, k), a));
      const yb = await many.read(many.linearForward(many.fromHost(x.subarray(0, m * k), m, k), b));
      outputs[`${name}_m${m}`] = hex(yb);
      same[`${name}_m${m}`] = hex(ya) === hex(yb);
    }
    a.dispose();
    b.dispose();
  }
  const table = denseWeight('emb', rand(200 * 32, 3), [200, 32]);
  const ea = one.embedding(table);
  const eb = many.embedding(table);
  const ids = new Uint32Array([0, 199, 70, 140, 70]);
  const la = await one.read(one.embed(ea, ids));
  const lb = await many.read(many.embed(eb, ids));
  outputs.lookup = hex(lb);
  same.lookup = hex(la) === hex(lb);
  const hx = rand(32, 4);
  const pa = await one.read(one.project(one.fromHost(hx, 1, 32), ea));
  const pb = await many.read(many.project(many.fromHost(hx, 1, 32), eb));
  outputs.project = hex(pb);
  same.project = hex(pa) === hex(pb);
  const threads = many.threads;
  many.dispose();
  return { autoThreads, calibrated, threads, outputs, same };
}
