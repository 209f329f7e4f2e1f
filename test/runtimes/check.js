// The computation every runtime runs (Node in test/runtimes.test.ts, Deno in deno-check.ts,
// Chromium in browser/main.js): a few bitsandbytes golden 4-bit cases, one 8-bit blockwise and
// one LLM.int8 case, the QuantState dict round trip and the NON_FINITE error. Plain JavaScript
// with no imports, so all three load it as is; the caller passes the initialized library.
// Every byte array comes back as lowercase hex, so results compare with deepEqual and diff well.

/** bitsandbytes golden cases used here (see test/fixtures/bnb/manifest.json). */
export const CASES_4BIT = [
  // nf4, double quant, float16 input, 2-D [9, 40]
  'rows40_nf4_bs64_dq_f16',
  // fp4, plain absmax, bfloat16 input, 2-D [9, 40] (even last dim: bnb's C++ dequant, -0.0 for code 8)
  'rows40_fp4_bs64_plain_bf16',
  // nf4, plain absmax, float32 input, 1-D n=701, blocksize 256, partial last block
  'sweep_nf4_bs256_plain_f32_heavy',
];
export const CASE_8BIT = 'bw_bs64_f16';
export const CASE_INT8 = 'int8_act_8x64_t6';

const DTYPES = ['float32', 'float16', 'bfloat16'];

export function hex(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let s = '';
  for (let i = 0; i < u8.length; i++) s += (u8[i] < 16 ? '0' : '') + u8[i].toString(16);
  return s;
}

/** The bytes of a tensor ref {offset, nbytes, dtype, shape}, copied (so typed views are aligned). */
export function refBytes(blob, ref) {
  return blob.slice(ref.offset, ref.offset + ref.nbytes);
}

/** A tensor ref as a lowbit FloatInput (Float32Array, or {dtype, data: Uint16Array}). */
export function refInput(blob, ref) {
  const b = refBytes(blob, ref);
  if (ref.dtype === 'float32') return new Float32Array(b.buffer);
  if (ref.dtype === 'float16' || ref.dtype === 'bfloat16') return { dtype: ref.dtype, data: new Uint16Array(b.buffer) };
  throw new Error(`not a float tensor: ${ref.dtype}`);
}

function findCase(manifest, name) {
  const c = manifest.cases.find((x) => x.name === name);
  if (!c) throw new Error(`golden case ${name} is not in the manifest`);
  return c;
}

function dictHex(dict) {
  const out = {};
  for (const k of Object.keys(dict)) out[k] = { dtype: dict[k].dtype, shape: [...dict[k].shape], data: hex(dict[k].data) };
  return out;
}

function dictFromManifest(blob, asDict) {
  const d = {};
  for (const [k, ref] of Object.entries(asDict)) d[k] = { dtype: ref.dtype, shape: [...ref.shape], data: refBytes(blob, ref) };
  return d;
}

function dequantAll(lowbit, packed, state) {
  const out = {};
  for (const dt of DTYPES) out[dt] = hex(lowbit.dequantize4bit(packed, state, { outDtype: dt }));
  return out;
}

function errorInfo(f) {
  try {
    f();
    return { threw: false };
  } catch (e) {
    return { threw: true, isLowbitError: e instanceof lowbitErrorClass, name: e?.name, code: e?.code, index: e?.index };
  }
}
let lowbitErrorClass = Error;

/**
 * @param lowbit the module namespace of dist/index.js, after `await init()`
 * @param manifest parsed test/fixtures/bnb/manifest.json
 * @param blob Uint8Array of test/fixtures/bnb/blobs.bin
 */
export function runChecks(lowbit, manifest, blob) {
  lowbitErrorClass = lowbit.LowbitError;
  const result = { simd128: lowbit.simd128Available(), cases: {} };

  for (const name of CASES_4BIT) {
    const c = findCase(manifest, name);
    const input = refInput(blob, c.input);
    const { packed, quantState } = lowbit.quantize4bit(input, {
      quantType: c.quant_type,
      blocksize: c.blocksize,
      compressStatistics: c.compress_statistics,
      shape: c.input.shape,
    });
    const dict = quantState.toDict();
    const back = lowbit.QuantState.fromDict(dict);
    // bitsandbytes' own packed data and state dict, loaded and dequantized.
    const bnbState = lowbit.QuantState.fromDict(dictFromManifest(blob, c.as_dict));
    const bnbPacked = refBytes(blob, c.packed);
    result.cases[name] = {
      packed: hex(packed),
      absmax: hex(quantState.absmax),
      nestedAbsmax: quantState.state2 ? hex(quantState.state2.absmax) : null,
      offset: quantState.offset ?? null,
      json: quantState.toJSONString(),
      dequant: dequantAll(lowbit, packed, quantState),
      dict: dictHex(dict),
      roundTrip: {
        dict: dictHex(back.toDict()),
        dequant: dequantAll(lowbit, packed, back),
      },
      fromBnb: {
        json: bnbState.toJSONString(),
        dict: dictHex(bnbState.toDict()),
        dequant: dequantAll(lowbit, bnbPacked, bnbState),
      },
    };
  }

  {
    const c = findCase(manifest, CASE_8BIT);
    const { q, state } = lowbit.quantizeBlockwise(refInput(blob, c.input), { blocksize: c.blocksize });
    const bnbAbsmax = new Float32Array(refBytes(blob, c.absmax).buffer);
    const bnbCode = new Float32Array(refBytes(blob, c.code).buffer);
    result.cases[CASE_8BIT] = {
      q: hex(q),
      absmax: hex(state.absmax),
      dequant: hex(lowbit.dequantizeBlockwise(q, state, { outDtype: c.input.dtype })),
      fromBnbDequant: hex(lowbit.dequantizeBlockwise(refBytes(blob, c.q), { absmax: bnbAbsmax, code: bnbCode, blocksize: c.blocksize }, { outDtype: c.input.dtype })),
    };
  }

  {
    const c = findCase(manifest, CASE_INT8);
    const r = lowbit.int8VectorwiseQuant(refInput(blob, c.input), { shape: c.input.shape, threshold: c.threshold });
    result.cases[CASE_INT8] = { CB: hex(r.CB), SCB: hex(r.SCB), outlierCols: r.outlierCols ? hex(r.outlierCols) : null };
  }

  // Errors: NaN at index 37 of a float32 input and +Inf at index 3 of a float16 input.
  const x = new Float32Array(100).map((_, i) => Math.sin(i));
  x[37] = NaN;
  const h = lowbit.toHalf(Array.from({ length: 10 }, (_, i) => i / 10), 'float16');
  h.data[3] = 0x7c00;
  result.errors = {
    nan: errorInfo(() => lowbit.quantize4bit(x, { quantType: 'nf4' })),
    inf16: errorInfo(() => lowbit.quantize4bit(h, { quantType: 'fp4', blocksize: 32 })),
    // allowNonFinite quantizes it as bitsandbytes does instead of throwing
    nanAllowed: errorInfo(() => lowbit.quantize4bit(x, { quantType: 'nf4', allowNonFinite: true })),
  };
  return result;
}
