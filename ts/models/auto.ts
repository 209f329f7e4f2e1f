/** AutoModelForCausalLM.fromPretrained: source -> config -> streamed weights -> model on a backend. */
import { LowbitError } from '../errors.js';
import { init } from '../runtime/wasm.js';
import type { Backend, LinearOptions } from '../backends/backend.js';
import { loadWeights, isQuantizableLinear, type LoadedWeight, type TensorMeta } from '../loading/load-weights.js';
import { resolveSource, type ResolveSourceOptions, type SourceInput } from '../loading/sources/resolve.js';
import type { ProgressCallback } from '../loading/sources/progress.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import { CachedHubSource } from '../loading/cache/cached-hub-source.js';
import { BitsAndBytesConfig, type BitsAndBytesConfigOptions } from './bnb-config.js';
import type { CausalLM, ModelWeights } from './causal-lm.js';
import { parseConfig } from './architectures.js';
import { checkDeviceMap, checkModuleFormats, moduleNames, planDevices, singleDevice, wantsGpu, type Device, type ModuleSize } from './device-map.js';
import { backendFor, budgetsOf, makeCpuBackend, makeGpuBackend, threadedQuantizer, type BackendOptions } from './make-backends.js';
import { everyFormatNativeOn } from '../formats/capabilities.js';
import { moduleSizes, safetensorsInfos } from './module-sizes.js';
import { asAbortError } from '../runtime/scheduling.js';
import { checkLoadOptions, show, checkRuntimeMemory, configJsonFields, resolveMaxPositions, validateConfig, validateTensors } from './validate.js';
import type { CausalLMOptions, Placement } from './causal-lm.js';
import type { DecoderConfig } from './config.js';
import type { WebGpuBackend } from '../backends/webgpu/index.js';
import { fromGguf, ggufWeightFile } from './gguf-model.js';
import { streamInto } from './stream-build.js';
import { architectureOf } from './architectures.js';
import { transposeDense } from './weights.js';
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

/** Options of `AutoModelForCausalLM.fromPretrained`. */
export interface FromPretrainedOptions extends ResolveSourceOptions, BackendOptions {
  quantizationConfig?: BitsAndBytesConfig;
  /** KV cache length (default: the config's max positions, at most 4096). */
  maxPositions?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  /** Load weights holding NaN / Inf instead of refusing them with NON_FINITE (default false). */
  allowNonFinite?: boolean;
  /** Also load the tokenizer found next to the weights into `model.tokenizer` (default true; undefined when there is none or lowbit cannot build it). */
  tokenizer?: boolean;
}

/** Picks each module's backend once sizes are known (before any weight is read). */
export type Placer = (config: DecoderConfig, sizes: () => Promise<ModuleSize[]>, memory: RuntimeNeeds) => Promise<{ placement: Placement; options: CausalLMOptions }>;

/** What checkRuntimeMemory needs besides the module sizes. */
export interface RuntimeNeeds {
  maxPositions: number;
  /** Bytes a load holds in wasm memory for one tensor at most besides the weights (a tensor being quantized or dequantized, as f32). */
  largestTensorBytes: number;
}

/** Loads a causal language model (Llama, Mistral, Qwen2, Qwen3, GPT-2; safetensors or GGUF) as transformers' class of the same name does: `await AutoModelForCausalLM.fromPretrained(source, options)`. */
export const AutoModelForCausalLM = {
  /**
   * Loads a model onto `deviceMap`: 'cpu' (default, wasm), 'gpu' (WebGPU; in Node pass `gpu` or
   * install the optional `webgpu` package), 'auto' (the GPU up to maxMemory.gpu, the rest on the
   * CPU) or a per-module map (device-map.ts). The GPU backend is made first, so a missing adapter
   * fails before any weight is read; sizes are checked against the budgets before loading.
   */
  async fromPretrained(input: SourceInput, given: FromPretrainedOptions = {}): Promise<CausalLM> {
    const options = checkLoadOptions(given, (plain) => new BitsAndBytesConfig(plain as BitsAndBytesConfigOptions));
    checkDeviceMap(options.deviceMap);
    // Tensor headers are parsed in wasm before any backend may exist.
    await init(options.webgpu?.wasm);
    const owned: Backend[] = [];
    try {
      let gpu: WebGpuBackend | undefined;
      if (options.backend !== undefined) {
        await backendFor(options);
      } else if (wantsGpu(options.deviceMap)) {
        try {
          gpu = await makeGpuBackend(options);
          owned.push(gpu);
        } catch (e) {
          // 'auto' without WebGPU: everything on the CPU (accelerate does the same without a GPU).
          if (!(options.deviceMap === 'auto' && e instanceof LowbitError && e.code === 'WEBGPU_UNAVAILABLE')) throw e;
        }
      }
      const placer: Placer = async (config, sizes, needs) => {
        const modelOptions: CausalLMOptions = { keepHostWeights: options.keepHostWeights !== false, cpuBackend: () => makeCpuBackend(options) };
        // Weight formats are checked against their devices before any weight is read (converted or refused).
        const formatsChecked = (plan: Map<string, Device>, modules: ModuleSize[]) => ({ ...modelOptions, formatConversions: checkModuleFormats(plan, modules) });
        // Sizes always: a model whose CPU part cannot fit one wasm32 memory is refused up front,
        // with or without maxMemory (sizes come from headers; nothing is allocated yet).
        const all = await sizes();
        if (options.backend !== undefined) {
          const d: Device = options.backend.device === 'cpu' ? 'cpu' : 'gpu';
          checkRuntimeMemory(config, all, () => d, needs.maxPositions, needs.largestTensorBytes, (options.backend as { threads?: number }).threads ?? 1);
          const plan = new Map(moduleNames(config).map((n) => [n, d]));
          return { placement: options.backend, options: formatsChecked(plan, all) };
        }
        const map = options.deviceMap ?? 'cpu';
        const { budgets, explicit } = budgetsOf(options, gpu);
        const plan = planDevices(gpu === undefined && map === 'auto' ? 'cpu' : map, all, budgets, explicit);
        const checkedOptions = formatsChecked(plan, all);
        const used = new Set(plan.values());
        let cpu: Backend | undefined;
        if (used.has('cpu')) {
          cpu = await makeCpuBackend(options);
          owned.push(cpu);
          // Per wasm instance: threads split the weights (known once the backend exists).
          checkRuntimeMemory(config, all, (m) => plan.get(m) ?? 'cpu', needs.maxPositions, needs.largestTensorBytes, (cpu as { threads?: number }).threads ?? 1);
        }
        if (gpu !== undefined && !used.has('gpu')) {
          owned.splice(owned.indexOf(gpu), 1);
          gpu.dispose();
          gpu = undefined;
        }
        const g = gpu;
        return { placement: (name: string) => (plan.get(name) === 'gpu' ? g! : cpu!), options: checkedOptions };
      };
      const source = await resolveSource(input, options);
      // A hub model not cached yet: download its weights first, with the overall total known.
      if (source instanceof CachedHubSource) {
        // A repository lowbit cannot list its weights of fails below with the loader's own error.
        const weights = await listWeightFiles(source, { checkFiles: false }).catch(() => undefined);
        if (weights !== undefined) await source.prefetch(weights.files);
      }
      // The tokenizer first: it is small, and a broken one fails before any weight is read.
      const t = await tokenizerOf(source, options);
      const model = await load(source, options, placer);
      model.ownedBackends.push(...owned);
      model.tokenizer = t.tokenizer;
      model.tokenizerUnavailable = t.reason;
      return model;
    } catch (e) {
      for (const b of owned) b.dispose();
      throw asAbortError(e, options.signal, 'fromPretrained');
    }
  },
};

/**
 * The loader's own size plan for a checkpoint under `options` (quantizationConfig,
 * maxPositions): bytes per module, KV cache included, from tensor headers only — no weight is
 * read and no backend made. What `lowbit inspect` shows; deviceMap 'auto' budgets with it.
 */
export async function planModuleSizes(source: ModelSource, options: FromPretrainedOptions = {}): Promise<{ config: DecoderConfig; sizes: ModuleSize[] }> {
  await init(options.webgpu?.wasm);
  let plan: { config: DecoderConfig; sizes: ModuleSize[] } | undefined;
  const planned = new Error('planned');
  try {
    // load() asks the placer for sizes before it reads any weight; stop it right there.
    await load(source, options, async (config, sizes) => {
      plan = { config, sizes: await sizes() };
      throw planned;
    });
  } catch (e) {
    if (e !== planned) throw e;
  }
  return plan!;
}

async function load(source: ModelSource, options: FromPretrainedOptions, placer: Placer): Promise<CausalLM> {
  // A GGUF (named, or the only weights file): config from its metadata, llama.cpp tensor names.
  const gguf = await ggufWeightFile(source);
  if (gguf !== undefined) return fromGguf(source, gguf, options, placer);
  const raw = await source.readJson<unknown>('config.json');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new LowbitError('MALFORMED_FILE', `config.json must be a JSON object, got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`, { file: 'config.json' });
  const config = parseConfig(raw as Record<string, unknown>);
  validateConfig(config, 'config.json', configJsonFields(config));
  const q = (raw as Record<string, unknown>).quantization_config;
  const prequantized = typeof q === 'object' && q !== null && (q as { quant_method?: unknown }).quant_method === 'bitsandbytes';
  const quantization = prequantized ? undefined : options.quantizationConfig?.quantizeOnLoad();
  const skip = quantization?.skipModules ?? ['lm_head'];
  const maxPositions = resolveMaxPositions(options.maxPositions, config);
  const arch = architectureOf(config);
  // Weights the architecture stores [in, out] (GPT-2's Conv1D): loadWeights transposes the ones it
  // quantizes (bitsandbytes holds them [out, in]); the rest are transposed here as they arrive,
  // so the model sees nn.Linear layouts only.
  const conv1d = (name: string) => arch.transposedWeights?.test(name) === true;
  const shouldQuantize = (t: TensorMeta) => isQuantizableLinear(t, skip);
  const toLinearLayout = (w: LoadedWeight): LoadedWeight => (w.kind === 'dense' && conv1d(w.name) ? transposeDense(w) : w);
  // Every header first: the tensors must be the ones the config implies before anything is built.
  const infos = await safetensorsInfos(source, (t) => quantization !== undefined && shouldQuantize(t), options.signal);
  validateTensors(config, infos, 'config.json', configJsonFields(config));
  // Quantizing a tensor holds it in wasm memory as f32 for a moment (dense ones are the weights themselves).
  const largestTensorBytes = infos.reduce((m, t) => Math.max(m, t.quantize ? t.shape.reduce((a, b) => a * b, 1) * 4 : 0), 0);
  const { placement, options: modelOptions } = await placer(config, async () => moduleSizes(config, infos, quantization, maxPositions), { maxPositions, largestTensorBytes });
  const saved = (prequantized ? q : undefined) as { llm_int8_threshold?: number; bnb_4bit_compute_dtype?: string } | undefined;
  const linear: LinearOptions = {
    int8Threshold: options.quantizationConfig?.llmInt8Threshold ?? saved?.llm_int8_threshold ?? 6,
    // A pre-quantized checkpoint computes in the dtype it was saved with, as transformers does.
    computeDtype: prequantized ? computeDtypeOf(saved?.bnb_4bit_compute_dtype) : options.quantizationConfig?.bnb4bitComputeDtype ?? 'float32',
  };
  const make = (weights: ModelWeights): CausalLM => arch.create(config, { placement, weights, maxPositions, linear, options: modelOptions });
  const quantize4bit = quantization ? threadedQuantizer(placement, arch.moduleNames(config)) : undefined;
  return streamInto(config, make, (o) => loadWeights(source, { ...(quantization ? { quantization } : {}), ...(quantize4bit ? { quantize4bit } : {}), shouldQuantize, conv1d, ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.signal ? { signal: options.signal } : {}), ...(options.allowNonFinite ? { allowNonFinite: true } : {}), ...o }), toLinearLayout);
}

/** config.json's bnb_4bit_compute_dtype ('float16', 'torch.bfloat16', …) as a LinearOptions dtype. */
function computeDtypeOf(v: unknown): LinearOptions['computeDtype'] {
  if (v !== undefined && typeof v !== 'string') throw new LowbitError('MALFORMED_FILE', `config.json: quantization_config.bnb_4bit_compute_dtype must be a string, got ${show(v)}`, { file: 'config.json' });
  const name = v?.replace(/^torch\./, '');
  if (name === undefined || name === 'float32') return 'float32';
  if (name === 'float16' || name === 'bfloat16') return name;
  throw new LowbitError('MALFORMED_FILE', `config.json: quantization_config.bnb_4bit_compute_dtype is '${v}'; expected float32, float16 or bfloat16`);
}
