/**
 * The model cache: hub repositories read through the Hugging Face cache folder (Node, Deno) or
 * the Cache API (browsers). cachedHubSource() picks the store and reads the environment
 * (HF_HUB_CACHE / HF_HOME, HF_HUB_OFFLINE, HF_TOKEN / the token file, HF_ENDPOINT).
 */
import { LowbitError } from '../../errors.js';
import { DEFAULT_HUB_ENDPOINT, hubEndpointFromEnv, isHubId } from '../sources/hub.js';
import type { ProgressCallback } from '../sources/progress.js';
import { isServerRuntime, type HubRequestOptions } from '../sources/types.js';
import { BrowserHubStore, DEFAULT_BROWSER_CACHE_NAME, hasCacheApi } from './browser-store.js';
import { CachedHubSource } from './cached-hub-source.js';
import { hubCacheDirFromEnv, hubOfflineFromEnv, hubTokenFromEnv } from './env.js';
import { FsHubStore } from './fs-store.js';
import type { HubStore } from './store.js';

export { CachedHubSource, type CachedHubSourceOptions } from './cached-hub-source.js';
export { FsHubStore, repoFolderName } from './fs-store.js';
export { BrowserHubStore, DEFAULT_BROWSER_CACHE_NAME, hasCacheApi } from './browser-store.js';
export { hubCacheDirFromEnv, hubOfflineFromEnv, hubTokenFromEnv, hfHome } from './env.js';
export type { HubStore, FileKey, CachedFile, BlobWriter } from './store.js';

/** Where and how hub files are cached. */
export interface HubCacheOptions {
  /** Node, Deno: the hub cache folder (default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). */
  dir?: string;
  /** Browsers: the Cache API cache's name (default 'lowbit-hub'). */
  cacheName?: string;
  /** Check a cached file against its etag (sha256 / git blob id) the first time a process opens it (default true). Downloads are always checked. */
  verifyCached?: boolean;
  /**
   * Download files that are not cached yet (default true). false: cached files are read from the
   * cache, others straight from the hub with Range requests, and nothing is stored — what a tool
   * that reads only headers (`lowbit inspect`) wants.
   */
  download?: boolean;
  /** Ask the hub which commit a branch or tag is at now, instead of trusting the cached refs/ (default false: a cached model loads with no request). */
  revalidate?: boolean;
  /** A store of your own (anything implementing HubStore); overrides dir and cacheName. */
  store?: HubStore;
}

export interface CachedHubOptions extends HubRequestOptions {
  /** Default: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE). */
  offline?: boolean;
  cache?: HubCacheOptions;
  /** The weights file to load, when the repository holds several (e.g. one of many .gguf files). */
  weightFile?: string;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** The store this runtime caches in; undefined in a browser without the Cache API (an insecure page). */
export async function defaultHubStore(endpoint: string, cache: HubCacheOptions = {}): Promise<HubStore | undefined> {
  if (cache.store !== undefined) return cache.store;
  if (isServerRuntime()) return new FsHubStore(cache.dir ?? (await hubCacheDirFromEnv()));
  if (hasCacheApi()) return new BrowserHubStore(endpoint, cache.cacheName ?? DEFAULT_BROWSER_CACHE_NAME);
  return undefined;
}

/**
 * A hub repository ('org/name') read through the model cache. INVALID_ARGUMENT when this runtime
 * has no place to cache (a browser page that is not a secure context).
 */
export async function cachedHubSource(id: string, o: CachedHubOptions = {}): Promise<CachedHubSource> {
  if (typeof id !== 'string' || !isHubId(id)) {
    throw new LowbitError('INVALID_ARGUMENT', `${JSON.stringify(id)} is not a Hugging Face hub id (they look like 'org/name')`);
  }
  const revision = o.revision ?? 'main';
  if (typeof revision !== 'string' || revision.length === 0) throw new LowbitError('INVALID_ARGUMENT', 'revision must be a non-empty string');
  const endpoint = (o.endpoint ?? hubEndpointFromEnv() ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
  try {
    new URL(endpoint);
  } catch (e) {
    throw new LowbitError('INVALID_ARGUMENT', `hub endpoint ${JSON.stringify(endpoint)} is not a URL`, { cause: e });
  }
  const store = await defaultHubStore(endpoint, o.cache);
  if (store === undefined) {
    throw new LowbitError('INVALID_ARGUMENT', 'no place to cache hub files here: the Cache API needs a secure context (https or localhost); pass cache: false to read from the hub directly');
  }
  const token = o.token ?? (await hubTokenFromEnv());
  return new CachedHubSource(id, {
    store,
    endpoint,
    revision,
    offline: o.offline ?? hubOfflineFromEnv(),
    ...(token !== undefined ? { token } : {}),
    ...(o.fetch ? { fetch: o.fetch } : {}),
    ...(o.headers ? { headers: o.headers } : {}),
    ...(o.retries !== undefined ? { retries: o.retries } : {}),
    ...(o.retryDelayMs !== undefined ? { retryDelayMs: o.retryDelayMs } : {}),
    ...(o.cache?.verifyCached !== undefined ? { verifyCached: o.cache.verifyCached } : {}),
    ...(o.cache?.revalidate !== undefined ? { revalidate: o.cache.revalidate } : {}),
    ...(o.cache?.download !== undefined ? { download: o.cache.download } : {}),
    ...(o.weightFile !== undefined ? { weightFile: o.weightFile } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
}
