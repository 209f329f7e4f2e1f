// `npm run bench -- webgpu`: the WebGPU backend's figures, labelled with the adapter, each next
// to its reference measured in the same run:
// - NF4 GEMV effective bandwidth (bytes of packed weights + f32 absmax per second) vs the
//   adapter's buffer-to-buffer copy bandwidth (bytes copied per second: each byte is read once
//   and written once) over a buffer of the same size, for gemv4 and for the generic GEMV
//   (a backend made with { gemv4: false }, the kernel gemv4 replaced) in the same run;
// - NF4 GEMM GFLOP/s for a prefill shape (64 tokens);
// - decode and prefill tokens/s of the SmolLM2-135M shape with random weights
//   (scripts/make-random-checkpoint.mjs), greedy, argmax on the device;
// - per decode token, the host-side overhead (backend.stats(), properties of the code that show
//   on any adapter): dispatches, copies, submits, bytes uploaded and read back, host ms spent
//   recording commands and submitting them; 4-bit models run with gemv4 and its fusions and
//   without them (`_generic` cases: the decode step before gemv4, with sampling on the host and
//   double-quantized absmax widened to f32), trials alternating, medians; `--sampled` adds a
//   decode with temperature, top-p and a repetition penalty (`_sampled` cases);
// - long-context decode (`--context N`, default 2048 — 0 on software adapters; 0 skips): one attention call of the
//   SmolLM2-135M shape (9 query heads, 3 kv heads, head_dim 64) at position N - 1, split over
//   the context (attention.wgsl attention_split + attention_combine, the rule of
//   ts/backends/webgpu/attention-split.ts) vs unsplit (attentionSplits = 1) in the same run,
//   trials alternating; and the first format's decode tokens/s after an N-token prompt, split vs
//   unsplit (`_ctxN` / `_ctxN_unsplit` cases, with the per-token counters).
// On a software adapter (lavapipe, SwiftShader) the figures only show that it runs.
// Node needs the optional `webgpu` package (Dawn); on a machine without a GPU,
// scripts/setup-webgpu.sh prepares lavapipe and this suite uses it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
// Before Dawn loads: the lavapipe setup-webgpu.sh prepared, unless a driver is named already.
const icd = join(here, '../.cache/webgpu/lvp_icd.json');
if (!process.env.VK_ICD_FILENAMES && existsSync(icd)) process.env.VK_ICD_FILENAMES = icd;
if (!process.env.XDG_RUNTIME_DIR) {
  process.env.XDG_RUNTIME_DIR = join(tmpdir(), 'lowbit-xdg-runtime');
  mkdirSync(process.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
}
const { init, AutoModelForCausalLM, BitsAndBytesConfig, WebGpuBackend, quantize4bit } = await import('../dist/index.js');

export const describe = 'WebGPU: NF4 GEMV bandwidth vs copy bandwidth, NF4 GEMM GFLOP/s, SmolLM2-135M-shape decode/prefill tokens/s and per-token dispatches / submits / readback / host encode time';
export const usage = ['options:', '  --quants nf4,nf4-dq,int8,f16   model formats (default nf4,f16)', '  --decode N                     decode steps (default 16)', '  --trials N                     model runs per variant, alternating, median (default 3)', '  --gemv N,K                     GEMV weight shape (default 5632,2048)', '  --shape NAME                   model shape (scripts/make-random-checkpoint.mjs: smollm2-135m, tinyllama; default smollm2-135m)', '  --sampled                      also decode with temperature / top-p / repetition penalty (`_sampled` cases)', '  --context N                    long-context decode: attention split vs unsplit and decode tokens/s after N prompt tokens (default 2048, 0 on software adapters; 0 skips)'].join('\n');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Seconds per call of `record` (records GPU work), `reps` calls per timing, median of `trials`. */
async function gpuTime(be, record, reps, trials) {
  record();
  await be.synchronize(); // warm-up: pipelines, pools
  const t = [];
  for (let i = 0; i < trials; i++) {
    const s = performance.now();
    for (let r = 0; r < reps; r++) record();
    await be.synchronize();
    t.push((performance.now() - s) / 1000 / reps);
  }
  return median(t);
}

export async function run({ json, emit, args }) {
  const get = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
  await init();
  const be = await WebGpuBackend.create();
  const a = be.adapter;
  const label = [a.vendor, a.architecture, a.description].filter((s) => s).join(' / ') || 'unknown adapter';
  const GB = 1e9;
  const out = (r) => {
    emit(r);
    if (!json) console.log(`  ${(r.case + ' ' + r.metric).padEnd(44)} ${String(Number(r.value.toPrecision(4))).padStart(10)} ${r.unit.padEnd(9)}${r.vs != null ? ` vs ${Number(r.vs.toPrecision(4))} → ratio ${r.ratio.toFixed(3)}` : ''}`);
  };
  emit({ suite: 'meta', case: 'webgpu', node: process.version, adapter: label, software: a.software, features: a.features, wgsl: a.wgslLanguageFeatures, maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize, packedDot: be.packedDot });
  if (!json) {
    console.log(`lowbit bench webgpu — adapter: ${label}${a.software ? ' (SOFTWARE)' : ''}, node ${process.version}`);
    console.log(`  max storage binding ${a.limits.maxStorageBufferBindingSize / 2 ** 20} MiB, dot4I8Packed ${be.packedDot ? 'yes' : 'no'}, shader-f16 ${a.features.includes('shader-f16') ? 'yes' : 'no'}`);
    if (a.software) console.log('  This is a software adapter running on the CPU: the figures below only show that the kernels run, not GPU speed.');
    console.log('');
  }
  const ctx = be.ctx;
  const soft = a.software;

  // GEMV over 8 weights ([N, K] nf4, ~46 MB in all for the default TinyLlama-MLP shape)
  const [N, K] = get('--gemv', '5632,2048').split(',').map(Number);
  const weights = [];
  let bytes = 0;
  for (let l = 0; l < 8; l++) {
    const w = new Float32Array(N * K).map((_, i) => Math.sin(i * 0.001 + l) * 0.02);
    const { packed, quantState } = quantize4bit(w, { quantType: 'nf4', blocksize: 64, shape: [N, K] });
    weights.push({ kind: '4bit', name: `w${l}`, packed, quantState });
    bytes += packed.length + quantState.absmaxF32().byteLength;
  }
  const layers = weights.map((w) => be.linear(w));
  // copy bandwidth over a buffer as large as the weights of one GEMV pass (bytes copied per second)
  const copyBytes = Math.min(Math.floor(bytes / 4) * 4, ctx.limits.maxBinding);
  const src = ctx.createBuffer(copyBytes, 'bench src');
  const dst = ctx.createBuffer(copyBytes, 'bench dst');
  const copyT = await gpuTime(be, () => ctx.copy(src, 0, dst, 0, copyBytes), soft ? 4 : 50, 5);
  const copyBw = copyBytes / copyT / GB;
  out({ suite: 'webgpu', case: 'copy_buffer_to_buffer', metric: 'bandwidth', value: copyBw, unit: 'GB/s', vs: null, ratio: null });
  // the same weights through gemv4 (be) and the generic GEMV (generic), trials alternating
  // (and, for the models, the rest of the decode step as it was before: sampling other than
  // greedy / top-k on the host, double-quantized absmax widened to f32)
  const generic = await WebGpuBackend.create({ gemv4: false, deviceSampling: false, nestedAbsmax: false });
  const genericLayers = weights.map((w) => generic.linear(w));
  const xv = new Float32Array(K).map((_, i) => Math.sin(i));
  const [xg, xs] = [be.fromHost(xv, 1, K), generic.fromHost(xv, 1, K)];
  const pass = (b, x, ls) => gpuTime(b, () => { for (const l of ls) b.release(b.linearForward(x, l)); }, soft ? 2 : 50, 1);
  const gemvTs = [];
  const genericTs = [];
  for (let t = 0; t < 5; t++) {
    gemvTs.push(await pass(be, xg, layers));
    genericTs.push(await pass(generic, xs, genericLayers));
  }
  const [gemvT, genericT] = [median(gemvTs), median(genericTs)];
  for (const l of genericLayers) l.dispose();
  const gemvBw = bytes / gemvT / GB;
  const genericBw = bytes / genericT / GB;
  out({ suite: 'webgpu', case: `gemv4_nf4_${N}x${K}${be.subgroups ? '_subgroups' : ''}`, metric: 'effective_bandwidth', value: gemvBw, unit: 'GB/s', vs: copyBw, ratio: gemvBw / copyBw });
  out({ suite: 'webgpu', case: `gemv_generic_nf4_${N}x${K}`, metric: 'effective_bandwidth', value: genericBw, unit: 'GB/s', vs: copyBw, ratio: genericBw / copyBw });
  const M = 64;
  const xm = be.fromHost(new Float32Array(M * K).map((_, i) => Math.cos(i)), M, K);
  const gemmT = await gpuTime(be, () => be.release(be.linearForward(xm, layers[0])), soft ? 1 : 20, 3);
  out({ suite: 'webgpu', case: `gemm_nf4_${M}x${N}x${K}`, metric: 'throughput', value: (2 * M * N * K) / gemmT / 1e9, unit: 'GFLOP/s', vs: null, ratio: null });
  for (const l of layers) l.dispose();
  ctx.destroyLater(src);
  ctx.destroyLater(dst);

  // SmolLM2-135M shape, random weights: prefill (first token) and decode (greedy, argmax on the device)
  const QUANT = { nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' }, 'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }, int8: { loadIn8bit: true }, f16: undefined };
  const quants = get('--quants', 'nf4,f16').split(',');
  const steps = Number(get('--decode', '16'));
  const shape = get('--shape', 'smollm2-135m'); // scripts/make-random-checkpoint.mjs SHAPES
  const dir = `${here}../.cache/models/${shape}-shape-f16`;
  if (!existsSync(`${dir}/model.safetensors`)) execFileSync(process.execPath, [`${here}../scripts/make-random-checkpoint.mjs`, '--shape', shape, '--out', dir], { stdio: json ? 'ignore' : 'inherit' });
  const OVERHEAD = [
    ['dispatches', 'dispatches', 'count'],
    ['copies', 'copies', 'count'],
    ['submits', 'submits', 'count'],
    ['readbacks', 'readbacks', 'count'],
    ['bytesRead', 'bytes_read', 'bytes'],
    ['bytesUploaded', 'bytes_uploaded', 'bytes'],
    ['encodeMs', 'host_encode', 'ms'],
    ['submitMs', 'host_submit', 'ms'],
  ];
  const prompt = Array.from({ length: 64 }, (_, i) => (i * 37) % 1000 + 5);
  /** One generate on `lm` (backend b): prefill s, decode s, and b's counters over the decode steps. */
  // sampled decode: temperature, top-p and a repetition penalty (no top-k), seeded
  const SAMPLED = { doSample: true, temperature: 0.8, topP: 0.9, repetitionPenalty: 1.1, seed: 1 };
  const timed = async (lm, b, sampling = {}) => {
    const stamps = [];
    let perStep; // counters from the first token (end of prefill) to the last: `steps` decode steps
    const s = performance.now();
    await lm.generate({
      inputIds: prompt,
      maxNewTokens: steps + 1,
      eosTokenIds: [],
      ...sampling,
      onToken: () => {
        stamps.push(performance.now());
        if (stamps.length === 1) b.resetStats();
        else perStep = b.stats();
      },
    });
    return { prefill: (stamps[0] - s) / 1000, decode: (stamps.at(-1) - stamps[0]) / 1000, perStep };
  };
  const report = (c, runs, footprint) => {
    const med = (f) => median(runs.map(f));
    out({ suite: 'webgpu', case: c, metric: 'prefill', value: prompt.length / med((r) => r.prefill), unit: 'tokens/s', vs: null, ratio: null });
    out({ suite: 'webgpu', case: c, metric: 'decode', value: steps / med((r) => r.decode), unit: 'tokens/s', vs: null, ratio: null });
    out({ suite: 'webgpu', case: c, metric: 'footprint', value: footprint / 2 ** 20, unit: 'MiB', vs: null, ratio: null });
    for (const [key, metric, unit] of OVERHEAD) out({ suite: 'webgpu', case: `${c}_per_token`, metric, value: med((r) => r.perStep[key]) / steps, unit, vs: null, ratio: null });
    out({ suite: 'webgpu', case: `${c}_per_token`, metric: 'wall', value: (med((r) => r.decode) * 1000) / steps, unit: 'ms', vs: null, ratio: null });
  };
  const trials = Number(get('--trials', '3'));
  const sampled = process.argv.includes('--sampled');
  for (const q of quants) {
    if (!Object.hasOwn(QUANT, q)) throw new Error(`unknown format '${q}' (${Object.keys(QUANT).join(', ')})`);
    // 4-bit: the same model also without gemv4 and its fusions (the decode step before them),
    // trials alternating between the two so that a busy machine slows both alike
    const variants = [{ b: be, tag: '' }, ...(q.startsWith('nf4') ? [{ b: generic, tag: '_generic' }] : [])];
    for (const v of variants) {
      v.lm = await AutoModelForCausalLM.fromPretrained(dir, { backend: v.b, ...(QUANT[q] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[q]) } : {}), maxPositions: 256 });
      await v.lm.generate({ inputIds: prompt.slice(0, 8), maxNewTokens: 2, eosTokenIds: [] }); // warm-up (pipelines)
      v.runs = [];
    }
    for (let t = 0; t < trials; t++) {
      for (const v of variants) v.runs.push(await timed(v.lm, v.b));
      if (sampled) for (const v of variants) (v.sampledRuns ??= []).push(await timed(v.lm, v.b, SAMPLED));
    }
    for (const v of variants) {
      report(`${shape}_${q}${v.tag}`, v.runs, v.lm.getMemoryFootprint().total);
      if (sampled) report(`${shape}_${q}${v.tag}_sampled`, v.sampledRuns, v.lm.getMemoryFootprint().total);
      v.lm.dispose();
    }
  }
  generic.dispose();

  // long-context decode: attention split over the context vs unsplit, same backend, alternating
  // skipped by default on software adapters: a 2048-token prefill takes ~20 min on lavapipe
  const context = Number(get('--context', soft ? '0' : '2048'));
  if (context === 0 && soft && !json) console.log('  long-context decode skipped on a software adapter (--context N runs it)');
  if (context > 0) {
    const [nHeads, nKv, hd] = [9, 3, 64]; // SmolLM2-135M
    const cache = be.kvCache(context, nKv, hd);
    const fill = new Float32Array(context * nKv * hd).map((_, i) => Math.sin(i * 0.37));
    ctx.device.queue.writeBuffer(cache.k, 0, fill);
    ctx.device.queue.writeBuffer(cache.v, 0, fill.map((x) => x * 0.5));
    const q = be.fromHost(new Float32Array(nHeads * hd).map((_, i) => Math.cos(i)), 1, nHeads * hd);
    const kv = be.fromHost(new Float32Array(nKv * hd).map((_, i) => Math.sin(i)), 1, nKv * hd);
    const call = () => be.release(be.attention(q, kv, kv, cache, context - 1, nHeads));
    const attn = { split: [], unsplit: [] };
    const dispatches = {};
    for (let t = 0; t < 5; t++) {
      for (const [name, force] of [['split', undefined], ['unsplit', 1]]) {
        be.attentionSplits = force;
        attn[name].push(await gpuTime(be, call, soft ? 5 : 200, 1));
        be.resetStats();
        call();
        dispatches[name] = be.stats().dispatches;
        await be.synchronize();
      }
    }
    be.attentionSplits = undefined;
    cache.dispose();
    const [splitT, unsplitT] = [median(attn.split), median(attn.unsplit)];
    const c = `attention_decode_smollm2_ctx${context}`;
    out({ suite: 'webgpu', case: `${c}_split`, metric: 'time', value: splitT * 1000, unit: 'ms', vs: unsplitT * 1000, ratio: splitT / unsplitT });
    out({ suite: 'webgpu', case: `${c}_unsplit`, metric: 'time', value: unsplitT * 1000, unit: 'ms', vs: null, ratio: null });
    out({ suite: 'webgpu', case: `${c}_split`, metric: 'dispatches', value: dispatches.split, unit: 'count', vs: dispatches.unsplit, ratio: dispatches.split / dispatches.unsplit });

    // decode after a `context`-token prompt: the first generate prefills it; later ones reuse the
    // cache (reuseCache) and prefill only the prompt's last token
    const q0 = quants[0];
    const lm = await AutoModelForCausalLM.fromPretrained(dir, { backend: be, ...(QUANT[q0] ? { quantizationConfig: new BitsAndBytesConfig(QUANT[q0]) } : {}), maxPositions: context + steps + 2 });
    const long = Array.from({ length: context }, (_, i) => (i * 37) % 1000 + 5);
    await lm.generate({ inputIds: long, maxNewTokens: 2, eosTokenIds: [] });
    const runs = { split: [], unsplit: [] };
    for (let t = 0; t < trials; t++) {
      for (const [name, force] of [['split', undefined], ['unsplit', 1]]) {
        be.attentionSplits = force;
        const stamps = [];
        let perStep;
        await lm.generate({
          inputIds: long, reuseCache: true, maxNewTokens: steps + 1, eosTokenIds: [],
          onToken: () => {
            stamps.push(performance.now());
            if (stamps.length === 1) be.resetStats();
            else perStep = be.stats();
          },
        });
        runs[name].push({ decode: (stamps.at(-1) - stamps[0]) / 1000, perStep });
      }
    }
    be.attentionSplits = undefined;
    lm.dispose();
    for (const name of ['split', 'unsplit']) {
      const c2 = `${shape}_${q0}_ctx${context}${name === 'split' ? '' : '_unsplit'}`;
      const rs = runs[name];
      out({ suite: 'webgpu', case: c2, metric: 'decode', value: steps / median(rs.map((r) => r.decode)), unit: 'tokens/s', vs: null, ratio: null });
      out({ suite: 'webgpu', case: `${c2}_per_token`, metric: 'dispatches', value: median(rs.map((r) => r.perStep.dispatches)) / steps, unit: 'count', vs: null, ratio: null });
      out({ suite: 'webgpu', case: `${c2}_per_token`, metric: 'host_encode', value: median(rs.map((r) => r.perStep.encodeMs)) / steps, unit: 'ms', vs: null, ratio: null });
    }
  }
  be.dispose();
  if (!json && soft) console.log('\n  (software adapter: these numbers measure a CPU emulating a GPU; rerun on a real GPU for speed figures)');
}
