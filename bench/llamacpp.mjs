// llama.cpp beside lowbit in `npm run bench -- cpu`: the same random-weight checkpoint converted
// to GGUF (scripts/make-peer-gguf.mjs: Q4_0 for nf4, Q8_0 for int8, F16 for f16; embeddings, head
// and norms kept as lowbit keeps them), run on the CPU through node-llama-cpp's prebuilt binaries,
// with the same prompt length, decode steps and thread count as lowbit's rows.
//
// Two builds:
// - default: node-llama-cpp's prebuilt CPU backend as shipped. ggml loads the best-scoring of its
//   CPU variants (libggml-cpu-{x64,sse42,sandybridge,haswell,skylakex,icelake,alderlake,
//   sapphirerapids,zen4,...}): on an AVX-512 / AMX machine that is not code wasm can match;
// - avx2: a copy of the same install whose binary folder holds only the haswell variant
//   (AVX2 + FMA + F16C, no AVX-512, no AMX): the x86 SIMD level closest to what wasm SIMD128 can
//   use, and the build decode speed is held against (goal 1.0).
// Each row says which variant was loaded and whether llama.cpp repacked the weights into its
// interleaved layout (Q4_0 -> q4_0_8x8 on AVX2: its CPU_REPACK buffer).
//
// node-llama-cpp is not a dependency of lowbit: the first run installs it from npm into
// .cache/bench-peers/ (scripts ignored, optional GPU packages omitted, NODE_LLAMA_CPP_SKIP_DOWNLOAD
// set: nothing is downloaded from elsewhere nor built from source). When that or anything else
// fails, the rows are a skip line and a {metric: 'skipped', reason} record, never a number.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makePeerGgufs } from '../scripts/make-peer-gguf.mjs';

export const NODE_LLAMA_CPP = '3.22.1';
/** lowbit quantization -> its llama.cpp peer. */
export const PEER_OF = { nf4: 'q4_0', 'nf4-dq': 'q4_0', 'nf4-exact': 'q4_0', int8: 'q8_0', f16: 'f16' };
export const BUILDS = ['default', 'avx2'];

const here = fileURLToPath(new URL('.', import.meta.url));
// LOWBIT_BENCH_PEERS moves the install (the default is shared by every checkout's .cache).
const PEERS = process.env.LOWBIT_BENCH_PEERS ?? join(here, '..', '.cache', 'bench-peers');
const DEFAULT_PREFIX = join(PEERS, `node-llama-cpp-${NODE_LLAMA_CPP}`);
const AVX2_PREFIX = `${DEFAULT_PREFIX}-avx2`;

/** node-llama-cpp's prebuilt CPU package for this machine (its optionalDependencies' names). */
function prebuiltPackage() {
  const { platform, arch } = process;
  if (platform === 'linux' && ['x64', 'arm64'].includes(arch)) return `@node-llama-cpp/linux-${arch}`;
  if (platform === 'darwin') return arch === 'arm64' ? '@node-llama-cpp/mac-arm64-metal' : '@node-llama-cpp/mac-x64';
  if (platform === 'win32' && ['x64', 'arm64'].includes(arch)) return `@node-llama-cpp/win-${arch}`;
  return undefined;
}

const binsDir = (prefix, pkg) => {
  const root = join(prefix, 'node_modules', pkg, 'bins');
  const sub = existsSync(root) ? readdirSync(root) : [];
  return sub.length === 1 ? join(root, sub[0]) : undefined;
};

let installed; // one try per process: a failed install is not retried for the next shape

/** Installs node-llama-cpp into .cache/bench-peers/ once; returns {prefix: {default, avx2?}} or {reason}. */
export function ensurePeer({ log = () => {} } = {}) {
  installed ??= install(log);
  return installed;
}

function install(log) {
  const pkg = prebuiltPackage();
  if (!pkg) return { reason: `node-llama-cpp ships no prebuilt binary for ${process.platform}-${process.arch}` };
  if (!existsSync(join(DEFAULT_PREFIX, 'node_modules', 'node-llama-cpp', 'package.json')) || !binsDir(DEFAULT_PREFIX, pkg)) {
    log(`  installing node-llama-cpp ${NODE_LLAMA_CPP} (${pkg}) from npm into ${DEFAULT_PREFIX} ...`);
    rmSync(DEFAULT_PREFIX, { recursive: true, force: true });
    mkdirSync(DEFAULT_PREFIX, { recursive: true });
    writeFileSync(join(DEFAULT_PREFIX, 'package.json'), JSON.stringify({ name: 'lowbit-bench-peer', private: true, dependencies: { 'node-llama-cpp': NODE_LLAMA_CPP, [pkg]: NODE_LLAMA_CPP } }, null, 2));
    // --ignore-scripts: node-llama-cpp's postinstall would try a source build when the prebuilt
    // binary does not load; --omit=optional: the CUDA / Vulkan packages (hundreds of MB) are not needed.
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const r = spawnSync(npm, ['install', '--prefix', DEFAULT_PREFIX, '--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund', '--no-package-lock'], {
      encoding: 'utf8',
      env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
      timeout: 600_000,
    });
    if (r.status !== 0 || !binsDir(DEFAULT_PREFIX, pkg)) {
      // npm's own first words: the error code and what failed (its stack and log hints left out).
      const lines = (r.error?.message ?? r.stderr ?? '').split('\n').map((l) => l.replace(/^npm error\s*/i, '').trim());
      const why = lines.filter((l) => /^(code |[A-Z]\w*Error|E[A-Z]+|\d{3} |404|request to)/.test(l)).slice(0, 2).join('; ') || lines.filter((l) => l && !/^npm warn/i.test(l)).slice(0, 2).join('; ');
      rmSync(DEFAULT_PREFIX, { recursive: true, force: true });
      return { reason: `npm install node-llama-cpp@${NODE_LLAMA_CPP} ${pkg}@${NODE_LLAMA_CPP} failed${why ? `: ${why}` : ''}` };
    }
  }
  const prefix = { default: DEFAULT_PREFIX };
  // The AVX2-only build: the same install with only the haswell CPU variant beside the addon.
  const bins = binsDir(DEFAULT_PREFIX, pkg);
  const variants = readdirSync(bins).filter((f) => /ggml-cpu-/.test(f));
  const haswell = variants.find((f) => /ggml-cpu-haswell\./.test(f));
  if (haswell) {
    const avx2Bins = binsDir(AVX2_PREFIX, pkg);
    const ok = avx2Bins && readdirSync(avx2Bins).filter((f) => /ggml-cpu-/.test(f)).join() === haswell;
    if (!ok) {
      rmSync(AVX2_PREFIX, { recursive: true, force: true });
      cpSync(DEFAULT_PREFIX, AVX2_PREFIX, { recursive: true, filter: (src) => !/ggml-cpu-/.test(src) || src.endsWith(haswell) });
    }
    prefix.avx2 = AVX2_PREFIX;
  } else {
    prefix.avx2Reason = `${pkg} has no haswell (AVX2) CPU variant (${variants.join(', ') || 'no variants'}): not an x86-64 build`;
  }
  return { prefix };
}

/** Runs the worker; returns {info, results} or throws with its message. */
function measure({ prefix, model, threads, promptTokens, decodeSteps, reps }) {
  const arg = JSON.stringify({ prefix, model, threads, promptTokens, decodeSteps, reps, contextSize: 256 });
  let out;
  try {
    out = execFileSync(process.execPath, [join(here, 'llamacpp-worker.mjs'), arg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 900_000, maxBuffer: 64 << 20 });
  } catch (e) {
    out = String(e.stdout ?? '');
    const err = out.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return null; } }).find((r) => r?.kind === 'error');
    throw new Error(err?.message ?? `worker failed: ${String(e.stderr ?? e.message).trim().split('\n').slice(-2).join(' | ')}`);
  }
  const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return { info: lines.find((l) => l.kind === 'info'), results: lines.filter((l) => l.kind === 'result') };
}

const threadList = (t) => [...new Set(String(t).split(',').map((x) => (x === 'all' ? os.cpus().length : Number(x))))].filter((n) => Number.isInteger(n) && n > 0);

/**
 * Measures llama.cpp (both builds) on `shape`'s checkpoint in `dir` for the peers of `quants`
 * (lowbit names) at each of `threads` (a number, 'all', or a comma list). Figures go through
 * `out` (default: `emit` plus a table line unless `json`; bench/cpu.mjs passes its own), skip and
 * meta records through `emit`. With `defer`, `emitFor(lowbitQuant)` puts out that quant's peer
 * rows (once per peer), to print them beside lowbit's. Returns
 * `vs(lowbitQuant, metric, value, threads)`: {vs, ratio, goal?, peer} against the avx2 build
 * (or {} when there is no figure to compare with).
 */
export async function llamaCppRows({ shape, dir, threads = 1, decodeSteps = 16, promptTokens = 64, reps = 3, quants = Object.keys(PEER_OF), emit = () => {}, out, json = false, defer = false }) {
  const say = (s) => {
    if (!json) console.log(s);
  };
  out ??= (r) => {
    emit(r);
    say(`  ${(r.case + ' ' + r.metric).padEnd(44)} ${String(Number(r.value.toPrecision(4))).padStart(10)} ${r.unit.padEnd(9)}${r.threads} thread${r.threads > 1 ? 's' : ''}${r.cpu_per_wall !== undefined ? ` (cpu/wall ${r.cpu_per_wall.toFixed(2)})` : ''}`);
  };
  const peerQuants = [...new Set(quants.map((q) => PEER_OF[q]).filter(Boolean))];
  const counts = threadList(threads);
  const rows = new Map(); // peer quant -> records
  const table = new Map(); // `${build}/${peerQuant}/${metric}/${threads}` -> value
  const label = new Map(); // build -> peer label
  const push = (pq, r) => (rows.get(pq) ?? rows.set(pq, []).get(pq)).push(r);
  const skip = (build, reason, pqs = peerQuants) => {
    say(`  ${`${shape}_llamacpp-${build}`.padEnd(44)} skipped: ${reason}`);
    emit({ suite: 'cpu', case: `${shape}_llamacpp-${build}`, metric: 'skipped', value: null, unit: null, vs: null, ratio: null, skipped: true, reason, quants: pqs });
  };

  const inst = ensurePeer({ log: say });
  if (!inst.prefix) {
    for (const b of BUILDS) skip(b, inst.reason);
    return { vs: () => ({}), emitFor: () => {}, skipped: inst.reason };
  }
  let paths;
  try {
    paths = makePeerGgufs(dir, dir.replace(/-f16\/?$/, '') + '-gguf', peerQuants, { log: (s) => say(`  ${s}`) });
  } catch (e) {
    const reason = `GGUF conversion failed: ${e instanceof Error ? e.message : String(e)}`;
    for (const b of BUILDS) skip(b, reason);
    return { vs: () => ({}), emitFor: () => {}, skipped: reason };
  }

  const notes = [];
  for (const build of BUILDS) {
    const prefix = inst.prefix[build];
    if (!prefix) {
      skip(build, inst.prefix[`${build}Reason`] ?? 'not available');
      continue;
    }
    for (const pq of peerQuants) {
      let m;
      try {
        m = measure({ prefix, model: paths[pq], threads: counts, promptTokens, decodeSteps, reps });
      } catch (e) {
        skip(build, `${pq}: ${e instanceof Error ? e.message : String(e)}`, [pq]);
        continue;
      }
      const { info } = m;
      const peer = `llama.cpp ${info.release} (node-llama-cpp ${NODE_LLAMA_CPP}) ${build} [${info.variant}${info.repack ? `, repack ${info.repack}` : ', no repack'}]`;
      label.set(build, `llama.cpp ${info.release} ${build} [${info.variant}]`);
      notes.push(`${build}/${pq}: CPU backend ${info.variant}, ${info.repack ? `${info.repackedTensors} weights repacked to ${info.repack} (${info.repackMiB} MiB CPU_REPACK)` : 'weights not repacked'}`);
      for (const r of m.results) {
        for (const metric of ['prefill', 'decode']) {
          table.set(`${build}/${pq}/${metric}/${r.threads}`, r[metric]);
          // cpu_per_wall: the process's CPU seconds per wall second over the timed runs, about
          // `threads` when the machine is free; below it, other processes had the cores.
          push(pq, { suite: 'cpu', case: `${shape}_llamacpp-${build}_${pq}`, metric, value: r[metric], unit: 'tokens/s', threads: r.threads, vs: null, ratio: null, peer, backend: info.variant, repack: info.repack, cpu_per_wall: r.cpuPerWall[metric] });
        }
      }
    }
  }
  const variants = [...label.entries()].map(([b, l]) => `${b}: ${l}`);
  if (label.size === 2 && label.get('default').endsWith('[haswell]')) notes.unshift('the default build loaded the haswell (AVX2) variant on this machine: it runs the same code as the avx2 build');
  say(`  llama.cpp peers — ${variants.join('; ')}`);
  for (const n of [...new Set(notes)]) say(`    ${n}`);
  emit({ suite: 'meta', case: `${shape}_llamacpp`, node_llama_cpp: NODE_LLAMA_CPP, builds: Object.fromEntries(label), notes });

  const emitted = new Set();
  const emitFor = (q) => {
    const pq = PEER_OF[q] ?? q;
    if (emitted.has(pq)) return;
    emitted.add(pq);
    for (const r of rows.get(pq) ?? []) out(r);
  };
  if (!defer) for (const pq of peerQuants) emitFor(pq);
  const vs = (q, metric, value, t = 1) => {
    const theirs = table.get(`avx2/${PEER_OF[q]}/${metric}/${t}`);
    if (theirs === undefined) return {};
    return { vs: theirs, ratio: value / theirs, ...(metric === 'decode' ? { goal: 1.0 } : {}), peer: `${PEER_OF[q]} ${label.get('avx2')}` };
  };
  return { vs, emitFor, table };
}

// Alone, without lowbit's rows: node bench/llamacpp.mjs [--models smollm2-135m,tinyllama]
// [--quants nf4,int8,f16] [--threads 1,2|all] [--decode N] [--json]
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const get = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
  const json = args.includes('--json');
  const emit = json ? (r) => process.stdout.write(`${JSON.stringify(r)}\n`) : () => {};
  for (const shape of get('--models', 'smollm2-135m').split(',')) {
    const dir = join(here, '..', '.cache', 'models', `${shape}-shape-f16`);
    if (!existsSync(join(dir, 'model.safetensors'))) execFileSync(process.execPath, [join(here, '..', 'scripts', 'make-random-checkpoint.mjs'), '--shape', shape, '--out', dir], { stdio: json ? 'ignore' : 'inherit' });
    await llamaCppRows({ shape, dir, threads: get('--threads', '1'), decodeSteps: Number(get('--decode', '16')), quants: get('--quants', 'nf4,int8,f16').split(','), emit, json });
  }
}
