#!/usr/bin/env node
// Converts a Llama safetensors checkpoint (the random-weight ones scripts/make-random-checkpoint.mjs
// writes) to llama-architecture GGUF v3 files for llama.cpp, the CPU benchmark's peer:
//
//   node scripts/make-peer-gguf.mjs --src .cache/models/smollm2-135m-shape-f16 \
//        --out .cache/models/smollm2-135m-shape-gguf [--types q4_0,q8_0,f16] [--force]
//
// writes <out>/model-q4_0.gguf, model-q8_0.gguf, model-f16.gguf.
//
// What is converted how, and why:
// - Names, metadata and the Q/K row permutation are those of llama.cpp's convert_hf_to_gguf.py
//   (LlamaModel): attn_q / attn_k rows are permuted within each head for GGML's interleaved-pair
//   rope, `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`
//   with n_head = head_count for Q and head_count_kv for K (lowbit's ts/models/llama.ts, unpermuteHeadRows
//   inverts the same permutation when it loads a GGUF).
// - Which tensors get the quantized type mirrors what lowbit quantizes for the same benchmark
//   (BitsAndBytesConfig defaults): every attention / MLP linear is Q4_0, Q8_0 or F16; the token
//   embedding and the output head stay F16 (lowbit keeps embed_tokens dense and skips lm_head),
//   norms are F32 (as convert_hf_to_gguf.py writes 1-D tensors). So both engines stream the same
//   bytes per token apart from the block format. (llama-quantize itself would make the head
//   Q6_K / Q8_0; that is a different model, not a peer.)
// - Q4_0 and Q8_0 blocks follow ggml's reference quantizers bit for bit
//   (ggml/src/ggml-quants.c, quantize_row_q4_0_ref / quantize_row_q8_0_ref, which llama-quantize
//   uses without an importance matrix), with f32 arithmetic emulated by Math.fround:
//     Q8_0: 32 values -> f16 d = amax / 127, int8 q = roundf(x * (1/d));            34 bytes
//     Q4_0: 32 values -> f16 d = max / -8 (max = the value of largest magnitude, first one on a
//           tie), q = min(15, (int8)(x * (1/d) + 8.5)), byte j = q[j] | q[j + 16] << 4; 18 bytes
//   test/peer-gguf.test.ts checks them against gguf-py's quantizers (llama.cpp's Python port).
// - A random model has no tokenizer: the vocabulary is synthesized, one token per id, SentencePiece
//   style ("llama" model): <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF> that llama.cpp's SPM
//   vocabulary needs (it looks up <0x0A> for the newline), then "▁t<id>" normal tokens.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 };
// llama_ftype (general.file_type): LLAMA_FTYPE_MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7.
const FILE_TYPE = { f16: 1, q4_0: 2, q8_0: 7 };
const LINEAR_TYPE = { f16: GGML_TYPE.F16, q4_0: GGML_TYPE.Q4_0, q8_0: GGML_TYPE.Q8_0 };
export const PEER_TYPES = Object.keys(FILE_TYPE);
const ALIGNMENT = 32; // GGUF_DEFAULT_ALIGNMENT
const QK = 32;

// ---------------------------------------------------------------------------------------------
// f16

const F16_TO_F32 = new Float32Array(65536);
{
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    F16_TO_F32[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
}
export const f16ToF32 = (h) => F16_TO_F32[h];

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
/** fp32 -> fp16 bits, round to nearest even (what F16C's vcvtps2ph with mode 0 and ggml's fallback do). */
export function f32ToF16(x) {
  f32buf[0] = x;
  const u = u32buf[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // may carry into the exponent: still right
  return sign | h;
}

// ---------------------------------------------------------------------------------------------
// ggml block quantizers (reference, f32 arithmetic)

const fr = Math.fround;
const roundf = (v) => (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5)); // C roundf: half away from zero

/** Q8_0 blocks of `x` (length a multiple of 32). */
export function quantizeQ8_0(x) {
  if (x.length % QK !== 0) throw new RangeError(`Q8_0: ${x.length} values are not a multiple of ${QK}`);
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 34);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[o + j]));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < QK; j++) dv.setInt8(b * 34 + 2 + j, roundf(fr(x[o + j] * id)));
  }
  return out;
}

/** Q4_0 blocks of `x` (length a multiple of 32). */
export function quantizeQ4_0(x) {
  if (x.length % QK !== 0) throw new RangeError(`Q4_0: ${x.length} values are not a multiple of ${QK}`);
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 18);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[o + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < QK / 2; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(x[o + j] * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(x[o + QK / 2 + j] * id) + 8.5)));
      out[b * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// names and the Q/K permutation

const BLOCK = {
  input_layernorm: 'attn_norm',
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  post_attention_layernorm: 'ffn_norm',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
};
const TOP = { 'model.embed_tokens': 'token_embd', 'model.norm': 'output_norm', lm_head: 'output' };

/** transformers' Llama tensor name -> llama.cpp's ('model.layers.3.self_attn.q_proj.weight' -> 'blk.3.attn_q.weight'). */
export function hfToGgufName(name) {
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  if (m) {
    const g = BLOCK[m[2]];
    if (g) return `blk.${m[1]}.${g}.${m[3]}`;
  } else {
    const t = /^(.+)\.(weight|bias)$/.exec(name);
    if (t && TOP[t[1]]) return `${TOP[t[1]]}.${t[2]}`;
  }
  throw new Error(`make-peer-gguf: no llama.cpp name for tensor '${name}'`);
}

/**
 * llama.cpp's LlamaModel.permute on the rows of a [rows, cols] matrix of `nHead` heads: GGUF row
 * h*D + 2r + i takes HF row h*D + i*(D/2) + r (D = rows / nHead, i in {0, 1}). Any element type.
 */
export function permuteHeadRows(data, rows, cols, nHead) {
  if (rows % (2 * nHead) !== 0) throw new Error(`make-peer-gguf: ${rows} rows do not split into ${nHead} heads of an even size`);
  const d = rows / nHead;
  const half = d / 2;
  const out = new data.constructor(data.length);
  for (let h = 0; h < nHead; h++) {
    for (let r = 0; r < half; r++) {
      for (let i = 0; i < 2; i++) {
        const src = h * d + i * half + r;
        const dst = h * d + 2 * r + i;
        out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// GGUF writing

const V = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 };

class Bytes {
  constructor() {
    this.parts = [];
    this.length = 0;
  }
  push(b) {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  concat() {
    return Buffer.concat(this.parts, this.length);
  }
}

/** One metadata value: [type, value] or ['array', elemType, values]. */
function writeKv(w, key, type, value, elem) {
  w.str(key);
  w.u32(type);
  const one = (t, v) => {
    if (t === V.UINT32) w.u32(v);
    else if (t === V.INT32) w.i32(v);
    else if (t === V.FLOAT32) w.f32(v);
    else if (t === V.STRING) w.str(v);
    else if (t === V.BOOL) w.push(Buffer.from([v ? 1 : 0]));
    else throw new Error(`make-peer-gguf: metadata type ${t} is not written here`);
  };
  if (type === V.ARRAY) {
    w.u32(elem);
    w.u64(value.length);
    for (const v of value) one(elem, v);
  } else one(type, value);
}

/** The synthesized SentencePiece-style vocabulary (see the header comment). */
export function syntheticVocab(n) {
  if (n < 259) throw new Error(`make-peer-gguf: a vocabulary of ${n} tokens cannot hold <unk> <s> </s> and the 256 byte tokens`);
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // llama_token_type: UNKNOWN = 2, CONTROL = 3
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6); // BYTE
    scores.push(0);
  }
  for (let id = tokens.length; id < n; id++) {
    tokens.push(`\u2581t${id}`);
    types.push(1); // NORMAL
    scores.push(-id);
  }
  return { tokens, types, scores };
}

function readSafetensorsHeader(path) {
  const fd = openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE());
    const json = Buffer.alloc(n);
    readSync(fd, json, 0, n, 8);
    const header = JSON.parse(json.toString('utf8'));
    delete header.__metadata__;
    return { header, dataStart: 8 + n };
  } finally {
    closeSync(fd);
  }
}

/** A tensor of the checkpoint as f16 bits (F16 as stored; F32 / BF16 converted). */
function readAsF16(fd, dataStart, t) {
  const [a, b] = t.data_offsets;
  const raw = Buffer.alloc(b - a);
  readSync(fd, raw, 0, raw.length, dataStart + a);
  const ab = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length);
  if (t.dtype === 'F16') return new Uint16Array(ab);
  if (t.dtype === 'F32') return Uint16Array.from(new Float32Array(ab), f32ToF16);
  if (t.dtype === 'BF16') {
    const u = new Uint16Array(ab);
    const f = new Float32Array(u.length);
    new Uint32Array(f.buffer).set(Uint32Array.from(u, (x) => x << 16));
    return Uint16Array.from(f, f32ToF16);
  }
  throw new Error(`make-peer-gguf: tensor dtype ${t.dtype} is not converted (F16, BF16 or F32)`);
}

const pad = (n) => (ALIGNMENT - (n % ALIGNMENT)) % ALIGNMENT;
const bytesOf = (type, n) => (type === GGML_TYPE.F32 ? n * 4 : type === GGML_TYPE.F16 ? n * 2 : type === GGML_TYPE.Q8_0 ? (n / QK) * 34 : (n / QK) * 18);

/**
 * Writes `outPath`, a llama GGUF of the checkpoint in `srcDir` (config.json + model.safetensors)
 * with every attention / MLP linear in `type` ('q4_0', 'q8_0' or 'f16'). Streams tensor by tensor.
 */
export function writePeerGguf(srcDir, outPath, type, { name } = {}) {
  const linearType = LINEAR_TYPE[type];
  if (linearType === undefined) throw new Error(`make-peer-gguf: unknown type '${type}' (one of ${PEER_TYPES.join(', ')})`);
  const c = JSON.parse(readFileSync(join(srcDir, 'config.json'), 'utf8'));
  const st = join(srcDir, 'model.safetensors');
  const { header, dataStart } = readSafetensorsHeader(st);
  const heads = c.num_attention_heads;
  const kvHeads = c.num_key_value_heads ?? heads;
  const headDim = c.head_dim ?? c.hidden_size / heads;
  const vocab = syntheticVocab(c.vocab_size);

  const kv = [];
  const add = (key, t, v, elem) => kv.push([key, t, v, elem]);
  add('general.architecture', V.STRING, 'llama');
  add('general.name', V.STRING, name ?? `lowbit random-weight llama (${c.hidden_size}x${c.num_hidden_layers})`);
  add('general.file_type', V.UINT32, FILE_TYPE[type]);
  if (type !== 'f16') add('general.quantization_version', V.UINT32, 2); // GGML_QNT_VERSION
  add('general.alignment', V.UINT32, ALIGNMENT);
  add('llama.context_length', V.UINT32, c.max_position_embeddings ?? 2048);
  add('llama.embedding_length', V.UINT32, c.hidden_size);
  add('llama.block_count', V.UINT32, c.num_hidden_layers);
  add('llama.feed_forward_length', V.UINT32, c.intermediate_size);
  add('llama.rope.dimension_count', V.UINT32, headDim);
  add('llama.attention.head_count', V.UINT32, heads);
  add('llama.attention.head_count_kv', V.UINT32, kvHeads);
  add('llama.attention.layer_norm_rms_epsilon', V.FLOAT32, c.rms_norm_eps ?? 1e-5);
  add('llama.rope.freq_base', V.FLOAT32, c.rope_theta ?? 10000);
  add('llama.vocab_size', V.UINT32, c.vocab_size);
  add('tokenizer.ggml.model', V.STRING, 'llama');
  add('tokenizer.ggml.tokens', V.ARRAY, vocab.tokens, V.STRING);
  add('tokenizer.ggml.scores', V.ARRAY, vocab.scores, V.FLOAT32);
  add('tokenizer.ggml.token_type', V.ARRAY, vocab.types, V.INT32);
  add('tokenizer.ggml.bos_token_id', V.UINT32, c.bos_token_id ?? 1);
  add('tokenizer.ggml.eos_token_id', V.UINT32, typeof c.eos_token_id === 'number' ? c.eos_token_id : 2);
  add('tokenizer.ggml.unknown_token_id', V.UINT32, 0);

  // Tensors in the checkpoint's order, which is llama.cpp's: token_embd, blk.*, output_norm, output.
  const order = Object.entries(header).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  const tensors = [];
  let offset = 0;
  for (const [hf, t] of order) {
    const gname = hfToGgufName(hf);
    const n = t.shape.reduce((a, b) => a * b, 1);
    const isLinear = t.shape.length === 2 && gname.startsWith('blk.');
    const gtype = t.shape.length === 1 ? GGML_TYPE.F32 : isLinear ? linearType : GGML_TYPE.F16;
    if ((gtype === GGML_TYPE.Q4_0 || gtype === GGML_TYPE.Q8_0) && t.shape[t.shape.length - 1] % QK !== 0) {
      throw new Error(`make-peer-gguf: ${hf} has rows of ${t.shape.at(-1)} values, not a multiple of ${QK}`);
    }
    const nbytes = bytesOf(gtype, n);
    tensors.push({ hf, t, name: gname, type: gtype, offset, nbytes });
    offset += nbytes + pad(nbytes);
  }

  const w = new Bytes();
  w.push(Buffer.from('GGUF', 'latin1'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [key, t, v, elem] of kv) writeKv(w, key, t, v, elem);
  for (const x of tensors) {
    w.str(x.name);
    w.u32(x.t.shape.length);
    for (const d of [...x.t.shape].reverse()) w.u64(d); // ggml ne: innermost first
    w.u32(x.type);
    w.u64(x.offset);
  }
  w.push(Buffer.alloc(pad(w.length)));

  mkdirSync(join(outPath, '..'), { recursive: true });
  const tmp = `${outPath}.part`;
  const out = openSync(tmp, 'w');
  const src = openSync(st, 'r');
  try {
    writeSync(out, w.concat());
    for (const x of tensors) {
      let h = readAsF16(src, dataStart, x.t);
      if (/\.attn_[qk]\.weight$/.test(x.name)) h = permuteHeadRows(h, x.t.shape[0], x.t.shape[1], x.name.includes('.attn_q.') ? heads : kvHeads);
      let bytes;
      if (x.type === GGML_TYPE.F16) bytes = new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
      else {
        const f = new Float32Array(h.length);
        for (let i = 0; i < h.length; i++) f[i] = F16_TO_F32[h[i]];
        bytes = x.type === GGML_TYPE.F32 ? new Uint8Array(f.buffer) : x.type === GGML_TYPE.Q8_0 ? quantizeQ8_0(f) : quantizeQ4_0(f);
      }
      if (bytes.length !== x.nbytes) throw new Error(`make-peer-gguf: ${x.name}: wrote ${bytes.length} bytes, expected ${x.nbytes}`);
      writeSync(out, bytes);
      writeSync(out, Buffer.alloc(pad(bytes.length)));
    }
  } finally {
    closeSync(src);
    closeSync(out);
  }
  renameSync(tmp, outPath);
  return { tensors: tensors.length, bytes: w.length + offset };
}

/** Writes <outDir>/model-<type>.gguf for each type not there or older than the checkpoint (all with `force`); returns the paths. */
export function makePeerGgufs(srcDir, outDir, types = PEER_TYPES, { force = false, log = () => {} } = {}) {
  const paths = {};
  const srcTime = statSync(join(srcDir, 'model.safetensors')).mtimeMs;
  for (const type of types) {
    const path = join(outDir, `model-${type}.gguf`);
    if (force || !existsSync(path) || statSync(path).mtimeMs < srcTime) {
      const t = performance.now();
      const r = writePeerGguf(srcDir, path, type);
      log(`wrote ${path}: ${r.tensors} tensors, ${(r.bytes / 1e6).toFixed(1)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    paths[type] = path;
  }
  return paths;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const get = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
  const src = get('--src');
  if (!src) {
    console.error('usage: node scripts/make-peer-gguf.mjs --src <dir with config.json + model.safetensors> [--out DIR] [--types q4_0,q8_0,f16] [--force]');
    process.exit(2);
  }
  const out = get('--out', src.replace(/-f16\/?$/, '') + '-gguf');
  try {
    makePeerGgufs(src, out, get('--types', PEER_TYPES.join(',')).split(','), { force: args.includes('--force'), log: console.log });
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  }
}
