// Suite `quant`: NF4 quantize / dequantize throughput (blocksize 64, double quant) on a large f16
// tensor, single-threaded, SIMD128 and scalar kernels, next to the read bandwidth of the same
// wasm instance over the same buffer, measured in the same run.
//
// Method
// - All buffers live in the wasm instance's memory (QuantBench in crates/lowbit-wasm/src/bench.rs),
//   so no copy across the JS boundary is timed.
// - Reference: `read_pass()` reads the whole f16 input once with SIMD loads. Its timings are
//   interleaved with the kernel runs (a few passes before every kernel run) so that machine noise
//   hits both alike; the bandwidth is input bytes / median pass time.
// - Each kernel runs once as a warm-up (which also checks that the SIMD and scalar kernels give
//   the same bytes), then `reps` times (scalar: `scalar-reps`); figures use the median time.
// - quantize = quantize_4bit codes + absmax + double quantization of the absmax; its throughput
//   counts the f16 input bytes. dequantize = rebuild of the double-quantized absmax + decode to
//   f16; its throughput counts the bytes it reads (packed codes + 8-bit absmax + nested state,
//   QuantBench.quantized_bytes()) and, as a second figure, the f16 bytes it writes.
// - ratio = throughput / read bandwidth. Goals (from the issue): quantize >= 0.25, dequantize
//   >= 0.5 (input bytes).
// - GB = 1e9 bytes, MiB = 2^20 bytes; timer: performance.now().
import os from 'node:os';
import process from 'node:process';
import { performance } from 'node:perf_hooks';

export const describe = 'NF4 + double quant, blocksize 64, 64M-element f16 tensor: quantize / dequantize throughput vs the read bandwidth of the same wasm instance';

export const usage = [
  'options:',
  '  --elements N       tensor size in f16 elements (default 67108864 = 64M, 128 MiB)',
  '  --reps N           timed repetitions of each SIMD kernel (default 5)',
  '  --scalar-reps N    timed repetitions of each scalar kernel (default 3; 0 skips scalar)',
  '  --passes N         read passes per interleaved bandwidth slot (default 3)',
  '  --blocksize N      default 64',
  '  --quant-type T     nf4 (default), fp4 or int4',
].join('\n');

const GOALS = { quantize: 0.25, dequantize: 0.5 };
const GB = 1e9;
const MiB = 2 ** 20;

function parseArgs(args) {
  const o = { elements: 64 * 1024 * 1024, reps: 5, scalarReps: 3, passes: 3, blocksize: 64, quantType: 'nf4' };
  const names = { '--elements': 'elements', '--reps': 'reps', '--scalar-reps': 'scalarReps', '--passes': 'passes', '--blocksize': 'blocksize', '--quant-type': 'quantType' };
  for (let i = 0; i < args.length; i++) {
    let [flag, value] = args[i].split('=', 2);
    const key = names[flag];
    if (key === undefined) throw new Error(`quant: unknown option '${args[i]}'\n${usage}`);
    if (value === undefined) value = args[++i];
    if (value === undefined) throw new Error(`quant: ${flag} needs a value`);
    if (key === 'quantType') o[key] = value;
    else {
      const n = Number(value);
      if (!Number.isInteger(n) || n < (key === 'scalarReps' ? 0 : 1)) throw new Error(`quant: ${flag} must be a ${key === 'scalarReps' ? 'non-negative' : 'positive'} integer, got '${value}'`);
      o[key] = n;
    }
  }
  return o;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function time(fn) {
  const t0 = performance.now();
  const r = fn();
  const t1 = performance.now();
  return [t1 - t0, r];
}

async function loadWasm() {
  let init, glue;
  try {
    ({ init } = await import('../dist/index.js'));
    glue = await import('../dist/wasm/pkg/lowbit_wasm.js');
  } catch (e) {
    throw new Error(`cannot load dist/ (run \`bash scripts/build.sh\` first): ${e.message}`);
  }
  await init();
  if (typeof glue.QuantBench !== 'function') throw new Error('dist/wasm/pkg/lowbit_wasm.js has no QuantBench export: rebuild with `bash scripts/build.sh`');
  // wasm-bindgen's init returns the exports of the instance init() already created.
  const exports = await glue.default();
  return { glue, memory: exports.memory };
}

export async function run({ json, emit, args }) {
  const o = parseArgs(args);
  const progress = json ? () => {} : (msg) => process.stderr.write(`${msg}\n`);
  const { glue, memory } = await loadWasm();

  const n = o.elements;
  const nb = Math.ceil(n / o.blocksize);
  const need = 2 * n + Math.ceil(n / 2) + 4 * nb + 2 * n; // input + codes + f32 absmax + output
  if (2 * n >= 2 ** 32) throw new Error(`quant: ${n} f16 elements (${(2 * n / MiB).toFixed(0)} MiB) do not fit in wasm32 memory (4 GiB at most)`);
  let bench;
  try {
    bench = new glue.QuantBench(n, o.blocksize, o.quantType);
  } catch (e) {
    const have = memory.buffer.byteLength;
    throw new Error(
      `quant: could not set up the buffers in wasm memory: ${n} f16 elements need about ${(need / MiB).toFixed(0)} MiB ` +
        `(input ${(2 * n / MiB).toFixed(0)} MiB + output ${(2 * n / MiB).toFixed(0)} MiB + codes ${(n / 2 / MiB).toFixed(0)} MiB + absmax ${(4 * nb / MiB).toFixed(0)} MiB) ` +
        `of the 4096 MiB a wasm32 instance can address; the instance has ${(have / MiB).toFixed(0)} MiB after trying ` +
        `(memory growth failed or the engine caps it). Engine error: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const inBytes = bench.input_bytes();
  const qBytes = bench.quantized_bytes();
  const outBytes = bench.output_bytes();

  const cpus = os.cpus();
  const meta = {
    suite: 'meta',
    case: 'quant',
    node: process.version,
    v8: process.versions.v8,
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    platform: `${process.platform} ${process.arch}`,
    threads: 1,
    elements: n,
    dtype: 'float16',
    quant_type: o.quantType,
    blocksize: o.blocksize,
    double_quant: true,
    input_bytes: inBytes,
    quantized_bytes: qBytes,
    output_bytes: outBytes,
    wasm_memory_bytes: memory.buffer.byteLength,
    reps: o.reps,
    scalar_reps: o.scalarReps,
    read_passes_per_slot: o.passes,
    timer: 'performance.now',
    gb: GB,
  };
  emit(meta);
  if (!json) {
    console.log(`lowbit bench quant — ${o.quantType.toUpperCase()}, blocksize ${o.blocksize}, double quant, ${n.toLocaleString('en-US')} f16 elements, single-threaded`);
    console.log(`  ${meta.cpu} · ${meta.cores} cores · node ${meta.node} (V8 ${meta.v8}) · ${meta.platform}`);
    console.log(
      `  input ${(inBytes / MiB).toFixed(1)} MiB f16 · quantized ${(qBytes / MiB).toFixed(2)} MiB · output ${(outBytes / MiB).toFixed(1)} MiB f16 · wasm memory ${(meta.wasm_memory_bytes / MiB).toFixed(0)} MiB`,
    );
  }

  // Warm-up, and check that both kernels give the same bytes.
  progress('warm-up (SIMD, then scalar) ...');
  bench.read_pass();
  bench.write_pass(0);
  bench.quantize(true);
  bench.dequantize(true);
  bench.quantize_codes(true);
  bench.compress_absmax();
  bench.decompress_absmax();
  bench.decode_codes(true);
  const sumSimd = bench.checksum();
  let identical = null;
  if (o.scalarReps > 0) {
    bench.quantize(false);
    bench.dequantize(false);
    identical = bench.checksum() === sumSimd;
  }

  const t = { read: [], write: [], qs: [], ds: [], qc: [], dc: [], codes: [], compress: [], decompress: [], decode: [] };
  let sink = 0;
  const readSlot = () => {
    for (let p = 0; p < o.passes; p++) {
      const [dt, r] = time(() => bench.read_pass());
      t.read.push(dt);
      sink ^= r;
    }
  };
  const run1 = (key, fn) => {
    readSlot();
    const [dt, r] = time(fn);
    t[key].push(dt);
    sink ^= r;
  };
  const reps = Math.max(o.reps, o.scalarReps);
  for (let r = 0; r < reps; r++) {
    progress(`rep ${r + 1}/${reps} ...`);
    if (r < o.reps) {
      run1('qs', () => bench.quantize(true));
      run1('ds', () => bench.dequantize(true));
      run1('write', () => bench.write_pass(r));
      // where the SIMD time goes
      run1('codes', () => bench.quantize_codes(true));
      run1('compress', () => bench.compress_absmax());
      run1('decompress', () => bench.decompress_absmax());
      run1('decode', () => bench.decode_codes(true));
    }
    if (r < o.scalarReps) {
      run1('qc', () => bench.quantize(false));
      run1('dc', () => bench.dequantize(false));
    }
  }
  readSlot();
  bench.free();

  const ms = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.length ? median(v) : null]));
  const bw = inBytes / (ms.read / 1e3) / GB;
  const recs = [];
  const rec = (c, metric, value, unit, vs = null, extra = {}) => {
    const r = { suite: 'quant', case: c, metric, value: round(value), unit, vs: vs === null ? null : round(vs), ratio: vs === null ? null : round(value / vs), ...extra };
    recs.push(r);
    emit(r);
  };
  const round = (x) => (typeof x === 'number' ? Number(x.toPrecision(5)) : x);

  rec('read_bandwidth', 'bandwidth', bw, 'GB/s');
  rec('read_bandwidth', 'time', ms.read, 'ms', null, { samples: t.read.length });
  rec('write_bandwidth', 'bandwidth', outBytes / (ms.write / 1e3) / GB, 'GB/s', bw);
  const kernel = (name, key, op) => {
    if (ms[key] === null) return;
    const s = ms[key] / 1e3;
    if (op === 'quantize') {
      rec(name, 'throughput_in', inBytes / s / GB, 'GB/s', bw, { goal: GOALS.quantize });
    } else {
      rec(name, 'throughput_in', qBytes / s / GB, 'GB/s', bw, { goal: GOALS.dequantize });
      rec(name, 'throughput_out', outBytes / s / GB, 'GB/s', bw);
    }
    rec(name, 'elements', n / s / 1e9, 'Gelem/s');
    rec(name, 'time', ms[key], 'ms', null, { samples: t[key].length });
  };
  kernel('quantize_simd', 'qs', 'quantize');
  kernel('quantize_scalar', 'qc', 'quantize');
  kernel('dequantize_simd', 'ds', 'dequantize');
  kernel('dequantize_scalar', 'dc', 'dequantize');
  // Upper bound for dequantize (input-byte counting): the time to write its f16 output at the
  // write bandwidth measured above, with the decoding itself free.
  const wbw = outBytes / (ms.write / 1e3) / GB;
  rec('dequantize_write_bound', 'throughput_in', qBytes / (outBytes / wbw), 'GB/s', bw);
  if (ms.qc !== null) rec('quantize_simd', 'speedup_vs_scalar', ms.qc / ms.qs, 'x');
  if (ms.dc !== null) rec('dequantize_simd', 'speedup_vs_scalar', ms.dc / ms.ds, 'x');
  rec('quantize_simd.codes', 'time', ms.codes, 'ms', null, { samples: t.codes.length });
  rec('quantize_simd.double_quant', 'time', ms.compress, 'ms', null, { samples: t.compress.length });
  rec('dequantize_simd.absmax', 'time', ms.decompress, 'ms', null, { samples: t.decompress.length });
  rec('dequantize_simd.decode', 'time', ms.decode, 'ms', null, { samples: t.decode.length });
  if (identical !== null) rec('simd_vs_scalar', 'identical_output', identical, 'bool');

  if (sink === 0.5) console.log(''); // keep the results observable
  if (!json) printTable(recs, { o, t, identical, bw });
  if (identical === false) throw new Error('quant: the SIMD and scalar kernels produced different bytes');
}

function printTable(recs, { o, t, identical, bw }) {
  const get = (c, m) => recs.find((r) => r.case === c && r.metric === m);
  const f = (x, d = 2) => (x === null || x === undefined ? '' : x.toFixed(d));
  const fms = (x) => `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`;
  console.log(
    `  median of ${o.reps} runs per SIMD kernel${o.scalarReps ? `, ${o.scalarReps} per scalar kernel` : ''}, after one warm-up; ` +
      `read bandwidth: median of ${t.read.length} passes interleaved with the kernel runs (${o.passes} before each)`,
  );
  console.log('  ratio = throughput / read bandwidth of the same buffer; GB = 1e9 bytes');
  console.log('');
  const rows = [['case', 'counting', 'throughput', 'read bw', 'ratio', 'goal', 'time', 'elements']];
  const bwRec = get('read_bandwidth', 'bandwidth');
  rows.push(['read bandwidth', 'f16 input read', `${f(bwRec.value)} GB/s`, '', '', '', fms(get('read_bandwidth', 'time').value), '']);
  const wr = get('write_bandwidth', 'bandwidth');
  rows.push(['write bandwidth', 'f16 output written', `${f(wr.value)} GB/s`, `${f(bw)} GB/s`, f(wr.ratio, 3), '', '', '']);
  for (const [label, c, op] of [
    ['quantize   SIMD', 'quantize_simd', 'quantize'],
    ['quantize   scalar', 'quantize_scalar', 'quantize'],
    ['dequantize SIMD', 'dequantize_simd', 'dequantize'],
    ['dequantize scalar', 'dequantize_scalar', 'dequantize'],
  ]) {
    const tin = get(c, 'throughput_in');
    if (!tin) continue;
    const goal = `≥ ${tin.goal} ${tin.ratio >= tin.goal ? 'met' : 'NOT met'}`;
    const el = `${f(get(c, 'elements').value, 3)} Gelem/s`;
    const tm = fms(get(c, 'time').value);
    rows.push([label, op === 'quantize' ? 'f16 input read' : 'quantized input read', `${f(tin.value)} GB/s`, `${f(tin.vs)} GB/s`, f(tin.ratio, 3), goal, tm, el]);
    const tout = get(c, 'throughput_out');
    if (tout) rows.push(['', 'f16 output written', `${f(tout.value)} GB/s`, `${f(tout.vs)} GB/s`, f(tout.ratio, 3), '', '', '']);
    if (c === 'dequantize_simd') {
      const wb = get('dequantize_write_bound', 'throughput_in');
      rows.push(['  bound: write only', 'quantized input read', `${f(wb.value)} GB/s`, `${f(wb.vs)} GB/s`, f(wb.ratio, 3), '', '', '']);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const right = new Set([2, 3, 4, 6, 7]);
  for (const [i, r] of rows.entries()) {
    console.log(`  ${r.map((cell, j) => (right.has(j) ? cell.padStart(widths[j]) : cell.padEnd(widths[j]))).join('  ').trimEnd()}`);
    if (i === 0) console.log(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  }
  console.log('');
  const sq = get('quantize_simd', 'speedup_vs_scalar');
  const sd = get('dequantize_simd', 'speedup_vs_scalar');
  if (sq && sd) console.log(`  SIMD vs scalar: quantize ${f(sq.value, 1)}x, dequantize ${f(sd.value, 1)}x faster; identical output bytes: ${identical ? 'yes' : 'NO'}`);
  const parts = (a, b) => `${fms(get(a, 'time').value)} + ${fms(get(b, 'time').value)}`;
  console.log(`  SIMD time split: quantize = codes + double quant of absmax = ${parts('quantize_simd.codes', 'quantize_simd.double_quant')};`);
  console.log(`                   dequantize = absmax rebuild + decode = ${parts('dequantize_simd.absmax', 'dequantize_simd.decode')}`);
  console.log('  "bound: write only" = the dequantize figure if decoding were free and only writing its f16 output');
  console.log('  (4x the bytes it reads) took time, at the write bandwidth measured above.');
}
