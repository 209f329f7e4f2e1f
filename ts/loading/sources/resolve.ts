/**
 * resolveSource: whatever the user has -> a ModelSource.
 *
 * - A ModelSource (anything with open/exists/readText/readJson) -> itself.
 * - A Blob or File -> a one-file blob source; a Map<string, Blob> or an array of Files -> a
 *   multi-file blob source.
 * - A URL object or an 'http(s)://…' string -> a URL source. A URL whose last segment is a
 *   weights file (….safetensors, ….gguf, ….safetensors.index.json) points at that file: the
 *   source is its folder, with the file as `weightFile`. A 'file:' URL -> a local source.
 * - Any other string, in Node or Deno: an existing directory -> a local source; an existing
 *   weights file -> a local source of its folder with that file as `weightFile`. A local
 *   directory wins over a hub id of the same spelling.
 * - Otherwise a string of the form 'org/name' -> the Hugging Face hub (endpoint, revision and
 *   token from the options). A bare 'name' is not taken as a hub id (it reads as a misspelled
 *   local path); use hubSource('name') for the hub's few legacy ids without an org.
 */
import { LowbitError } from '../../errors.js';
import { BlobSource } from './blob.js';
import { HubSource, isHubId } from './hub.js';
import { LocalSource, nodeFs, nodePath } from './local.js';
import { isModelSource, isServerRuntime, isWeightFileName, type ModelSource } from './types.js';
import { UrlSource } from './url.js';

/** What `resolveSource` takes: a local path, a URL, a hub id ('org/name'), Blobs / Files, or a ModelSource. */
export type SourceInput = string | URL | Blob | Map<string, Blob> | readonly File[] | ModelSource;

/** Options of `resolveSource`, passed on to the source it picks. */
export interface ResolveSourceOptions {
  /** Hub endpoint (default: HF_ENDPOINT from the environment, else https://huggingface.co). */
  endpoint?: string;
  /** Hub revision: a branch, tag or commit (default 'main'). */
  revision?: string;
  /** Sent as `Authorization: Bearer <token>` with hub and URL requests. */
  token?: string;
  /** The fetch for hub and URL sources (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Extra headers for hub and URL requests. */
  headers?: HeadersInit;
  /** Retries of transient HTTP failures (default 3). */
  retries?: number;
  /** First retry delay in ms, doubling after (default 250). */
  retryDelayMs?: number;
  /** The name of a single Blob without one (default: File.name, else sniffed). */
  name?: string;
}

function httpOptions(o: ResolveSourceOptions) {
  return {
    ...(o.fetch ? { fetch: o.fetch } : {}),
    ...(o.headers ? { headers: o.headers } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(o.retries !== undefined ? { retries: o.retries } : {}),
    ...(o.retryDelayMs !== undefined ? { retryDelayMs: o.retryDelayMs } : {}),
  };
}

function fromUrl(url: URL, o: ResolveSourceOptions): UrlSource {
  const segments = url.pathname.split('/');
  const last = segments[segments.length - 1] ?? '';
  let name: string;
  try {
    name = decodeURIComponent(last);
  } catch {
    name = last;
  }
  if (last !== '' && isWeightFileName(name) && !name.includes('/')) {
    const base = new URL(url.href);
    base.pathname = segments.slice(0, -1).join('/') + '/';
    base.search = '';
    return new UrlSource(base, { ...httpOptions(o), weightFile: name, files: { [name]: url.href }, description: url.href });
  }
  return new UrlSource(url, httpOptions(o));
}

async function fromFileUrl(url: URL): Promise<ModelSource> {
  const mod = 'node:url';
  let path: string;
  try {
    path = ((await import(/* @vite-ignore */ mod)) as { fileURLToPath(u: URL): string }).fileURLToPath(url);
  } catch (e) {
    throw new LowbitError('INVALID_ARGUMENT', `file: URLs can only be read in Node or Deno (${url.href})`, { cause: e });
  }
  const found = await fromLocalPath(path);
  if (!found) throw new LowbitError('NOT_FOUND', `no such file or directory: ${path}`);
  return found;
}

/** A local source for an existing directory or weights file; undefined when nothing is there. */
async function fromLocalPath(path: string): Promise<ModelSource | undefined> {
  const fs = await nodeFs();
  let st: { isFile(): boolean; isDirectory(): boolean };
  try {
    st = await fs.stat(path);
  } catch {
    return undefined;
  }
  if (st.isDirectory()) return new LocalSource(path);
  const p = await nodePath();
  const name = p.basename(path);
  if (st.isFile() && isWeightFileName(name)) return new LocalSource(p.dirname(path), { weightFile: name });
  throw new LowbitError('INVALID_ARGUMENT', `${path} is not a model directory or a .safetensors/.gguf file: pass the model's folder`);
}

function looksLikePath(s: string): boolean {
  return /^(\.{1,2}([\\/]|$)|[\\/~]|[A-Za-z]:[\\/])/.test(s) || s.includes('\\');
}

/** Turns a path, URL, hub id, Blob(s) or ModelSource into a ModelSource (see the module comment). */
export async function resolveSource(input: SourceInput, options: ResolveSourceOptions = {}): Promise<ModelSource> {
  if (typeof Blob !== 'undefined' && input instanceof Blob) return new BlobSource(input, options.name === undefined ? {} : { name: options.name });
  if (input instanceof Map || Array.isArray(input)) return new BlobSource(input as Map<string, Blob> | readonly File[]);
  if (input instanceof URL) {
    if (input.protocol === 'http:' || input.protocol === 'https:') return fromUrl(input, options);
    if (input.protocol === 'file:') return fromFileUrl(input);
    throw new LowbitError('INVALID_ARGUMENT', `cannot load a model from a ${input.protocol} URL (use http:, https: or file:)`);
  }
  if (typeof input !== 'string') {
    if (isModelSource(input)) return input;
    throw new LowbitError('INVALID_ARGUMENT', 'a model source is a path, URL, hub id (org/name), Blob, File[], Map<string, Blob> or ModelSource');
  }
  const s = input.trim();
  if (s.length === 0) throw new LowbitError('INVALID_ARGUMENT', 'the model path, URL or hub id is empty');
  if (/^https?:\/\//i.test(s)) {
    let u: URL;
    try {
      u = new URL(s);
    } catch (e) {
      throw new LowbitError('INVALID_ARGUMENT', `${JSON.stringify(s)} is not a valid URL`, { cause: e });
    }
    return fromUrl(u, options);
  }
  if (/^file:/i.test(s)) return fromFileUrl(new URL(s));
  const hub = () =>
    new HubSource(s, {
      ...httpOptions(options),
      ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
      ...(options.revision !== undefined ? { revision: options.revision } : {}),
    });
  if (!isServerRuntime()) {
    if (isHubId(s, true)) return hub();
    throw new LowbitError('INVALID_ARGUMENT', `${JSON.stringify(s)} is neither a URL nor a hub id ('org/name'); local paths cannot be read in a browser: pass a File or Blob`);
  }
  const local = await fromLocalPath(input);
  if (local) return local;
  if (!looksLikePath(s) && isHubId(s, true)) return hub();
  const hint = looksLikePath(s) || !isHubId(s) ? '' : ` ('${s}' alone is not taken as a hub id: use hubSource('${s}') for a legacy id without an org)`;
  throw new LowbitError(
    'NOT_FOUND',
    `no such local directory or file: ${input}. Hugging Face hub ids look like 'org/name'; URLs start with https://${hint}`,
  );
}
