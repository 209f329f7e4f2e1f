/**
 * `lowbit inspect`: what a checkpoint holds and what it would take in memory, from its headers
 * only (no weight is read): the architecture, the tensors and their dtypes, and per quantization
 * choice the bytes the loader plans for (planModuleSizes: the same sizes deviceMap 'auto'
 * budgets with), weights and KV cache apart. --json prints it all as one JSON object.
 */
import { parseArgs } from 'node:util';
import { GgufFile } from '../loading/gguf.js';
import { SafetensorsFile } from '../loading/safetensors.js';
import { resolveSource } from '../loading/sources/resolve.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import type { ModelSource } from '../loading/sources/types.js';
import { planModuleSizes } from '../models/auto.js';
import { kvCacheBytesPerLayer } from '../models/module-sizes.js';
import { parseBytes, planDevices, type ModuleSize } from '../models/device-map.js';
import { init } from '../runtime/wasm.js';
import type { DecoderConfig } from '../models/config.js';
import { intOption, MiB, QUANT_CHOICES, quantChoice, quantizationConfig, UsageError, type QuantChoice } from './common.js';

export const INSPECT_USAGE = `lowbit inspect <dir | file.gguf | org/name | url> [options]

  --tensors              list every tensor (name, dtype, shape, bytes)
  --max-positions N      KV cache length for the memory table (default: the model's, at most 4096)
  --max-gpu-memory SIZE  also plan deviceMap 'auto' for this GPU budget (e.g. 512MiB, 2GB):
                         which modules would go on the GPU and which on the CPU
  --max-cpu-memory SIZE  with it, a CPU budget (default: none); OUT_OF_MEMORY when over
  --quant Q              the quantization of that plan (default nf4-dq)
  --json                 one JSON object on stdout`;

interface TensorRow {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
  file: string;
}

/** Every tensor's header, from the safetensors files or the GGUF file of the source. */
async function tensorsOf(source: ModelSource): Promise<{ format: string; files: string[]; tensors: TensorRow[] }> {
  const w = await listWeightFiles(source);
  const tensors: TensorRow[] = [];
  for (const file of w.files) {
    const range = await source.open(file);
    try {
      if (w.format === 'gguf') {
        const g = await GgufFile.open(range);
        for (const t of g.tensors.values()) tensors.push({ name: t.name, dtype: t.ggmlType, shape: t.shape, bytes: t.nBytes, file });
      } else {
        const st = await SafetensorsFile.open(range);
        for (const t of st.tensors.values()) tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.end - t.start, file });
      }
    } finally {
      await range.close?.();
    }
  }
  return { format: w.format, files: w.files, tensors };
}

interface MemoryRow {
  quant: QuantChoice;
  weightsBytes: number;
  kvCacheBytes: number;
  totalBytes: number;
}

async function memoryTable(source: ModelSource, maxPositions: number | undefined): Promise<{ config: DecoderConfig; maxPositions: number; rows: MemoryRow[] }> {
  const rows: MemoryRow[] = [];
  let config: DecoderConfig | undefined;
  let positions = 0;
  for (const quant of Object.keys(QUANT_CHOICES) as QuantChoice[]) {
    const q = quantizationConfig(quant);
    const opts = q ? { quantizationConfig: q } : {};
    const full = await planModuleSizes(source, { ...opts, ...(maxPositions !== undefined ? { maxPositions } : {}) });
    config = full.config;
    positions = maxPositions ?? Math.min(full.config.maxPositions, 4096);
    const total = full.sizes.reduce((a, m) => a + m.bytes, 0);
    // the plan counts each layer's KV cache with the layer
    const weights = total - config.numLayers * kvCacheBytesPerLayer(config, positions);
    rows.push({ quant, weightsBytes: weights, kvCacheBytes: total - weights, totalBytes: total });
  }
  return { config: config!, maxPositions: positions, rows };
}

interface DevicePlan {
  quant: QuantChoice;
  budgets: { gpu: number; cpu?: number };
  bytes: { gpu: number; cpu: number };
  /** Module -> device, in forward order. */
  modules: Record<string, 'gpu' | 'cpu'>;
}

/** deviceMap 'auto' for the given budgets, as fromPretrained would place the modules. */
async function devicePlan(source: ModelSource, quant: QuantChoice, maxPositions: number | undefined, gpu: number, cpu: number | undefined): Promise<DevicePlan> {
  const q = quantizationConfig(quant);
  const { sizes } = await planModuleSizes(source, { ...(q ? { quantizationConfig: q } : {}), ...(maxPositions !== undefined ? { maxPositions } : {}) });
  const plan = planDevices('auto', sizes, { gpu, cpu: cpu ?? Infinity });
  const byName = new Map(sizes.map((m) => [m.name, m]));
  const bytes = { gpu: 0, cpu: 0 };
  for (const m of sizes) bytes[plan.get(m.name)!] += held(m, plan, byName);
  return { quant, budgets: { gpu, ...(cpu !== undefined ? { cpu } : {}) }, bytes, modules: Object.fromEntries(plan) };
}

/** A module's bytes on its device; a tied lm_head away from its table holds a copy of it. */
function held(m: ModuleSize, plan: Map<string, string>, byName: Map<string, ModuleSize>): number {
  if (m.tiedTo === undefined) return m.bytes;
  return plan.get(m.tiedTo) === plan.get(m.name) ? 0 : byName.get(m.tiedTo)?.bytes ?? 0;
}

/** 'model.layers.0', …, 'model.layers.17' -> 'model.layers.0-17' (runs of consecutive layers). */
function moduleRuns(names: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const m = /^(.*\.)(\d+)$/.exec(names[i]!);
    if (!m) {
      out.push(names[i]!);
      continue;
    }
    let j = i;
    while (j + 1 < names.length && names[j + 1] === `${m[1]}${Number(m[2]) + (j + 1 - i)}`) j++;
    out.push(j > i ? `${names[i]}-${Number(m[2]) + (j - i)}` : names[i]!);
    i = j;
  }
  return out.join(', ');
}

const pad = (s: string, n: number) => s.padEnd(n);
const padL = (s: string, n: number) => s.padStart(n);

export async function inspect(argv: string[]): Promise<void> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      tensors: { type: 'boolean', default: false },
      'max-positions': { type: 'string' },
      'max-gpu-memory': { type: 'string' },
      'max-cpu-memory': { type: 'string' },
      quant: { type: 'string', default: 'nf4-dq' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new UsageError('inspect needs exactly one model (a folder, .gguf file, hub id or URL)');
  const maxPositions = intOption('max-positions', v['max-positions'], 1);
  const planQuant = quantChoice(v.quant!);
  const size = (name: string, x: string | undefined) => {
    if (x === undefined) return undefined;
    try {
      return parseBytes(x, `--${name}`);
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
  };
  const gpuBudget = size('max-gpu-memory', v['max-gpu-memory']);
  const cpuBudget = size('max-cpu-memory', v['max-cpu-memory']);
  if (cpuBudget !== undefined && gpuBudget === undefined) throw new UsageError('--max-cpu-memory plans with --max-gpu-memory: give both');
  await init(); // the headers are parsed in wasm
  // headers only: cached files from the cache, the rest read by range from the hub, nothing downloaded whole
  const source = await resolveSource(positionals[0]!, { cache: { download: false } });
  const { format, files, tensors } = await tensorsOf(source);
  const memory = await memoryTable(source, maxPositions);
  const plan = gpuBudget !== undefined ? await devicePlan(source, planQuant, maxPositions, gpuBudget, cpuBudget) : undefined;
  const dtypes = new Map<string, { tensors: number; params: number; bytes: number }>();
  for (const t of tensors) {
    const d = dtypes.get(t.dtype) ?? { tensors: 0, params: 0, bytes: 0 };
    d.tensors++;
    d.params += t.shape.reduce((a, b) => a * b, 1);
    d.bytes += t.bytes;
    dtypes.set(t.dtype, d);
  }
  const c = memory.config;
  const model = { source: source.description, format, files, family: c.family, layers: c.numLayers, hiddenSize: c.hiddenSize, heads: c.numHeads, kvHeads: c.numKvHeads, vocabSize: c.vocabSize, maxPositions: c.maxPositions };
  if (v.json) {
    process.stdout.write(`${JSON.stringify({ model, dtypes: Object.fromEntries(dtypes), memory: { maxPositions: memory.maxPositions, rows: memory.rows }, ...(plan ? { plan } : {}), tensors })}\n`);
    return;
  }
  const params = [...dtypes.values()].reduce((a, d) => a + d.params, 0);
  const lines = [
    `${model.source}: ${format} (${files.join(', ')})`,
    `${c.family}, ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads (${c.numKvHeads} KV), vocab ${c.vocabSize}, context ${c.maxPositions}`,
    `${tensors.length} tensors, ${(params / 1e6).toFixed(1)} M parameters`,
    '',
    `${pad('dtype', 8)}${padL('tensors', 8)}${padL('params', 14)}${padL('stored', 14)}`,
    ...[...dtypes].map(([d, s]) => `${pad(d, 8)}${padL(String(s.tensors), 8)}${padL(s.params.toLocaleString('en-US'), 14)}${padL(MiB(s.bytes), 14)}`),
    '',
    `memory once loaded (--quant; the loader's plan, KV cache for ${memory.maxPositions} positions in f32):`,
    `${pad('quant', 8)}${padL('weights', 14)}${padL('KV cache', 14)}${padL('total', 14)}`,
    ...memory.rows.map((r) => `${pad(r.quant, 8)}${padL(MiB(r.weightsBytes), 14)}${padL(MiB(r.kvCacheBytes), 14)}${padL(MiB(r.totalBytes), 14)}`),
    '(nf4-dq is planned with f32 absmax, as the GPU holds it; the CPU keeps 1 byte per block, a little less)',
  ];
  if (plan) {
    const on = (d: 'gpu' | 'cpu') => Object.keys(plan.modules).filter((n) => plan.modules[n] === d);
    lines.push('', `deviceMap 'auto' with --quant ${plan.quant}, GPU budget ${MiB(plan.budgets.gpu)}${plan.budgets.cpu !== undefined ? `, CPU budget ${MiB(plan.budgets.cpu)}` : ''}:`);
    for (const d of ['gpu', 'cpu'] as const) lines.push(`${pad(d, 5)}${padL(MiB(plan.bytes[d]), 12)}  ${moduleRuns(on(d)) || '-'}`);
  }
  if (v.tensors) {
    lines.push('', `${pad('tensor', 48)}${pad('dtype', 8)}${pad('shape', 16)}${padL('bytes', 12)}`);
    for (const t of tensors) lines.push(`${pad(t.name, 48)}${pad(t.dtype, 8)}${pad(t.shape.join(' x '), 16)}${padL(String(t.bytes), 12)}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
