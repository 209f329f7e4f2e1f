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
import { init } from '../runtime/wasm.js';
import type { DecoderConfig } from '../models/config.js';
import { intOption, MiB, QUANT_CHOICES, quantizationConfig, UsageError, type QuantChoice } from './common.js';

export const INSPECT_USAGE = `lowbit inspect <dir | file.gguf | org/name | url> [options]

  --tensors              list every tensor (name, dtype, shape, bytes)
  --max-positions N      KV cache length for the memory table (default: the model's, at most 4096)
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
    // The KV cache is part of each layer's planned bytes: plan once without it.
    const full = await planModuleSizes(source, { ...opts, ...(maxPositions !== undefined ? { maxPositions } : {}) });
    const bare = await planModuleSizes(source, { ...opts, maxPositions: 0 });
    config = full.config;
    positions = maxPositions ?? Math.min(full.config.maxPositions, 4096);
    const total = full.sizes.reduce((a, m) => a + m.bytes, 0);
    const weights = bare.sizes.reduce((a, m) => a + m.bytes, 0);
    rows.push({ quant, weightsBytes: weights, kvCacheBytes: total - weights, totalBytes: total });
  }
  return { config: config!, maxPositions: positions, rows };
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
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new UsageError('inspect needs exactly one model (a folder, .gguf file, hub id or URL)');
  const maxPositions = intOption('max-positions', v['max-positions'], 1);
  await init(); // the headers are parsed in wasm
  const source = await resolveSource(positionals[0]!);
  const { format, files, tensors } = await tensorsOf(source);
  const memory = await memoryTable(source, maxPositions);
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
    process.stdout.write(`${JSON.stringify({ model, dtypes: Object.fromEntries(dtypes), memory: { maxPositions: memory.maxPositions, rows: memory.rows }, tensors })}\n`);
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
  if (v.tensors) {
    lines.push('', `${pad('tensor', 48)}${pad('dtype', 8)}${pad('shape', 16)}${padL('bytes', 12)}`);
    for (const t of tensors) lines.push(`${pad(t.name, 48)}${pad(t.dtype, 8)}${pad(t.shape.join(' x '), 16)}${padL(String(t.bytes), 12)}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
