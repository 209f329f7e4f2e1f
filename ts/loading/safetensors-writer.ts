/** Writing safetensors files: the header comes from the Rust writer (validated, padded to 8 bytes). */
import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import type { SafetensorsDType } from './safetensors.js';

/** One tensor for `encodeSafetensors` / `writeSafetensorsFile`. */
export interface TensorToSave {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
}

/**
 * The bytes of a safetensors file, as parts (header first, then each tensor's data) so they can be
 * streamed to disk or wrapped in a Blob without one big copy. With `referenceOrder` (default) the
 * layout is the one the Python `safetensors` writer produces (dtype, then name), so a file with the
 * same tensors and metadata is byte-identical to what transformers saves.
 */
export function encodeSafetensors(tensors: readonly TensorToSave[], metadata: Record<string, string> = { format: 'pt' }, options: { referenceOrder?: boolean } = {}): Uint8Array[] {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  if (byName.size !== tensors.length) throw new LowbitError('INVALID_ARGUMENT', 'two tensors share a name');
  const entries = tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, nbytes: t.data.byteLength }));
  const { header, order } = callWasm(() => wasm().safetensorsWriteHeader(entries, metadata, options.referenceOrder ?? true)) as { header: Uint8Array; order: string[] };
  return [header, ...order.map((n) => byName.get(n)!.data)];
}

/** Writes a safetensors file (Node / Deno). The file appears only when complete (written to a temporary name, then renamed). */
export async function writeSafetensorsFile(path: string, tensors: readonly TensorToSave[], metadata?: Record<string, string>, options?: { referenceOrder?: boolean }): Promise<void> {
  const parts = encodeSafetensors(tensors, metadata, options);
  const fsName = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  const tmp = `${path}.partial`;
  const fh = await fs.open(tmp, 'w');
  try {
    for (const p of parts) await fh.write(p);
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path);
}
