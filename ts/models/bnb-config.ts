/** transformers' BitsAndBytesConfig, with its field names in camelCase and its defaults. */
import { LowbitError } from '../errors.js';
import type { BnbQuantizationConfigJson } from '../loading/bnb-checkpoint.js';
import type { QuantizeOnLoad } from '../loading/load-weights.js';
import { bnbQuantizationConfig } from '../loading/save-bnb.js';

/** The fields of BitsAndBytesConfig, camelCased (`loadIn4bit`, `bnb4bitQuantType`, ...). */
export interface BitsAndBytesConfigOptions {
  /** Quantize the linear weights to 4 bits (block-wise, `bnb4bit*` options). One of loadIn4bit / loadIn8bit must be true. */
  loadIn4bit?: boolean;
  /** Quantize the linear weights to LLM.int8 (int8 rows + absmax, `llmInt8*` options). */
  loadIn8bit?: boolean;
  /** 'fp4' by default, as in transformers. 'int4' is lowbit's own (not loadable by bitsandbytes). */
  bnb4bitQuantType?: 'nf4' | 'fp4' | 'int4';
  /** Double quantization: the per-block absmax quantized again to 8 bits (about 0.35 bits per weight saved at blocksize 64); default false. */
  bnb4bitUseDoubleQuant?: boolean;
  /** Recorded; lowbit's CPU kernels compute in f32 whatever this says (see README). */
  bnb4bitComputeDtype?: 'float32' | 'float16' | 'bfloat16';
  /** How packed 4-bit weights are stored: only 'uint8' (the default). */
  bnb4bitQuantStorage?: 'uint8';
  /** 4-bit blocksize (bitsandbytes: 64). */
  bnb4bitBlocksize?: number;
  /** LLM.int8 outlier threshold (default 6.0): input columns with a value at or above it are computed in float. */
  llmInt8Threshold?: number;
  /** Modules left unquantized, by name (default: ['lm_head']); applies to 4-bit too, as in transformers. */
  llmInt8SkipModules?: string[] | null;
  /** Not supported (training with fp16 master weights); true is an INVALID_ARGUMENT error. */
  llmInt8HasFp16Weight?: boolean;
  /** Not supported (use deviceMap for CPU / GPU splits); true is an INVALID_ARGUMENT error. */
  llmInt8EnableFp32CpuOffload?: boolean;
}

/** transformers' BitsAndBytesConfig: quantize the linear weights to 4 bits (nf4 / fp4, optionally double-quantized) or LLM.int8 while they load. */
export class BitsAndBytesConfig {
  readonly loadIn4bit: boolean;
  readonly loadIn8bit: boolean;
  readonly bnb4bitQuantType: 'nf4' | 'fp4' | 'int4';
  readonly bnb4bitUseDoubleQuant: boolean;
  readonly bnb4bitComputeDtype: 'float32' | 'float16' | 'bfloat16';
  readonly bnb4bitBlocksize: number;
  readonly llmInt8Threshold: number;
  readonly llmInt8SkipModules: string[] | null;

  constructor(o: BitsAndBytesConfigOptions = {}) {
    const bad = (m: string): never => {
      throw new LowbitError('INVALID_ARGUMENT', `BitsAndBytesConfig: ${m}`);
    };
    this.loadIn4bit = o.loadIn4bit ?? false;
    this.loadIn8bit = o.loadIn8bit ?? false;
    if (this.loadIn4bit && this.loadIn8bit) bad('loadIn4bit and loadIn8bit cannot both be true');
    if (!this.loadIn4bit && !this.loadIn8bit) bad('set loadIn4bit or loadIn8bit');
    this.bnb4bitQuantType = o.bnb4bitQuantType ?? 'fp4';
    if (!['nf4', 'fp4', 'int4'].includes(this.bnb4bitQuantType)) bad(`bnb4bitQuantType must be 'nf4', 'fp4' or 'int4', got '${this.bnb4bitQuantType}'`);
    this.bnb4bitUseDoubleQuant = o.bnb4bitUseDoubleQuant ?? false;
    this.bnb4bitComputeDtype = o.bnb4bitComputeDtype ?? 'float32';
    if (!['float32', 'float16', 'bfloat16'].includes(this.bnb4bitComputeDtype)) bad(`bnb4bitComputeDtype must be float32, float16 or bfloat16`);
    if ((o.bnb4bitQuantStorage ?? 'uint8') !== 'uint8') bad('only bnb4bitQuantStorage uint8 is supported');
    this.bnb4bitBlocksize = o.bnb4bitBlocksize ?? 64;
    this.llmInt8Threshold = o.llmInt8Threshold ?? 6.0;
    if (!(this.llmInt8Threshold >= 0)) bad('llmInt8Threshold must be >= 0');
    this.llmInt8SkipModules = o.llmInt8SkipModules ?? null;
    if (this.llmInt8SkipModules !== null && !(Array.isArray(this.llmInt8SkipModules) && this.llmInt8SkipModules.every((m) => typeof m === 'string'))) bad('llmInt8SkipModules must be an array of module names (or null)');
    if (!(Number.isInteger(this.bnb4bitBlocksize) && this.bnb4bitBlocksize >= 32 && this.bnb4bitBlocksize <= 4096 && (this.bnb4bitBlocksize & (this.bnb4bitBlocksize - 1)) === 0)) {
      throw new LowbitError('UNSUPPORTED_BLOCKSIZE', `BitsAndBytesConfig: bnb4bitBlocksize must be a power of two from 32 to 4096, got ${String(this.bnb4bitBlocksize)}`);
    }
    if (o.llmInt8HasFp16Weight) bad('llmInt8HasFp16Weight (training with fp16 master weights) is not supported');
    if (o.llmInt8EnableFp32CpuOffload) bad('llmInt8EnableFp32CpuOffload is for GPU/CPU splits; use deviceMap when the WebGPU backend lands');
  }

  /** What loadWeights quantizes with. */
  quantizeOnLoad(): QuantizeOnLoad {
    return {
      quantType: this.loadIn8bit ? 'int8' : this.bnb4bitQuantType,
      blocksize: this.bnb4bitBlocksize,
      doubleQuant: this.bnb4bitUseDoubleQuant,
      skipModules: this.llmInt8SkipModules ?? ['lm_head'],
    };
  }

  /** config.json's quantization_config for saving. */
  toJSON(): BnbQuantizationConfigJson {
    if (this.bnb4bitQuantType === 'int4') throw new LowbitError('UNSUPPORTED_QUANT_TYPE', 'int4 is lowbit-only: transformers cannot load it');
    return bnbQuantizationConfig({ quantType: this.loadIn8bit ? 'int8' : (this.bnb4bitQuantType as 'nf4' | 'fp4'), doubleQuant: this.bnb4bitUseDoubleQuant, computeDtype: this.bnb4bitComputeDtype, llmInt8Threshold: this.llmInt8Threshold, skipModules: this.llmInt8SkipModules });
  }
}
