/**
 * A safetensors file read by ranges: the header is parsed and validated in Rust (wasm) before
 * anything is allocated from it; tensors are then read one at a time, so memory holds a tensor,
 * never the checkpoint.
 */
import { callWasm, LowbitError } from '../errors.js';
import { wasm } from '../runtime/wasm.js';
import type { StoredDType } from '../tensor/dtypes.js';
import type { ByteRange } from './sources/types.js';

/** safetensors dtypes (as written in the header). */
export type SafetensorsDType = StoredDType;

/** One tensor of a safetensors header: dtype, shape and byte range. */
export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offsets in the file. */
  start: number;
  end: number;
}

interface ParsedHeader {
  dataStart: number;
  tensors: SafetensorsTensorInfo[];
  metadata: Array<[string, string]>;
}

/** Adds the file name to errors raised while reading it. */
function inFile<T>(name: string, f: () => T): T {
  try {
    return callWasm(f);
  } catch (e) {
    if (e instanceof LowbitError) throw new LowbitError(e.code, `${name}: ${e.message}`, { index: e.index, cause: e, file: name });
    throw e;
  }
}

/** A safetensors file: `SafetensorsFile.open(range)` parses and validates its header (in wasm) before anything is allocated from it; tensors are then read one by one. */
export class SafetensorsFile {
  /** Every tensor of the header, by name. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  /** The header's `__metadata__` strings. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Bytes of the 8-byte length and the JSON header: tensor data starts here. */
  readonly headerBytes: number;

  private constructor(
    readonly source: ByteRange,
    header: ParsedHeader,
  ) {
    this.tensors = new Map(header.tensors.map((t) => [t.name, t]));
    this.metadata = Object.fromEntries(header.metadata); // own properties, even for "__proto__"
    this.headerBytes = header.dataStart;
  }

  /** Reads and validates the header (two small range reads). */
  static async open(source: ByteRange, signal?: AbortSignal): Promise<SafetensorsFile> {
    const size = source.size;
    if (size < 8) throw new LowbitError('MALFORMED_FILE', `${source.name}: ${size} bytes is too short for a safetensors file (it starts with an 8-byte header length)`, { file: source.name });
    const first8 = await source.read(0, 8, signal);
    const n = inFile(source.name, () => wasm().safetensorsHeaderLength(first8, size));
    const json = await source.read(8, n, signal);
    const header = inFile(source.name, () => wasm().safetensorsParseHeader(json, size)) as ParsedHeader;
    return new SafetensorsFile(source, header);
  }

  /** The file's name (as its model source names it). */
  get name(): string {
    return this.source.name;
  }

  /** The tensor named `name`; a NOT_FOUND error when there is none. */
  info(name: string): SafetensorsTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new LowbitError('NOT_FOUND', `${this.name}: no tensor named '${name}'`, { file: this.name });
    return t;
  }

  /** The raw little-endian bytes of one tensor (a fresh, aligned buffer). */
  async read(name: string, signal?: AbortSignal): Promise<Uint8Array> {
    const t = this.info(name);
    return this.source.read(t.start, t.end - t.start, signal);
  }
}
