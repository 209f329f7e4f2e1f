/**
 * resolveSource: whatever the user has -> a ModelSource.
 *
 * - A ModelSource (anything with open/exists/readText/readJson) -> itself.
 * - A Blob or File -> a one-file blob source; a Map<string, Blob> or an array of Files -> a
 *   multi-file blob source.
 * - A hub URL ('https://huggingface.co/<org>/<name>/resolve/<revision>/<weights file>', or on
 *   the configured endpoint) -> that hub repository at that revision, with the file as
 *   `weightFile`, through the model cache like a hub id.
 * - Any other URL object or 'http(s)://…' string -> a URL source. A URL whose last segment is a
 *   weights file (….safetensors, ….gguf, ….safetensors.index.json) points at that file: the
 *   source is its folder, with the file as `weightFile`. A 'file:' URL -> a local source.
 * - Any other string, in Node or Deno: an existing directory -> a local source; an existing
 *   weights file -> a local source of its folder with that file as `weightFile`. A local
 *   directory wins over a hub id of the same spelling.
 * - Otherwise a string of the form 'org/name' -> the Hugging Face hub (endpoint, revision and
 *   token from the options). A bare 'name' is not taken as a hub id (it reads as a misspelled
 *   local path); use hubSource('name') for the hub's few legacy ids without an org.
 *   Hub files go through the model cache (ts/loading/cache/: the Hugging Face cache folder in
 *   Node and Deno, the Cache API in browsers) unless `cache: false`; the token defaults to
 *   HF_TOKEN / the token file, and is sent to the hub only.
 */
import { LowbitError } from '../../errors.js';
import { BlobSource } from './blob.js';
import { HubSource, hubEndpointFromEnv, isHubId } from './hub.js';
import { LocalSource, nodeFs, nodePath } from './local.js';
import { isModelSource, isServerRuntime, isWeightFileName, type HubRequestOptions, type ModelSource } from './types.js';
import { UrlSource } from './url.js';
import { cachedHubSource, hasCacheApi, hubOfflineFromEnv, hubTokenFromEnv, type HubCacheOptions } from '../cache/index.js';
import type { ProgressCallback } from './progress.js';

/** What `resolveSource` takes: a local path, a URL, a hub id ('org/name'), Blobs / Files, or a ModelSource. */
export type SourceInput = string | URL | Blob | Map<string, Blob> | readonly File[] | ModelSource;

/** Options of `resolveSource`, passed on to the source it picks. */
export interface ResolveSourceOptions extends HubRequestOptions {
  /** The name of a single Blob without one (default: File.name, else sniffed). */
  name?: string;
  /**
   * Hub ids: cache files in the Hugging Face cache layout (Node, Deno) or the Cache API
   * (browsers) and read them from there (default true); false reads the hub directly, with
   * Range requests, every time. An object says where (HubCacheOptions).
   */
  cache?: boolean | HubCacheOptions;
  /** Hub ids: read only what is cached, never ask the hub (default: HF_HUB_OFFLINE=1). A file not cached is OFFLINE_CACHE_MISS. */
  offline?: boolean;
  /** Download progress of hub files into the cache (phase 'download'). */
  onProgress?: ProgressCallback;
  /** Aborts downloads into the cache. */
  signal?: AbortSignal;
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

/**
 * A hub repository at a revision: through the model cache unless `cache: false` (or a browser
 * page with no Cache API), else read directly with Range requests.
 */
async function hubRepo(id: string, revision: string | undefined, weightFile: string | undefined, options: ResolveSourceOptions, endpoint = options.endpoint): Promise<ModelSource> {
  const endpointRevision = {
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(revision !== undefined ? { revision } : {}),
  };
  const cache = typeof options.cache === 'object' ? options.cache : {};
  const noStore = !isServerRuntime() && !hasCacheApi() && cache.store === undefined;
  if (options.cache === false || (noStore && options.cache === undefined)) {
    if (options.offline ?? hubOfflineFromEnv()) {
      throw new LowbitError('INVALID_ARGUMENT', `offline mode reads hub files from the cache only, but the cache is ${options.cache === false ? 'turned off (cache: false)' : 'not available here (the Cache API needs https or localhost)'}; cannot load '${id}'`);
    }
    const token = options.token ?? (await hubTokenFromEnv());
    return new HubSource(id, { ...httpOptions(options), ...(token !== undefined ? { token } : {}), ...endpointRevision, ...(weightFile !== undefined ? { weightFile } : {}) });
  }
  return cachedHubSource(id, {
    ...httpOptions(options),
    ...endpointRevision,
    cache,
    ...(weightFile !== undefined ? { weightFile } : {}),
    ...(options.offline !== undefined ? { offline: options.offline } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * A hub file URL ('<hub>/<org>/<name>/resolve/<revision>/<file>', on huggingface.co, hf.co or
 * the endpoint / HF_ENDPOINT) or repo URL at a revision ('…/resolve/<revision>/') as a hub
 * repository, so it is cached like a hub id; undefined for any other URL (and files in
 * subfolders, which stay plain URL sources).
 */
function hubUrlParts(url: URL, o: ResolveSourceOptions): { id: string; revision: string; weightFile?: string; endpoint: string } | undefined {
  if (o.cache === false) return undefined;
  const endpoint = o.endpoint ?? hubEndpointFromEnv();
  const origins = new Set(['https://huggingface.co', 'https://hf.co']);
  try {
    if (endpoint !== undefined) origins.add(new URL(endpoint).origin);
  } catch {
    /* a bad endpoint is reported where it is used */
  }
  if (!origins.has(url.origin)) return undefined;
  const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/([^/]*)$/.exec(url.pathname);
  if (!m) return undefined;
  let id: string, revision: string, file: string;
  try {
    [id, revision, file] = [`${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`, decodeURIComponent(m[3]!), decodeURIComponent(m[4]!)];
  } catch {
    return undefined;
  }
  if (!isHubId(id, true) || (file !== '' && !isWeightFileName(file))) return undefined;
  // The endpoint the URL names, unless it is the configured one spelled with a path prefix.
  const base = endpoint !== undefined && new URL(endpoint).origin === url.origin ? endpoint : url.origin;
  return { id, revision, endpoint: base, ...(file !== '' ? { weightFile: file } : {}) };
}

function looksLikePath(s: string): boolean {
  return /^(\.{1,2}([\\/]|$)|[\\/~]|[A-Za-z]:[\\/])/.test(s) || s.includes('\\');
}

/** Turns a path, URL, hub id, Blob(s) or ModelSource into a ModelSource (see the module comment). */
export async function resolveSource(input: SourceInput, options: ResolveSourceOptions = {}): Promise<ModelSource> {
  if (typeof Blob !== 'undefined' && input instanceof Blob) return new BlobSource(input, options.name === undefined ? {} : { name: options.name });
  if (input instanceof Map || Array.isArray(input)) return new BlobSource(input as Map<string, Blob> | readonly File[]);
  if (input instanceof URL) {
    if (input.protocol === 'http:' || input.protocol === 'https:') {
      const h = hubUrlParts(input, options);
      return h ? hubRepo(h.id, h.revision, h.weightFile, options, h.endpoint) : fromUrl(input, options);
    }
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
    const h = hubUrlParts(u, options);
    return h ? hubRepo(h.id, h.revision, h.weightFile, options, h.endpoint) : fromUrl(u, options);
  }
  if (/^file:/i.test(s)) return fromFileUrl(new URL(s));
  const hub = () => hubRepo(s, options.revision, undefined, options);
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
