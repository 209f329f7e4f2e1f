/**
 * A directory on disk (Node, and Deno through its node: compatibility). node:fs is imported
 * lazily with a computed specifier, so browser bundles never try to resolve it.
 */
import { LowbitError } from '../../errors.js';
import { BaseSource, checkFileName, checkRange, decodeText, type ByteRange } from './types.js';

// The small part of node:fs/promises and node:path used here (typed locally so that nothing
// in a browser build has to know about Node's types).
interface Stats {
  size: number;
  isFile(): boolean;
  isDirectory(): boolean;
}
interface FileHandle {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<Stats>;
  close(): Promise<void>;
}
interface Dirent {
  name: string;
  isFile(): boolean;
  isSymbolicLink(): boolean;
}
interface Fs {
  open(path: string, flags: string): Promise<FileHandle>;
  stat(path: string): Promise<Stats>;
  readFile(path: string, options?: { signal?: AbortSignal }): Promise<Uint8Array>;
  readdir(path: string, options: { withFileTypes: true }): Promise<Dirent[]>;
}
interface Path {
  join(...parts: string[]): string;
  resolve(...parts: string[]): string;
  dirname(p: string): string;
  basename(p: string): string;
}

let fsModule: Promise<Fs> | undefined;
let pathModule: Promise<Path> | undefined;

/** node:fs/promises; INVALID_ARGUMENT in a runtime without it (browsers). */
export function nodeFs(): Promise<Fs> {
  fsModule ??= (async () => {
    const name = 'node:fs/promises';
    try {
      return (await import(/* @vite-ignore */ name)) as Fs;
    } catch (e) {
      fsModule = undefined;
      throw new LowbitError('INVALID_ARGUMENT', 'local files can only be read in Node or Deno; in a browser pass a File, a Blob or a URL', { cause: e });
    }
  })();
  return fsModule;
}

export function nodePath(): Promise<Path> {
  pathModule ??= (async () => {
    const name = 'node:path';
    return (await import(/* @vite-ignore */ name)) as Path;
  })();
  return pathModule;
}

function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null ? ((e as { code?: unknown }).code as string | undefined) : undefined;
}

function fsError(e: unknown, file: string, where: string): LowbitError {
  if (e instanceof LowbitError) return e;
  const code = errorCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new LowbitError('NOT_FOUND', `'${file}' not found in ${where}`, { file, cause: e });
  }
  if (code === 'EISDIR') return new LowbitError('INVALID_ARGUMENT', `'${file}' in ${where} is a directory, not a file`, { file, cause: e });
  return new LowbitError('INVALID_ARGUMENT', `cannot read '${file}' in ${where}: ${msg}`, { file, cause: e });
}

class LocalRange implements ByteRange {
  private closed = false;
  constructor(
    private readonly handle: FileHandle,
    readonly size: number,
    readonly name: string,
  ) {}

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    signal?.throwIfAborted();
    checkRange(offset, length, this.size, this.name);
    if (this.closed) throw new LowbitError('INVALID_ARGUMENT', `'${this.name}' was closed`, { file: this.name });
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      signal?.throwIfAborted();
      const { bytesRead } = await this.handle.read(out, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new LowbitError('MALFORMED_FILE', `'${this.name}' ended at byte ${offset + done} while reading (did it shrink while open?)`, { file: this.name });
      }
      done += bytesRead;
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

/** Options of `localSource`. */
export interface LocalSourceOptions {
  /** The weights file the caller pointed at (set by resolveSource for a path to a file). */
  weightFile?: string;
}

/** The files of one directory on disk. */
export class LocalSource extends BaseSource {
  readonly description: string;
  readonly weightFile?: string;

  constructor(
    readonly dir: string,
    options: LocalSourceOptions = {},
  ) {
    super();
    this.description = `local:${dir}`;
    if (options.weightFile !== undefined) this.weightFile = checkFileName(options.weightFile);
  }

  private async pathOf(file: string): Promise<string> {
    checkFileName(file);
    return (await nodePath()).join(this.dir, ...file.split('/'));
  }

  async open(file: string): Promise<ByteRange> {
    const path = await this.pathOf(file);
    const fs = await nodeFs();
    let handle: FileHandle;
    try {
      handle = await fs.open(path, 'r');
    } catch (e) {
      throw fsError(e, file, this.description);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new LowbitError('INVALID_ARGUMENT', `'${file}' in ${this.description} is not a regular file`, { file });
      return new LocalRange(handle, st.size, file);
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw fsError(e, file, this.description);
    }
  }

  async exists(file: string): Promise<boolean> {
    const path = await this.pathOf(file);
    try {
      return (await (await nodeFs()).stat(path)).isFile();
    } catch (e) {
      const code = errorCode(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw fsError(e, file, this.description);
    }
  }

  override async readText(file: string, signal?: AbortSignal): Promise<string> {
    const path = await this.pathOf(file);
    try {
      return decodeText(await (await nodeFs()).readFile(path, signal === undefined ? undefined : { signal }));
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw fsError(e, file, this.description);
    }
  }

  /** Regular files (and links to files, as in the Hugging Face cache) at the top of the directory, sorted. */
  async list(): Promise<string[]> {
    const fs = await nodeFs();
    const path = await nodePath();
    let entries: Dirent[];
    try {
      entries = await fs.readdir(this.dir, { withFileTypes: true });
    } catch (e) {
      throw fsError(e, '.', this.description);
    }
    const names: string[] = [];
    for (const d of entries) {
      if (d.isFile()) names.push(d.name);
      else if (d.isSymbolicLink()) {
        const st = await fs.stat(path.join(this.dir, d.name)).catch(() => undefined);
        if (st?.isFile()) names.push(d.name);
      }
    }
    return names.sort();
  }
}

/** A directory on disk as a model source (Node and Deno). The directory is checked on first use. */
export function localSource(dir: string, options?: LocalSourceOptions): LocalSource {
  if (typeof dir !== 'string' || dir.length === 0) throw new LowbitError('INVALID_ARGUMENT', 'localSource needs a directory path');
  return new LocalSource(dir, options);
}
