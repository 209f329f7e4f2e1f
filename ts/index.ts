/* @ts-self-types="./index.d.ts" */
/**
 * lowbit: bitsandbytes-compatible 4-bit and 8-bit quantization for JavaScript runtimes.
 *
 *   import { init, quantize4bit, dequantize4bit } from 'lowbit';
 *   await init();
 *   const { packed, quantState } = quantize4bit(weights, { quantType: 'nf4', compressStatistics: true });
 */
export { init, simd128Available, type WasmSource } from './runtime/wasm.js';
export { LowbitError, type LowbitErrorCode } from './errors.js';
export { toHalf, fromHalf, type FloatDType, type HalfDType, type HalfArray, type FloatInput, type FloatOutput } from './tensor/dtypes.js';
export { QuantState, type QuantType4, type NestedState, type DictTensor, type StateDict } from './quant/quant-state.js';
export { quantize4bit, dequantize4bit, BLOCKSIZES_4BIT, type Quantize4bitOptions, type Quantized4bit, type Dequantize4bitOptions } from './quant/blockwise4.js';
export { quantizeBlockwise, dequantizeBlockwise, BLOCKSIZES_8BIT, type BlockwiseState, type QuantizeBlockwiseOptions } from './quant/blockwise8.js';
export { int8VectorwiseQuant, int8VectorwiseDequant, type Int8Vectorwise } from './quant/int8.js';
export { quantMap, dynamicMap } from './quant/codes.js';
