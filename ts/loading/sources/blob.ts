/**
 * Files and Blobs (a browser's file picker, drag and drop, or anything already in memory).
 *
 * - One Blob is a one-file source, named by `options.name`, else File.name, else by its first
 *   bytes: 'model.gguf' when they are the GGUF magic, 'model.safetensors' otherwise.
 * - A Map<string, Blob> (or a plain object of them) is a multi-file source named by its keys.
 * - An array of Files (an <input type="file" webkitdirectory> selection) is named by each
 *   File's webkitRelativePath without the picked folder's own name, else by File.name.
 * Reads use blob.slice(a, b).arrayBuffer(), so only the bytes asked for are read.
 */
import { LowbitError } from '../../errors.js';
import { BaseSource, checkFileName, checkRange, isWeightFileName, type ByteRange } from './types.js';

/** What `blobSource` reads: one Blob, a name -> Blob map or record, or a list of Files. */
export type BlobInput = Blob | Map<string, Blob> | Record<string, Blob> | readonly Blob[];

/** Options of `blobSource`. */
export interface BlobSourceOptions {
  /** The name of a single Blob (default: File.name, else sniffed from its first bytes). */
  name?: string;
  /** Overrides the source's description. */
  description?: string;
}

function isBlob(x: unknown): x is Blob {
  return typeof Blob !== 'undefined' && x instanceof Blob;
}

function fileName(b: Blob): string | undefined {
  const n = (b as { name?: unknown }).name;
  return typeof n === 'string' && n.length > 0 ? n : undefined;
}

function relativePath(b: Blob): string | undefined {
  const p = (b as { webkitRelativePath?: unknown }).webkitRelativePath;
  return typeof p === 'string' && p.length > 0 ? p : undefined;
}

class BlobRange implements ByteRange {
  readonly size: number;
  constructor(
    private readonly blob: Blob,
    readonly name: string,
  ) {
    this.size = blob.size;
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    signal?.throwIfAborted();
    checkRange(offset, length, this.size, this.name);
    if (length === 0) return new Uint8Array(0);
    const bytes = new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
    signal?.throwIfAborted();
    if (bytes.length !== length) {
      throw new LowbitError('MALFORMED_FILE', `'${this.name}' gave ${bytes.length} bytes for a ${length}-byte read at ${offset}`, { file: this.name });
    }
    return bytes;
  }
}

/** Names for an array of Files: their relative paths without a shared picked-folder prefix. */
function namesOfFiles(files: readonly Blob[]): Map<string, Blob> {
  const paths = files.map((f, i) => {
    if (!isBlob(f)) throw new LowbitError('INVALID_ARGUMENT', `item ${i} of the file list is not a File or Blob`);
    const p = relativePath(f) ?? fileName(f);
    if (p === undefined) throw new LowbitError('INVALID_ARGUMENT', `item ${i} of the file list is a Blob without a name: pass a Map<string, Blob> to name it`);
    return p;
  });
  const firsts = new Set(paths.map((p) => (p.includes('/') ? p.split('/')[0] : undefined)));
  const strip = firsts.size === 1 && !firsts.has(undefined);
  const map = new Map<string, Blob>();
  paths.forEach((p, i) => {
    const name = strip ? p.slice(p.indexOf('/') + 1) : p;
    if (map.has(name)) throw new LowbitError('INVALID_ARGUMENT', `two files in the list are named '${name}'`, { file: name });
    map.set(checkFileName(name), files[i]!);
  });
  return map;
}

async function sniffName(blob: Blob): Promise<string> {
  const head = new Uint8Array(await blob.slice(0, 4).arrayBuffer());
  const gguf = head.length === 4 && head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46;
  return gguf ? 'model.gguf' : 'model.safetensors';
}

/** Files held as Blobs. */
export class BlobSource extends BaseSource {
  readonly description: string;
  readonly weightFile?: string;
  private readonly entries: Promise<Map<string, Blob>>;

  constructor(input: BlobInput, options: BlobSourceOptions = {}) {
    super();
    if (isBlob(input)) {
      const name = options.name ?? fileName(input);
      if (name !== undefined) {
        checkFileName(name);
        if (isWeightFileName(name)) this.weightFile = name;
        this.entries = Promise.resolve(new Map([[name, input]]));
      } else {
        this.entries = sniffName(input).then((n) => new Map([[n, input]]));
      }
      this.description = options.description ?? `blob:${name ?? `(${input.size} bytes)`}`;
      return;
    }
    let map: Map<string, Blob>;
    if (input instanceof Map) map = new Map(input);
    else if (Array.isArray(input)) map = namesOfFiles(input);
    else if (typeof input === 'object' && input !== null) map = new Map(Object.entries(input as Record<string, Blob>));
    else throw new LowbitError('INVALID_ARGUMENT', 'blobSource needs a Blob, File[], or Map<string, Blob>');
    for (const [name, blob] of map) {
      checkFileName(name);
      if (!isBlob(blob)) throw new LowbitError('INVALID_ARGUMENT', `'${name}' is not a Blob`, { file: name });
    }
    this.entries = Promise.resolve(map);
    this.description = options.description ?? `blobs:[${[...map.keys()].slice(0, 4).join(', ')}${map.size > 4 ? ', …' : ''}]`;
  }

  async open(file: string): Promise<ByteRange> {
    checkFileName(file);
    const blob = (await this.entries).get(file);
    if (blob === undefined) throw new LowbitError('NOT_FOUND', `'${file}' not found in ${this.description}`, { file });
    return new BlobRange(blob, file);
  }

  async exists(file: string): Promise<boolean> {
    checkFileName(file);
    return (await this.entries).has(file);
  }

  async list(): Promise<string[]> {
    return [...(await this.entries).keys()].filter((n) => !n.includes('/')).sort();
  }
}

/** Blobs and Files as a model source (see the module comment for naming). */
export function blobSource(input: BlobInput, options?: BlobSourceOptions): BlobSource {
  return new BlobSource(input, options);
}
