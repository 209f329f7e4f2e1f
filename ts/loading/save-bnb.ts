/** Saving quantized weights as a bitsandbytes checkpoint that transformers loads. */
import { formatOf, type LoadedWeight } from '../formats/index.js';
import type { BnbQuantizationConfigJson } from './bnb-checkpoint.js';
import { writeSafetensorsFile, type TensorToSave } from './safetensors-writer.js';

/** The quantization a bitsandbytes checkpoint records in its config.json (`bnbQuantizationConfig`, `saveBnbCheckpoint`). */
export interface BnbConfigOptions {
  quantType: 'nf4' | 'fp4' | 'int8';
  doubleQuant?: boolean;
  /** Recorded for transformers (the dtype its Linear4bit computes in); default 'float32'. */
  computeDtype?: 'float32' | 'float16' | 'bfloat16';
  llmInt8Threshold?: number;
  skipModules?: string[] | null;
}

/** config.json's quantization_config, exactly as transformers' BitsAndBytesConfig.to_dict writes it (keys sorted). */
export function bnbQuantizationConfig(o: BnbConfigOptions): BnbQuantizationConfigJson {
  const four = o.quantType !== 'int8';
  return {
    _load_in_4bit: four,
    _load_in_8bit: !four,
    bnb_4bit_compute_dtype: o.computeDtype ?? 'float32',
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: four ? (o.quantType as 'nf4' | 'fp4') : 'fp4',
    bnb_4bit_use_double_quant: four ? (o.doubleQuant ?? false) : false,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: o.skipModules ?? null,
    llm_int8_threshold: o.llmInt8Threshold ?? 6.0,
    load_in_4bit: four,
    load_in_8bit: !four,
    quant_method: 'bitsandbytes',
  };
}

/** The safetensors tensors of a set of loaded weights, named as transformers names them. */
export function checkpointTensors(weights: Iterable<LoadedWeight>): TensorToSave[] {
  // Each format knows its checkpoint form (or refuses: int4, block-wise 8-bit).
  const out: TensorToSave[] = [];
  for (const w of weights) out.push(...formatOf(w).save(w));
  return out;
}

/**
 * Writes `dir/model.safetensors` and `dir/config.json` (the model's config with
 * `quantization_config`) so that `AutoModelForCausalLM.from_pretrained(dir)` loads it with
 * bitsandbytes (Node / Deno).
 */
export async function saveBnbCheckpoint(dir: string, weights: Iterable<LoadedWeight>, modelConfig: Record<string, unknown>, quantizationConfig: BnbQuantizationConfigJson): Promise<void> {
  const fsName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  await fs.mkdir(dir, { recursive: true });
  await writeSafetensorsFile(`${dir}/model.safetensors`, checkpointTensors(weights), { format: 'pt' });
  const config = { ...modelConfig, quantization_config: quantizationConfig };
  // transformers checks `isinstance(llm_int8_threshold, float)`: JSON.stringify(6.0) is "6", an int to Python.
  const text = JSON.stringify(config, null, 2).replace(/("llm_int8_threshold": )(-?\d+)(?=[,\n])/, '$1$2.0');
  await fs.writeFile(`${dir}/config.json`, text + '\n');
}
