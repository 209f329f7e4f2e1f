import { callWasm } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import type { QuantType4 } from './quant-state.js';

/** The 16-entry table of a 4-bit type (bitsandbytes' `get_4bit_type`; lowbit's for int4). */
export function quantMap(quantType: QuantType4): Float32Array {
  return callWasm(() => wasm().quantMap(quantType));
}

/** bitsandbytes' `create_dynamic_map(signed)`: the 8-bit code of quantize_blockwise. */
export function dynamicMap(signed = true): Float32Array {
  return callWasm(() => wasm().dynamicMap(signed));
}
