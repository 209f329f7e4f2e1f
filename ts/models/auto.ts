/** AutoModelForCausalLM.fromPretrained: source -> config -> streamed weights -> model on a backend. */
import { CpuBackend } from '../backends/cpu/index.js';
import type { Backend } from '../backends/backend.js';
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
import { AutoTokenizer, type Tokenizer } from '../tokenizer/index.js';
import type { ModelSource } from '../loading/sources/types.js';

/**
 * The source's tokenizer; undefined (with the reason) when it has none or one lowbit cannot build
 * (e.g. a SentencePiece GGUF tokenizer): the model still loads and takes inputIds. Other errors
 * (network, a malformed tokenizer.json) propagate.
 */
async function tokenizerOf(source: ModelSource, options: FromPretrainedOptions): Promise<{ tokenizer?: Tokenizer; reason?: string }> {
  if (options.tokenizer === false) return { reason: 'fromPretrained was called with tokenizer: false' };
  try {
    return { tokenizer: await AutoTokenizer.fromPretrained(source) };
  } catch (e) {
    const unusable = e instanceof LowbitError && (e.code === 'NOT_FOUND' || /^UNSUPPORTED/.test(e.message) || /has no tokenizer/.test(e.message));
    if (unusable) return { reason: e.message };
    throw e;
  }
}

export interface FromPretrainedOptions extends ResolveSourceOptions {
  quantizationConfig?: BitsAndBytesConfig;
  /** 'cpu' or { '': 'cpu' } for now; GPU placement comes with the WebGPU backend. */
  deviceMap?: 'cpu' | Record<string, 'cpu'>;
  /** KV cache length (default: the config's max positions, at most 4096). */
  maxPositions?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  backend?: Backend;
  /** Also load the tokenizer found next to the weights into `model.tokenizer` (default true; undefined when there is none or lowbit cannot build it). */
  tokenizer?: boolean;
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
    const model = await loadModel(source, options);
    try {
      const t = await tokenizerOf(source, options);
      model.tokenizer = t.tokenizer;
      model.tokenizerUnavailable = t.reason;
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  },
};

async function loadModel(source: ModelSource, options: FromPretrainedOptions): Promise<CausalLM> {
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
  const backend = options.backend ?? new CpuBackend();
  const maxPositions = options.maxPositions ?? Math.min(config.maxPositions, 4096);
  const weights = new WeightMap(tensors);
  const threshold = options.quantizationConfig?.llmInt8Threshold ?? ((raw.quantization_config as { llm_int8_threshold?: number } | undefined)?.llm_int8_threshold ?? 6);
  if (config.family === 'gpt2') return new GPT2LMHeadModel(config, backend, weights, maxPositions, quantization, threshold);
  return new LlamaForCausalLM(config, backend, weights, maxPositions, threshold);
}
