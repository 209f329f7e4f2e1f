/**
 * The hub cache in a browser: the Cache API (cache "lowbit-hub" by default), one entry per
 * file at a commit, keyed by the URL the file has on the hub at that commit:
 *
 *   <endpoint>/<repo>/resolve/<commit>/<file>             the bytes (X-Linked-Etag: the etag)
 *   <endpoint>/<repo>/lowbit-cache/refs/<revision>        text: the commit of a branch or tag
 *   <endpoint>/<repo>/lowbit-cache/no-exist/<commit>/<file>   empty: the hub has no such file
 *
 * Why the Cache API rather than OPFS: it is there in every browser, in pages and workers alike
 * (OPFS's createWritable is not in every browser's page context yet), and Cache.put is atomic:
 * the entry appears only once its whole body has been stored, and an erroring body (an
 * interrupted or damaged download) stores nothing — the temporary-file-and-rename of the disk
 * cache for free. A cached Response's blob() is backed by the disk, so reading ranges with
 * Blob.slice does not load the file into memory. It needs a secure context (https or localhost).
 */
import { BlobSource } from '../sources/blob.js';
import type { BlobWriter, CachedFile, FileKey, HubStore } from './store.js';

export const DEFAULT_BROWSER_CACHE_NAME = 'lowbit-hub';

/** Whether this runtime has the Cache API (a browser page or worker in a secure context). */
export function hasCacheApi(): boolean {
  return typeof (globalThis as { caches?: unknown }).caches === 'object' && (globalThis as { caches?: unknown }).caches !== null;
}

function encodePath(file: string): string {
  return file.split('/').map(encodeURIComponent).join('/');
}

export class BrowserHubStore implements HubStore {
  readonly location: string;
  private cache: Promise<Cache> | undefined;

  constructor(
    private readonly endpoint: string,
    readonly cacheName = DEFAULT_BROWSER_CACHE_NAME,
  ) {
    this.location = `Cache API "${cacheName}"`;
  }

  private open_(): Promise<Cache> {
    this.cache ??= (globalThis as unknown as { caches: CacheStorage }).caches.open(this.cacheName);
    return this.cache;
  }

  private fileUrl(key: FileKey): string {
    return `${this.endpoint}/${key.repo}/resolve/${encodeURIComponent(key.commit)}/${encodePath(key.file)}`;
  }

  private refUrl(repo: string, revision: string): string {
    return `${this.endpoint}/${repo}/lowbit-cache/refs/${encodePath(revision)}`;
  }

  private missingUrl(key: FileKey): string {
    return `${this.endpoint}/${key.repo}/lowbit-cache/no-exist/${encodeURIComponent(key.commit)}/${encodePath(key.file)}`;
  }

  async readRef(repo: string, revision: string): Promise<string | undefined> {
    const res = await (await this.open_()).match(this.refUrl(repo, revision));
    const commit = res === undefined ? undefined : (await res.text()).trim();
    return commit || undefined;
  }

  async writeRef(repo: string, revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    await (await this.open_()).put(this.refUrl(repo, revision), new Response(commit, { headers: { 'content-type': 'text/plain' } }));
  }

  async has(key: FileKey): Promise<boolean> {
    return (await (await this.open_()).match(this.fileUrl(key))) !== undefined;
  }

  async open(key: FileKey): Promise<CachedFile | undefined> {
    const url = this.fileUrl(key);
    const res = await (await this.open_()).match(url);
    if (res === undefined) return undefined;
    const blob = await res.blob();
    const etag = res.headers.get('x-linked-etag') ?? undefined;
    const range = await new BlobSource(blob, { name: key.file, description: `${this.location} ${url}` }).open(key.file);
    return { range, ...(etag !== undefined ? { etag } : {}) };
  }

  async knownMissing(key: FileKey): Promise<boolean> {
    return (await (await this.open_()).match(this.missingUrl(key))) !== undefined;
  }

  async markMissing(key: FileKey): Promise<void> {
    await (await this.open_()).put(this.missingUrl(key), new Response('')).catch(() => undefined);
  }

  /** No blob sharing between commits in the Cache API: every file at a commit is its own entry. */
  async linkExisting(): Promise<boolean> {
    return false;
  }

  async writer(key: FileKey, etag: string): Promise<BlobWriter> {
    const cache = await this.open_();
    const url = this.fileUrl(key);
    // Each try streams into its own Cache.put; only the last, complete one is let through.
    const start = () => {
      const pipe = new TransformStream<Uint8Array, Uint8Array>();
      const put = cache.put(url, new Response(pipe.readable, { headers: { 'content-type': 'application/octet-stream', 'x-linked-etag': etag } }));
      put.catch(() => undefined); // observed in commit() / abort()
      return { w: pipe.writable.getWriter(), put };
    };
    let cur = start();
    const fail = async () => {
      await cur.w.abort(new Error('download abandoned')).catch(() => undefined);
      await cur.put.catch(() => undefined);
    };
    return {
      write: async (bytes) => {
        await cur.w.ready;
        await cur.w.write(bytes);
      },
      truncate: async () => {
        await fail();
        cur = start();
      },
      commit: async () => {
        await cur.w.close();
        await cur.put;
      },
      abort: fail,
    };
  }
}
