/**
 * The two interfaces every model source implements, and the checks they share.
 *
 * A ModelSource is a repo-like set of files (config.json, tokenizer.json, model.safetensors or
 * its shards, *.gguf) named by relative paths; a ByteRange is random access to one of them.
 */
import { LowbitError } from '../../errors.js';

/** Random access to one file. */
/** How a source talks to the hub or a URL: endpoint, revision, credentials, fetch and retries. */
export interface HubRequestOptions {
  /** Hub endpoint (default: HF_ENDPOINT from the environment, else https://huggingface.co). */
  endpoint?: string;
  /** Hub revision: a branch, tag or commit (default 'main'). */
  revision?: string;
  /** Sent as `Authorization: Bearer <token>` with hub requests (default: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file). */
  token?: string;
  /** The fetch for hub and URL sources (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Extra headers for hub and URL requests. */
  headers?: HeadersInit;
  /** Retries of transient HTTP failures (default 3). */
  retries?: number;
  /** First retry delay in ms, doubling after (default 250). */
  retryDelayMs?: number;
}

export interface ByteRange {
  /**
   * Exactly `length` bytes starting at `offset`. Rejects with INVALID_ARGUMENT when the range
   * is not inside [0, size); rejects with the signal's reason when `signal` aborts.
   */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** The file's size in bytes. */
  readonly size: number;
  /** The file's name, relative to its source. */
  readonly name: string;
  /** Releases what the range holds (a file handle); reads fail afterwards. */
  close?(): Promise<void>;
}

/** A repo-like set of files named by relative paths ('config.json', 'sub/x.safetensors'). */
export interface ModelSource {
  /** Where the files come from, for messages: 'local:/models/x', 'https://…', 'hub:org/name@main (…)'. */
  readonly description: string;
  /** Opens one file for random access. NOT_FOUND when it does not exist. */
  open(file: string): Promise<ByteRange>;
  /** Whether the file exists. */
  exists(file: string): Promise<boolean>;
  /** The whole file as UTF-8 text. NOT_FOUND when it does not exist. */
  readText(file: string, signal?: AbortSignal): Promise<string>;
  /** The whole file parsed as JSON. MALFORMED_FILE when it is not JSON. */
  readJson<T = unknown>(file: string, signal?: AbortSignal): Promise<T>;
  /** The file names at the top of the source, when it can list them (local directories, blobs). */
  list?(): Promise<string[]>;
  /** The weights file the input pointed at, when it named one (a path or URL to a .gguf file). */
  readonly weightFile?: string;
}

/**
 * Checks that `file` is a relative path inside its source: '/'-separated, no leading '/', no
 * '.' or '..' or empty segments, no '\\', ':' or NUL. Returns it unchanged; INVALID_ARGUMENT otherwise.
 */
export function checkFileName(file: string): string {
  if (typeof file !== 'string' || file.length === 0) {
    throw new LowbitError('INVALID_ARGUMENT', `a file name must be a non-empty string, got ${JSON.stringify(file)}`);
  }
  const bad =
    /[\\:\0]/.test(file) || file.split('/').some((seg) => seg === '' || seg === '.' || seg === '..');
  if (bad) {
    throw new LowbitError(
      'INVALID_ARGUMENT',
      `'${file}' is not a file name inside the model: names are relative paths such as 'config.json' or 'sub/model.safetensors', without '..', '.', a leading '/', '\\\\' or ':'`,
      { file },
    );
  }
  return file;
}

/** Checks a read request against a file's size (INVALID_ARGUMENT past the end). */
export function checkRange(offset: number, length: number, size: number, name: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new LowbitError('INVALID_ARGUMENT', `read(${offset}, ${length}) of '${name}': offset and length must be non-negative integers`, { file: name });
  }
  if (offset + length > size) {
    throw new LowbitError(
      'INVALID_ARGUMENT',
      `read of bytes [${offset}, ${offset + length}) is past the end of '${name}' (${size} bytes)`,
      { file: name },
    );
  }
}

const utf8 = new TextDecoder('utf-8');

export function decodeText(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

export function parseJson<T>(text: string, file: string, description: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new LowbitError('MALFORMED_FILE', `'${file}' in ${description} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, { file, cause: e });
  }
}

/** The parts every source shares: readText and readJson on top of open. */
export abstract class BaseSource implements ModelSource {
  abstract readonly description: string;
  abstract open(file: string): Promise<ByteRange>;
  abstract exists(file: string): Promise<boolean>;

  async readBytes(file: string, signal?: AbortSignal): Promise<Uint8Array> {
    const range = await this.open(file);
    try {
      return await range.read(0, range.size, signal);
    } finally {
      await range.close?.();
    }
  }

  async readText(file: string, signal?: AbortSignal): Promise<string> {
    return decodeText(await this.readBytes(file, signal));
  }

  async readJson<T = unknown>(file: string, signal?: AbortSignal): Promise<T> {
    return parseJson<T>(await this.readText(file, signal), file, this.description);
  }
}

/** Whether `x` already implements ModelSource (duck-typed, so other packages' sources count). */
export function isModelSource(x: unknown): x is ModelSource {
  if (typeof x !== 'object' || x === null) return false;
  const s = x as Record<string, unknown>;
  return ['open', 'exists', 'readText', 'readJson'].every((k) => typeof s[k] === 'function');
}

/** Whether this is Node or Deno (which can read local files), as opposed to a browser. */
export function isServerRuntime(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; Deno?: unknown };
  return g.Deno !== undefined || g.process?.versions?.node !== undefined;
}

/** The last path segment ('a/b/model.gguf' -> 'model.gguf'). */
export function baseName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] ?? path;
}

/** Whether the name is a weights file a source can point at directly. */
export function isWeightFileName(name: string): boolean {
  return /\.(safetensors|gguf)$/i.test(name) || /\.safetensors\.index\.json$/i.test(name);
}
