/**
 * A GGUF file read by ranges. The header is parsed in Rust (wasm) from the start of the file,
 * growing the prefix only as far as the parser asks (NEED_MORE_DATA says how far); tensors are
 * then read and dequantized one at a time.
 */
import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import type { FloatDType, FloatOutput } from '../tensor/dtypes.js';
import type { ByteRange } from './sources/types.js';

/** One tensor of a GGUF header: name, shape, ggml type and where its data is. */
export interface GgufTensorInfo {
  name: string;
  /** Row-major (torch) order: ggml's `ne` reversed. */
  shape: number[];
  /** ggml type name: 'F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K', ... */
  ggmlType: string;
  /** Absolute byte offset of the data in the file. */
  offset: number;
  nBytes: number;
}

/** Metadata values: numbers (bigint beyond 2^53), booleans, strings, typed arrays or arrays. */
export type GgufValue = number | bigint | boolean | string | ArrayLike<unknown>;

interface ParsedGguf {
  version: number;
  alignment: number;
  dataStart: number;
  metadata: Array<[string, GgufValue]>;
  tensors: GgufTensorInfo[];
}

/** The ggml types lowbit dequantizes. */
export const GGUF_DEQUANTIZABLE = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K'] as const;

function inFile<T>(name: string, f: () => T): T {
  try {
    return callWasm(f);
  } catch (e) {
    if (e instanceof LowbitError && e.code !== 'NEED_MORE_DATA') throw new LowbitError(e.code, `${name}: ${e.message}`, { cause: e, file: name });
    throw e;
  }
}

/** A GGUF v2 / v3 file: header, metadata and tensor infos parsed (and checked) from its first bytes by `GgufFile.open(range)`; tensors are then read and dequantized one at a time. */
export class GgufFile {
  /** GGUF format version (2 or 3). */
  readonly version: number;
  /** Alignment of the tensor data (general.alignment, default 32). */
  readonly alignment: number;
  /** Byte offset where the tensor data starts. */
  readonly dataStart: number;
  /** The key / value metadata (e.g. 'general.architecture'). */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Every tensor of the header, by name. */
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;

  private constructor(
    readonly source: ByteRange,
    h: ParsedGguf,
  ) {
    this.version = h.version;
    this.alignment = h.alignment;
    this.dataStart = h.dataStart;
    this.metadata = new Map(h.metadata);
    this.tensors = new Map(h.tensors.map((t) => [t.name, t]));
  }

  /**
   * Reads and validates the header. `initialBytes` (default 1 MiB) is the first read; a header
   * larger than that (a big tokenizer vocabulary) takes one or two more reads.
   */
  static async open(source: ByteRange, options: { initialBytes?: number; signal?: AbortSignal } = {}): Promise<GgufFile> {
    const size = source.size;
    let prefix = await source.read(0, Math.min(size, options.initialBytes ?? 1 << 20), options.signal);
    for (;;) {
      try {
        return new GgufFile(source, inFile(source.name, () => wasm().ggufParse(prefix, size)) as ParsedGguf);
      } catch (e) {
        if (!(e instanceof LowbitError) || e.code !== 'NEED_MORE_DATA' || e.index === undefined || e.index <= prefix.length || e.index > size) throw e;
        // Grow geometrically so a header of many small pieces takes few reads.
        const want = Math.min(size, Math.max(e.index, prefix.length * 2));
        const more = await source.read(prefix.length, want - prefix.length, options.signal);
        const grown = new Uint8Array(want);
        grown.set(prefix);
        grown.set(more, prefix.length);
        prefix = grown;
      }
    }
  }

  /** The file's name (as its model source names it). */
  get name(): string {
    return this.source.name;
  }

  /** The tensor named `name`; a NOT_FOUND error when there is none. */
  info(name: string): GgufTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new LowbitError('NOT_FOUND', `${this.name}: no tensor named '${name}'`, { file: this.name });
    return t;
  }

  /** The tensor's stored bytes. */
  async read(name: string, signal?: AbortSignal): Promise<Uint8Array> {
    const t = this.info(name);
    return this.source.read(t.offset, t.nBytes, signal);
  }

  /** The tensor dequantized to float32 (default) or float16 / bfloat16 bit patterns. */
  async dequantize<D extends FloatDType = 'float32'>(name: string, outDtype?: D, signal?: AbortSignal): Promise<FloatOutput<D>> {
    const t = this.info(name);
    return dequantizeGguf(t, await this.read(name, signal), outDtype ?? ('float32' as D), this.name);
  }
}

/** Dequantizes bytes of a GGUF tensor (as read from its file). */
export function dequantizeGguf<D extends FloatDType>(t: GgufTensorInfo, data: Uint8Array, outDtype: D, file = ''): FloatOutput<D> {
  const n = t.shape.reduce((a, b) => a * b, 1);
  return inFile(file || t.name, () => wasm().ggufDequantize(t.ggmlType, data, n, outDtype)) as FloatOutput<D>;
}
