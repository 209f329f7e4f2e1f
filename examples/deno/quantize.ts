// Quantize a weight matrix to NF4 in Deno, save-ready as bitsandbytes' state dict, and back.
//   deno run --allow-read examples/deno/quantize.ts      (from the repo root, after `npm run build`)
import { init, quantize4bit, dequantize4bit, QuantState, fromHalf, toHalf, LowbitError } from '../../dist/index.js';

await init(); // reads dist/wasm/pkg/lowbit_wasm_bg.wasm (hence --allow-read)

// A 256 x 512 bfloat16 weight, Gaussian with std 0.02 (deterministic LCG + Box-Muller).
const rows = 256, cols = 512;
let s = 42;
const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
const w32 = Float32Array.from({ length: rows * cols }, () => 0.02 * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
const w = toHalf(w32, 'bfloat16');

const { packed, quantState } = quantize4bit(w, { quantType: 'nf4', blocksize: 64, compressStatistics: true, shape: [rows, cols] });
const dict = quantState.toDict(); // weight.absmax, weight.quant_map, ... as transformers saves them
let stateBytes = 0;
for (const k in dict) stateBytes += dict[k].data.length;
console.log(`bf16 ${w.data.byteLength} bytes -> nf4 ${packed.length} + state ${stateBytes} bytes`);
console.log('state dict keys:', Object.keys(dict).join(', '));
console.log('quant_state JSON:', quantState.toJSONString());

// Reload from the dict (as a loader would) and dequantize.
const back = fromHalf({ dtype: 'bfloat16', data: dequantize4bit(packed, QuantState.fromDict(dict)) });
const orig = fromHalf(w);
let se = 0, ss = 0;
for (let i = 0; i < orig.length; i++) { se += (orig[i] - back[i]) ** 2; ss += orig[i] ** 2; }
console.log(`relative RMS error ${Math.sqrt(se / ss).toFixed(4)}`);

// Errors are LowbitError with a stable code; NON_FINITE names the first bad element.
w32[1234] = NaN;
try {
  quantize4bit(w32, { quantType: 'nf4' });
} catch (e) {
  if (!(e instanceof LowbitError)) throw e;
  console.log(`NaN input: ${e.code} at index ${e.index}`);
}
