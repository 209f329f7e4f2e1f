/** AutoModelForCausalLM.fromPretrained: source -> config -> streamed weights -> model on a backend. */
import { LowbitError } from '../errors.js';
import type { Backend, LinearOptions } from '../backends/backend.js';
import { loadWeights, isQuantizableLinear, type LoadedWeight, type TensorMeta } from '../loading/load-weights.js';
import { resolveSource, type ResolveSourceOptions, type SourceInput } from '../loading/sources/resolve.js';
import type { ProgressCallback } from '../loading/sources/progress.js';
import type { BitsAndBytesConfig } from './bnb-config.js';
import type { CausalLM } from './causal-lm.js';
import { parseConfig } from './config.js';
import { backendFor, deviceOf, type BackendOptions } from './device-map.js';
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

export interface FromPretrainedOptions extends ResolveSourceOptions, BackendOptions {
  quantizationConfig?: BitsAndBytesConfig;
  /** KV cache length (default: the config's max positions, at most 4096). */
  maxPositions?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  /** Also load the tokenizer found next to the weights into `model.tokenizer` (default true; undefined when there is none or lowbit cannot build it). */
  tokenizer?: boolean;
}

export const AutoModelForCausalLM = {
  /**
   * Loads a model onto `deviceMap`'s device: 'cpu' (default, wasm) or 'gpu' (WebGPU; in Node pass
   * `gpu` or install the optional `webgpu` package). The backend is made first, so a missing
   * adapter fails before any weight is read.
   */
  async fromPretrained(input: SourceInput, options: FromPretrainedOptions = {}): Promise<CausalLM> {
    deviceOf(options.deviceMap);
    const { backend, owned } = await backendFor(options);
    try {
      const source = await resolveSource(input, options);
      // The tokenizer first: it is small, and a broken one fails before any weight is read.
      const t = await tokenizerOf(source, options);
      const model = await load(source, options, backend);
      if (owned) model.ownedBackend = backend;
      model.tokenizer = t.tokenizer;
      model.tokenizerUnavailable = t.reason;
      return model;
    } catch (e) {
      if (owned) backend.dispose();
      throw e;
    }
  },
};

async function load(source: ModelSource, options: FromPretrainedOptions, backend: Backend): Promise<CausalLM> {
  // A GGUF (named, or the only weights file): config from its metadata, llama.cpp tensor names.
  const gguf = await ggufWeightFile(source);
  if (gguf !== undefined) return fromGguf(source, gguf, options, backend);
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
  const saved = raw.quantization_config as { llm_int8_threshold?: number; bnb_4bit_compute_dtype?: string } | undefined;
  const linear: LinearOptions = {
    int8Threshold: options.quantizationConfig?.llmInt8Threshold ?? saved?.llm_int8_threshold ?? 6,
    // A pre-quantized checkpoint computes in the dtype it was saved with, as transformers does.
    computeDtype: prequantized ? computeDtypeOf(saved?.bnb_4bit_compute_dtype) : options.quantizationConfig?.bnb4bitComputeDtype ?? 'float32',
  };
  if (config.family === 'gpt2') return new GPT2LMHeadModel(config, backend, weights, maxPositions, quantization, linear);
  return new LlamaForCausalLM(config, backend, weights, maxPositions, linear);
}

/** config.json's bnb_4bit_compute_dtype ('float16', 'torch.bfloat16', …) as a LinearOptions dtype. */
function computeDtypeOf(v: string | undefined): LinearOptions['computeDtype'] {
  const name = v?.replace(/^torch\./, '');
  if (name === undefined || name === 'float32') return 'float32';
  if (name === 'float16' || name === 'bfloat16') return name;
  throw new LowbitError('MALFORMED_FILE', `config.json: quantization_config.bnb_4bit_compute_dtype is '${v}'; expected float32, float16 or bfloat16`);
}
