import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import type { FloatDType } from '../tensor/dtypes.js';

/** 4-bit formats: bitsandbytes' NF4 and FP4, and lowbit's symmetric INT4 (not loadable by bitsandbytes). */
export type QuantType4 = 'nf4' | 'fp4' | 'int4';

/** One tensor of a state dict, as safetensors stores it. */
export interface DictTensor {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}
/** A QuantState as the tensors transformers saves next to a 4-bit weight (`toDict` / `QuantState.fromDict`). */
export type StateDict = Record<string, DictTensor>;

/** The second level of double quantization (bitsandbytes' `state2`). */
export interface NestedState {
  /** f32 absmax of each block of 256 quantized absmax values. */
  absmax: Float32Array;
  /** The 256-entry dynamic map the absmax were quantized with. */
  code: Float32Array;
  /** Always 256 (bitsandbytes' nested blocksize). */
  blocksize: number;
  dtype: FloatDType;
}

/** The plain-object form that crosses the wasm boundary. */
export interface StateFields {
  quantType: QuantType4;
  blocksize: number;
  dtype: FloatDType;
  shape: number[];
  code: Float32Array;
  absmax: Float32Array | Uint8Array;
  offset?: number;
  state2?: NestedState;
}

/**
 * Everything needed to dequantize a 4-bit tensor — bitsandbytes' `QuantState`, field for field.
 * `toDict()` / `fromDict()` convert to and from the exact tensors bitsandbytes and transformers
 * save next to each 4-bit weight (`weight.absmax`, `weight.quant_map`, `weight.nested_absmax`,
 * `weight.nested_quant_map`, `weight.quant_state.bitsandbytes__nf4`).
 */
export class QuantState {
  /** The 4-bit code: 'nf4', 'fp4' or 'int4'. */
  readonly quantType: QuantType4;
  /** Elements per absmax block. */
  readonly blocksize: number;
  /** dtype of the original tensor (the default output dtype of dequantization). */
  readonly dtype: FloatDType;
  /** Shape of the original tensor. */
  readonly shape: readonly number[];
  /** The 16-entry code (`quant_map`). */
  readonly code: Float32Array;
  /** f32 absmax per block, or, when double-quantized, the 8-bit codes of absmax - offset. */
  readonly absmax: Float32Array | Uint8Array;
  /** Mean subtracted from the absmax before double quantization. */
  readonly offset?: number;
  /** Double quantization: the 8-bit block-wise state of the absmax (bitsandbytes' `state2`). */
  readonly state2?: NestedState;

  /** Builds a state from fields; throws INCONSISTENT_STATE when they disagree. */
  constructor(fields: StateFields) {
    const f = callWasm(() => wasm().validateQuantState(fields)) as StateFields;
    this.quantType = f.quantType;
    this.blocksize = f.blocksize;
    this.dtype = f.dtype;
    this.shape = Object.freeze([...f.shape]);
    this.code = f.code;
    this.absmax = f.absmax;
    if (f.state2) {
      this.offset = f.offset;
      this.state2 = f.state2;
    }
  }

  /** True when the absmax is double-quantized (bitsandbytes' `compress_statistics`). */
  get nested(): boolean {
    return this.state2 !== undefined;
  }

  /** Number of elements of the original tensor. */
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The per-block f32 absmax (rebuilt from the nested codes when double-quantized). */
  absmaxF32(): Float32Array {
    return callWasm(() => wasm().absmaxF32(this.fields()));
  }

  /** The JSON bitsandbytes packs into `quant_state.bitsandbytes__<type>`, byte for byte. */
  toJSONString(): string {
    return callWasm(() => wasm().quantStateJson(this.fields()));
  }

  /** `QuantState.as_dict(packed=True)`: prefix each key with `<module>.weight.` to save it. */
  toDict(): StateDict {
    return callWasm(() => wasm().quantStateToDict(this.fields())) as StateDict;
  }

  /**
   * `QuantState.from_dict`: accepts the keys with or without their module prefix
   * (`model.layers.0.mlp.down_proj.weight.absmax` or `absmax`). Pass only one weight's entries.
   */
  static fromDict(dict: StateDict): QuantState {
    if (dict === null || typeof dict !== 'object') throw new LowbitError('INVALID_ARGUMENT', 'fromDict expects an object of { dtype, shape, data } entries');
    return new QuantState(callWasm(() => wasm().quantStateFromDict(dict)) as StateFields);
  }

  /** @internal the plain fields passed to wasm. */
  fields(): StateFields {
    const f: StateFields = {
      quantType: this.quantType,
      blocksize: this.blocksize,
      dtype: this.dtype,
      shape: [...this.shape],
      code: this.code,
      absmax: this.absmax,
    };
    if (this.state2) {
      f.offset = this.offset;
      f.state2 = this.state2;
    }
    return f;
  }

  /** @internal */
  static fromFields(f: StateFields): QuantState {
    return new QuantState(f);
  }
}
