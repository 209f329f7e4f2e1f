/**
 * `lowbit quantize IN OUT`: a checkpoint lowbit reads (safetensors folder, hub id, URL) -> a
 * bitsandbytes checkpoint transformers loads (saveBnbCheckpoint: model.safetensors + config.json
 * with quantization_config), quantized while it streams in. `--dequantize` goes back: a
 * bitsandbytes checkpoint -> plain float16 / bfloat16 / float32 safetensors. The tokenizer and
 * generation files next to the weights are copied, so OUT is a complete model folder.
 *
 * GGUF sources are refused: their tensors keep llama.cpp's names and layout, and lowbit has no
 * GGUF -> transformers name / config conversion, so transformers could not load the result.
 */
import { parseArgs } from 'node:util';
import { LowbitError } from '../errors.js';
import { init } from '../runtime/wasm.js';
import { bnbQuantizationConfig, saveBnbCheckpoint } from '../loading/save-bnb.js';
import { writeSafetensorsFile, type TensorToSave } from '../loading/safetensors-writer.js';
import { GPT2_CONV1D, loadWeights, type LoadedWeight, type QuantizeOnLoad } from '../loading/load-weights.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import { resolveSource } from '../loading/sources/resolve.js';
import type { ModelSource } from '../loading/sources/types.js';
import type { ProgressCallback } from '../loading/sources/progress.js';
import { formatOf } from '../formats/index.js';
import { toHalf } from '../tensor/dtypes.js';
import { MiB, quantChoice, UsageError } from './common.js';
import { progressBars } from './progress.js';

export const QUANTIZE_USAGE = `lowbit quantize IN OUT [--quant nf4-dq | nf4 | fp4 | int8] [options]
lowbit quantize IN OUT --dequantize [--dtype float16 | bfloat16 | float32]

  IN: a folder, hub id or URL of a safetensors checkpoint (fp32 / fp16 / bf16); OUT: a folder
  (created) that transformers' AutoModelForCausalLM.from_pretrained loads with bitsandbytes.
  --quant Q              nf4 | nf4-dq | fp4 | int8   (default nf4-dq)
  --blocksize N          4-bit blocksize (default 64)
  --dequantize           IN is a bitsandbytes checkpoint: write its weights back as floats
  --dtype D              with --dequantize: float16 (default) | bfloat16 | float32
  --force                overwrite OUT/model.safetensors and OUT/config.json if they exist
  --json                 one JSON summary on stdout`;

/** Files copied from IN to OUT when present: what makes OUT a model folder besides the weights. */
const COMPANION_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'chat_template.jinja', 'vocab.json', 'merges.txt', 'tokenizer.model'];

type FloatOut = 'float16' | 'bfloat16' | 'float32';

export async function quantize(argv: string[], signal: AbortSignal): Promise<void> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      quant: { type: 'string', default: 'nf4-dq' },
      blocksize: { type: 'string' },
      dequantize: { type: 'boolean', default: false },
      dtype: { type: 'string', default: 'float16' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 2) throw new UsageError(`quantize takes IN and OUT (got ${positionals.length} path(s))`);
  const [input, outDir] = positionals as [string, string];
  const quant = quantChoice(v.quant!);
  if (quant === 'none') throw new UsageError("--quant none writes nothing new: choose nf4, nf4-dq, fp4 or int8 (or --dequantize)");
  const blocksize = v.blocksize === undefined ? undefined : Number(v.blocksize);
  if (blocksize !== undefined && !(Number.isInteger(blocksize) && blocksize > 0)) throw new UsageError(`--blocksize must be a positive integer, got '${v.blocksize}'`);
  if (!['float16', 'bfloat16', 'float32'].includes(v.dtype!)) throw new UsageError(`--dtype must be float16, bfloat16 or float32, got '${v.dtype}'`);
  const json = v.json!;

  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  if (!v.force) {
    for (const f of ['model.safetensors', 'config.json']) {
      const p = path.join(outDir, f);
      if (await fs.stat(p).then(() => true, () => false)) throw new LowbitError('INVALID_ARGUMENT', `${p} exists: choose another OUT folder or pass --force to overwrite it`);
    }
  }

  const t0 = performance.now();
  await init();
  const progress = progressBars(process.stderr.isTTY === true && !json);
  let summary: Record<string, unknown>;
  try {
    // hub ids download into the model cache first (phase 'download')
    const source = await resolveSource(input, { signal, onProgress: (e) => progress.onLoad(e) });
    const files = await listWeightFiles(source);
    if (files.format === 'gguf') {
      throw new LowbitError('UNSUPPORTED_DTYPE', `${input} is a GGUF model: its tensors keep llama.cpp's names and layout and lowbit has no GGUF -> transformers conversion, so transformers could not load the result; quantize the model's safetensors checkpoint instead (or load the GGUF directly with --quant)`);
    }
    const config = await source.readJson<Record<string, unknown>>('config.json');
    const stored = config.quantization_config as { quant_method?: unknown } | undefined;
    const isBnb = stored !== undefined && stored !== null && stored.quant_method === 'bitsandbytes';
    if (v.dequantize && !isBnb) throw new LowbitError('INVALID_ARGUMENT', `${input} is not a bitsandbytes checkpoint (its config.json has no quantization_config with quant_method 'bitsandbytes'): nothing to dequantize`);
    if (!v.dequantize && stored !== undefined && stored !== null) {
      throw new LowbitError('INVALID_ARGUMENT', `${input} is already quantized (quantization_config: ${JSON.stringify(stored.quant_method ?? stored)}): pass --dequantize to write it back as floats, then quantize that`);
    }
    await fs.mkdir(outDir, { recursive: true });
    const onProgress: ProgressCallback = (e) => progress.onLoad({ ...e, phase: e.phase === 'weights' ? (v.dequantize ? 'read' : 'quantize') : e.phase });
    if (v.dequantize) {
      summary = await dequantizeTo(source, outDir, config, v.dtype as FloatOut, onProgress, signal, progress.stage('write', 1, 'items'));
    } else {
      const q: QuantizeOnLoad = quant === 'int8' ? { quantType: 'int8' } : { quantType: quant === 'fp4' ? 'fp4' : 'nf4', doubleQuant: quant === 'nf4-dq', ...(blocksize !== undefined ? { blocksize } : {}) };
      const weights: LoadedWeight[] = [];
      for await (const w of loadWeights(source, { quantization: q, onProgress, signal })) weights.push(w);
      const write = progress.stage('write', 1, 'items');
      const bnb = bnbQuantizationConfig(q.quantType === 'int8' ? { quantType: 'int8' } : { quantType: q.quantType as 'nf4' | 'fp4', doubleQuant: q.doubleQuant ?? false });
      await saveBnbCheckpoint(outDir, weights, config, bnb);
      write(1);
      summary = { quant, quantized: weights.filter((w) => w.kind !== 'dense').length, tensors: weights.length };
    }
    const copied: string[] = [];
    for (const f of COMPANION_FILES) {
      if (!(await source.exists(f))) continue;
      const r = await source.open(f);
      await fs.writeFile(path.join(outDir, f), await r.read(0, r.size, signal));
      await r.close?.();
      copied.push(f);
    }
    summary.copied = copied;
  } catch (e) {
    progress.stop(false);
    throw e;
  }
  progress.stop();
  const bytes = (await fs.stat(path.join(outDir, 'model.safetensors'))).size;
  const seconds = (performance.now() - t0) / 1000;
  const result = { type: 'done', input, output: outDir, ...summary, bytes, seconds: Math.round(seconds * 1000) / 1000 };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    const what = v.dequantize ? `dequantized to ${v.dtype}` : `${String(summary.quantized)} of ${String(summary.tensors)} tensors quantized (${quant})`;
    process.stderr.write(`wrote ${path.join(outDir, 'model.safetensors')} (${MiB(bytes)}) and config.json in ${seconds.toFixed(1)} s: ${what}${(summary.copied as string[]).length > 0 ? `; copied ${(summary.copied as string[]).join(', ')}` : ''}\n`);
  }
}

/** A bitsandbytes checkpoint's weights as floats of `dtype`, in transformers' layout, and its config without quantization_config. */
async function dequantizeTo(source: ModelSource, outDir: string, config: Record<string, unknown>, dtype: FloatOut, onProgress: ProgressCallback, signal: AbortSignal, write: (done: number) => void): Promise<Record<string, unknown>> {
  // GPT-2 keeps Conv1D weights [in, out]; bitsandbytes holds them [out, in] once quantized.
  const conv1d = config.model_type === 'gpt2' ? (name: string) => GPT2_CONV1D.test(name) : () => false;
  const tensors: TensorToSave[] = [];
  let dequantized = 0;
  for await (const w of loadWeights(source, { onProgress, signal })) {
    const quantized = w.kind !== 'dense';
    if (quantized) dequantized++;
    let values = formatOf(w).toFloat32(w);
    let shape = w.kind === 'dense' ? [...w.shape] : [...formatOf(w).shape(w)];
    if (quantized && conv1d(w.name) && shape.length === 2) {
      values = transpose(values, shape[0]!, shape[1]!);
      shape = [shape[1]!, shape[0]!];
    }
    tensors.push({ name: w.name, dtype: dtype === 'float32' ? 'F32' : dtype === 'float16' ? 'F16' : 'BF16', shape, data: floatBytes(values, dtype) });
  }
  await writeSafetensorsFile(`${outDir}/model.safetensors`, tensors, { format: 'pt' });
  const { quantization_config: _dropped, ...plain } = config;
  const out = { ...plain, ...('torch_dtype' in plain ? { torch_dtype: dtype } : { dtype }) };
  const fs = await import('node:fs/promises');
  await fs.writeFile(`${outDir}/config.json`, `${JSON.stringify(out, null, 2)}\n`);
  write(1);
  return { dtype, dequantized, tensors: tensors.length };
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

function floatBytes(values: Float32Array, dtype: FloatOut): Uint8Array {
  if (dtype === 'float32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const { data } = toHalf(values, dtype);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
