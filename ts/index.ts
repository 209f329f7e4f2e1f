/* @ts-self-types="./index.d.ts" */
/**
 * lowbit: bitsandbytes-compatible 4-bit and 8-bit quantization for JavaScript runtimes.
 *
 *   import { init, quantize4bit, dequantize4bit } from 'lowbit';
 *   await init();
 *   const { packed, quantState } = quantize4bit(weights, { quantType: 'nf4', compressStatistics: true });
 */
export { init, simd128Available, wasmBuild, relaxedSimdSupported, type WasmSource, type WasmBuild, type WasmBuildChoice, type InitOptions } from './runtime/wasm.js';
export { LowbitError, type LowbitErrorCode } from './errors.js';
export { toHalf, fromHalf, type FloatDType, type HalfDType, type HalfArray, type FloatInput, type FloatOutput } from './tensor/dtypes.js';
export { QuantState, type QuantType4, type NestedState, type DictTensor, type StateDict } from './quant/quant-state.js';
export { quantize4bit, dequantize4bit, BLOCKSIZES_4BIT, type Quantize4bitOptions, type Quantized4bit, type Dequantize4bitOptions } from './quant/blockwise4.js';
export { quantizeBlockwise, dequantizeBlockwise, BLOCKSIZES_8BIT, type BlockwiseState, type QuantizeBlockwiseOptions } from './quant/blockwise8.js';
export { int8VectorwiseQuant, int8VectorwiseDequant, type Int8Vectorwise } from './quant/int8.js';
export { quantMap, dynamicMap } from './quant/codes.js';

// --- Model sources (ts/loading/sources): local folders, URLs, the Hugging Face hub, Blobs/Files;
// shard resolution and load progress.
export {
  resolveSource, localSource, urlSource, hubSource, blobSource, listWeightFiles, parseShardIndex, ProgressTracker, trackReads, isHubId, isModelSource,
  LocalSource, UrlSource, HubSource, BlobSource, DEFAULT_HUB_ENDPOINT,
  type ByteRange, type ModelSource, type SourceInput, type ResolveSourceOptions, type LocalSourceOptions, type UrlSourceOptions, type HubSourceOptions,
  type BlobInput, type BlobSourceOptions, type WeightFiles, type WeightFormat, type ListWeightFilesOptions,
  type ProgressEvent, type ProgressCallback, type ProgressTrackerOptions, type DownloadProgress,
} from './loading/sources/index.js';

// --- The model cache (ts/loading/cache): hub files in the Hugging Face cache layout (Node, Deno)
// or the Cache API (browsers).
export {
  cachedHubSource, CachedHubSource, FsHubStore, BrowserHubStore, repoFolderName, hubCacheDirFromEnv, hubOfflineFromEnv, hubTokenFromEnv,
  DEFAULT_BROWSER_CACHE_NAME,
  type HubCacheOptions, type CachedHubOptions, type CachedHubSourceOptions, type HubStore, type FileKey, type CachedFile, type BlobWriter,
} from './loading/cache/index.js';

// --- checkpoints: safetensors, bitsandbytes pre-quantized weights, quantize-on-load ----------
export { SafetensorsFile, type SafetensorsTensorInfo, type SafetensorsDType } from './loading/safetensors.js';
export { encodeSafetensors, writeSafetensorsFile, type TensorToSave } from './loading/safetensors-writer.js';
export { findBnbWeights, readBnb4bit, readBnb8bit, type BnbWeight, type Bnb4bitWeight, type Bnb8bitWeight, type BnbQuantizationConfigJson } from './loading/bnb-checkpoint.js';
export { loadWeights, isQuantizableLinear, weightBytes, type TensorMeta, type LoadedWeight, type DenseWeight, type LoadWeightsOptions, type QuantizeOnLoad } from './loading/load-weights.js';
export { blockwise8FromQuantized, q8_0ToBlockwise8, int8Code, isInt8Code, type Blockwise8Weight } from './formats/blockwise8.js';
// --- weight formats (ts/formats): one definition per format, and the format × backend table
export { FORMATS, formatOf, formatLabel, type FormatKind, type WeightFormat as WeightFormatDefinition, type DeviceKind, type SavedTensor } from './formats/index.js';
export { CAPABILITIES, supportOf, adaptWeight, checkPlacement, type Support, type PlacedFormat } from './formats/capabilities.js';
export { saveBnbCheckpoint, bnbQuantizationConfig, checkpointTensors, type BnbConfigOptions } from './loading/save-bnb.js';
export { GgufFile, dequantizeGguf, GGUF_DEQUANTIZABLE, type GgufTensorInfo, type GgufValue } from './loading/gguf.js';

// --- models (CPU inference) -------------------------------------------------------------------
export { AutoModelForCausalLM, type FromPretrainedOptions } from './models/auto.js';
export { BitsAndBytesConfig, type BitsAndBytesConfigOptions } from './models/bnb-config.js';
export { CausalLM, type GenerateOptions, type MemoryFootprint, type PrefillInfo } from './models/causal-lm.js';
export { ChatSession, type ChatSessionOptions, type ChatGenerationOptions, type ChatTurn, type ChatStats, type FinishReason } from './models/chat-session.js';
export { pipeline, type PipelineTask, type TextGenerationPipeline, type TextGenerationInput, type TextGenerationCallOptions, type TextGenerationOutput } from './pipeline.js';
export { TextStreamer, type Streamer } from './generation/streamer.js';
export { StopStrings } from './generation/stopping.js';
export type { SamplingOptions } from './generation/sampling.js';
export { parseConfig } from './models/architectures.js';
export type { DecoderConfig } from './models/config.js';
export type { Backend, Activation, LinearHandle } from './backends/backend.js';
export { deviceOf, type Device, type DeviceMap } from './models/device-map.js';
export type { BackendOptions } from './models/make-backends.js';

// --- CPU backend (wasm SIMD128 kernels) -------------------------------------------------------
export { CpuBackend, CpuActivation, CpuLinear, CpuEmbedding, CpuKvCache, CpuVector, type CpuBackendOptions, type CpuKernels } from './backends/cpu/index.js';
export { ropeInvFreq } from './tensor/rope.js';
export { denseToFloat32 } from './formats/dense.js';

// --- WebGPU backend (WGSL kernels; Node: optional package `webgpu`) ------------------------------
export {
  WebGpuBackend, GpuActivation, GpuLinear, GpuEmbedding, GpuKvCache, GpuVector, findGpu, describeAdapter, VARIANT_TABLE,
  type WebGpuBackendOptions, type AdapterDescription, type GpuQuantize4Options, type GpuStats, type KernelVariant, type VariantRow,
} from './backends/webgpu/index.js';

// --- tokenizers: tokenizer.json (@huggingface/tokenizers), GGUF tokenizer metadata, chat templates (@huggingface/jinja)
export {
  AutoTokenizer, Tokenizer, DecodeStream, tokenizerJsonFromGguf, GGUF_PRE_TOKENIZERS,
  type ChatMessage, type EncodeOptions, type DecodeOptions, type ApplyChatTemplateOptions, type AutoTokenizerOptions, type GgufTokenizerParts,
} from './tokenizer/index.js';
export { DEFAULT_TEMPLATE_LIMITS, type TemplateLimits } from './tokenizer/template-limits.js';

// --- model validation limits (ts/models/validate.ts)
export { MODEL_LIMITS, WASM32_MEMORY_BYTES } from './models/validate.js';

// --- types that the signatures above name (so that users, and the API reference, can name them too)
export type { StateFields } from './quant/quant-state.js';
export type { StoredDType } from './tensor/dtypes.js';
export type { Llama3RopeScaling } from './tensor/rope.js';
export type { SizeParams } from './formats/index.js';
export type { MaxMemory } from './models/device-map.js';
export type { ConfigJson } from './models/config.js';
export type { AttentionExtras, TokenChoice, EmbeddingHandle, KvCacheHandle, VectorHandle, LinearOptions, RopeSpec } from './backends/backend.js';
export type { PowerPreference, DeviceLostInfo } from './backends/webgpu/index.js';
