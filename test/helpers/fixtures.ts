/** Reads the bitsandbytes golden vectors (test/fixtures/bnb, made by scripts/fixtures/). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface TensorRef {
  offset: number;
  nbytes: number;
  dtype: 'float32' | 'float16' | 'bfloat16' | 'uint8' | 'int8' | 'int32';
  shape: number[];
}

export interface Manifest {
  versions: Record<string, unknown>;
  tables: Record<string, TensorRef>;
  cases: Array<Record<string, any>>;
}

const dir = fileURLToPath(new URL('../fixtures/bnb/', import.meta.url));
export const manifest: Manifest = JSON.parse(readFileSync(dir + 'manifest.json', 'utf8'));
const blob = readFileSync(dir + 'blobs.bin');

/** A copy of the referenced bytes (aligned, so typed-array views work). */
export function bytes(r: TensorRef): Uint8Array {
  return new Uint8Array(blob.subarray(r.offset, r.offset + r.nbytes));
}
export function f32(r: TensorRef): Float32Array {
  return new Float32Array(bytes(r).buffer);
}
export function u16(r: TensorRef): Uint16Array {
  return new Uint16Array(bytes(r).buffer);
}
export function u32(r: TensorRef): Uint32Array {
  return new Uint32Array(bytes(r).buffer);
}

/** The fixture's input as lowbit accepts it. */
export function input(r: TensorRef): Float32Array | { dtype: 'float16' | 'bfloat16'; data: Uint16Array } {
  if (r.dtype === 'float32') return f32(r);
  if (r.dtype === 'float16' || r.dtype === 'bfloat16') return { dtype: r.dtype, data: u16(r) };
  throw new Error(`unexpected input dtype ${r.dtype}`);
}

export function casesOf(kind: string): Array<Record<string, any>> {
  return manifest.cases.filter((c) => c.kind === kind);
}

export function hex(a: ArrayBufferView): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
}
