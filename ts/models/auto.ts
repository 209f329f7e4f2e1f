/** AutoModelForCausalLM.fromPretrained: source -> config -> streamed weights -> model on a backend. */
import { LowbitError } from '../errors.js';
import { loadWeights, isQuantizableLinear, type LoadedWeight, type TensorMeta } from '../loading/load-weights.js';
import { resolveSource, type ResolveSourceOptions, type SourceInput } from '../loading/sources/resolve.js';
import type { ProgressCallback } from '../loading/sources/progress.js';
import type { BitsAndBytesConfig } from './bnb-config.js';
import type { CausalLM } from './causal-lm.js';
import { parseConfig } from './config.js';
import { fromGguf, ggufWeightFile } from './gguf-llama.js';
import { GPT2_CONV1D, GPT2LMHeadModel } from './gpt2.js';
import { LlamaForCausalLM } from './llama.js';
import { WeightMap } from './weights.js';
import { buildOnBackend, type BackendChoice } from './model-backend.js';

export interface FromPretrainedOptions extends ResolveSourceOptions, BackendChoice {
  quantizationConfig?: BitsAndBytesConfig;
  /** 'cpu' or { '': 'cpu' } for now; GPU placement comes with the WebGPU backend. */
  deviceMap?: 'cpu' | Record<string, 'cpu'>;
  /** KV cache length (default: the config's max positions, at most 4096). */
  maxPositions?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

function checkDeviceMap(d: FromPretrainedOptions['deviceMap']): void {
  if (d === undefined || d === 'cpu') return;
  if (typeof d === 'object' && d !== null && Object.values(d).every((v) => v === 'cpu')) return;
  throw new LowbitError('INVALID_ARGUMENT', `deviceMap ${JSON.stringify(d)} is not supported yet: only 'cpu' (or { "": "cpu" }) until the WebGPU backend lands`);
}

export const AutoModelForCausalLM = {
  async fromPretrained(input: SourceInput, options: FromPretrainedOptions = {}): Promise<CausalLM> {
    checkDeviceMap(options.deviceMap);
    const source = await resolveSource(input, options);
    // A GGUF (named, or the only weights file): config from its metadata, llama.cpp tensor names.
    const gguf = await ggufWeightFile(source);
    if (gguf !== undefined) return fromGguf(source, gguf, options);
    const raw = await source.readJson<Record<string, unknown>>('config.json');
    const config = parseConfig(raw);
    const prequantized = raw.quantization_config !== undefined && (raw.quantization_config as { quant_method?: string }).quant_method === 'bitsandbytes';
    const quantization = prequantized ? undefined : options.quantizationConfig?.quantizeOnLoad();
    const skip = quantization?.skipModules ?? ['lm_head'];
    // GPT-2's Conv1D weights are transposed before quantizing: the model does that itself.
    const shouldQuantize = (t: TensorMeta) => !(config.family === 'gpt2' && GPT2_CONV1D.test(t.name)) && isQuantizableLinear(t, skip);
    const tensors = new Map<string, LoadedWeight>();
    for await (const w of loadWeights(source, { ...(quantization ? { quantization } : {}), shouldQuantize, ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}) })) {
      tensors.set(w.name, w);
    }
    const maxPositions = options.maxPositions ?? Math.min(config.maxPositions, 4096);
    const weights = new WeightMap(tensors);
    const threshold = options.quantizationConfig?.llmInt8Threshold ?? ((raw.quantization_config as { llm_int8_threshold?: number } | undefined)?.llm_int8_threshold ?? 6);
    return buildOnBackend<CausalLM>(options, (backend) =>
      config.family === 'gpt2' ? new GPT2LMHeadModel(config, backend, weights, maxPositions, quantization, threshold) : new LlamaForCausalLM(config, backend, weights, maxPositions, threshold),
    );
  },
};
