/**
 * Writers for the hostile model corpus (test/hostile-models.test.ts): plain safetensors and GGUF
 * encoders of our own, so a test can write what no validating writer would (tensors that
 * disagree with the config, NaN weights, wrong metadata types), and a byte-level BPE tokenizer
 * matching the tiny fixtures' 256-token vocabulary.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** Tensors of a safetensors file (header parsed here, no validation). */
export function readSafetensors(path: string): RawTensor[] {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + n;
  return Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(b.subarray(base + t.data_offsets[0], base + t.data_offsets[1])) }));
}

export function writeSafetensors(path: string, tensors: readonly RawTensor[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([head, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]));
}

export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** A copy of `t` with element `i` (f32) set to `v`. */
export function withF32(t: RawTensor, i: number, v: number): RawTensor {
  const data = t.data.slice();
  new DataView(data.buffer).setFloat32(i * 4, v, true);
  return { ...t, data };
}

// --- GGUF (version 3) ----------------------------------------------------------------------------

export type GgufMeta =
  | { type: 'u32' | 'i32' | 'f32' | 'u64' | 'bool'; value: number }
  | { type: 'str'; value: string }
  | { type: 'arr'; of: 'str'; value: string[] }
  | { type: 'arr'; of: 'f32' | 'i32'; value: number[] };

const T = { u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9, u64: 10 } as const;

class Bytes {
  parts: Buffer[] = [];
  size = 0;
  push(b: Buffer) {
    this.parts.push(b);
    this.size += b.length;
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number | bigint) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
}

export interface GgufTensor {
  name: string;
  /** Row-major shape ([rows, cols]); written reversed, as ggml's ne. */
  shape: number[];
  /** f32 data */
  data: Uint8Array;
}

export function writeGguf(path: string, meta: ReadonlyMap<string, GgufMeta>, tensors: readonly GgufTensor[]): void {
  const w = new Bytes();
  w.push(Buffer.from('GGUF'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(meta.size);
  for (const [k, m] of meta) {
    w.str(k);
    w.u32(T[m.type]);
    if (m.type === 'str') w.str(m.value);
    else if (m.type === 'arr') {
      w.u32(T[m.of]);
      w.u64(m.value.length);
      for (const x of m.value) m.of === 'str' ? w.str(x as string) : m.of === 'f32' ? w.f32(x as number) : w.i32(x as number);
    } else if (m.type === 'u32' || m.type === 'bool') m.type === 'bool' ? w.push(Buffer.from([m.value ? 1 : 0])) : w.u32(m.value);
    else if (m.type === 'i32') w.i32(m.value);
    else if (m.type === 'u64') w.u64(m.value);
    else w.f32(m.value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    offset += Math.ceil(t.data.byteLength / 32) * 32;
  }
  tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d);
    w.u32(0); // F32
    w.u64(offsets[i]!);
  });
  w.push(Buffer.alloc((32 - (w.size % 32)) % 32));
  for (const t of tensors) {
    w.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    w.push(Buffer.alloc((32 - (t.data.byteLength % 32)) % 32));
  }
  writeFileSync(path, Buffer.concat(w.parts));
}

// --- a byte-level BPE tokenizer over 256 tokens ------------------------------------------------

/** GPT-2's bytes_to_unicode: the 256 token strings of a byte-level vocabulary, by byte. */
export function byteLevelAlphabet(): string[] {
  const direct = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(direct(b) ? b : 256 + extra++));
}

/** tokenizer.json of a byte-level BPE with no merges: one token per byte (ids 0..255). */
export function byteLevelTokenizerJson(extraAdded: Array<{ id: number; content: string }> = []): object {
  const vocab = Object.fromEntries(byteLevelAlphabet().map((t, i) => [t, i]));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: extraAdded.map((t) => ({ ...t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
}
