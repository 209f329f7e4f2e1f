/**
 * A Hugging Face hub repository read through a local cache: each file is downloaded whole once
 * (checked against the hub's etag while it streams), kept in a HubStore, and read from there.
 *
 * How a file is found, in order (as huggingface_hub's hf_hub_download does, except that a branch
 * or tag already in refs/ is not asked about again, so a cached model loads with no request):
 *
 * 1. The commit: the revision itself when it is a full commit hash, else the one this source
 *    already saw, else refs/<revision> in the store. With a commit, a cached file is used as it
 *    is and a file the hub said is absent (.no_exist/) does not exist.
 * 2. Offline (`offline: true` or HF_HUB_OFFLINE=1): a file not found so is OFFLINE_CACHE_MISS.
 * 3. Otherwise HEAD /resolve/<commit or revision>/<file> (hub-http.ts) gives the commit, the etag
 *    and the size; refs/<revision> is updated; a blob already held under that etag is linked,
 *    else the file is downloaded (one download per file at a time in this process; the store's
 *    temporary file + rename keeps concurrent processes safe).
 *
 * Cached files are checked against their etag when first opened in a process (verifyCached);
 * a damaged one is INTEGRITY, never used.
 */
import { LowbitError } from '../../errors.js';
import type { ProgressCallback } from '../sources/progress.js';
import { BaseSource, checkFileName, type ByteRange, type HubRequestOptions } from '../sources/types.js';
import { checkDigest, digestOfRange, expectedDigest, hasherFor } from './digest.js';
import { HubHttp, type HubFileMetadata } from './hub-http.js';
import { isCommitHash, type FileKey, type HubStore } from './store.js';
import { HubSource } from '../sources/hub.js';

export interface CachedHubSourceOptions extends HubRequestOptions {
  store: HubStore;
  endpoint: string;
  /** Never ask the hub: only cached files can be read (default false). */
  offline?: boolean;
  /** Check a cached file against its etag the first time a process opens it (default true). */
  verifyCached?: boolean;
  /**
   * Ask the hub which commit a branch or tag is at now instead of trusting refs/ (one HEAD
   * request per load; default false: a cached branch loads with no request). Offline: ignored.
   */
  revalidate?: boolean;
  /** The weights file the caller pointed at (a hub URL to one .gguf / .safetensors file). */
  weightFile?: string;
  /**
   * Download files that are not cached (default true). false: cached files are still read from
   * the cache, the others with Range requests from the hub, and nothing is stored — for reading
   * headers only (`lowbit inspect`).
   */
  download?: boolean;
  /** Download progress ('download' events). */
  onProgress?: ProgressCallback;
  /** Aborts downloads. */
  signal?: AbortSignal;
  /** Least time between two progress events of one file, in ms (default 100). */
  progressThrottleMs?: number;
}

/** Downloads in flight in this process, by store + repo + commit + file: concurrent loads share one. */
const inFlight = new Map<string, Promise<void>>();
/** Cached bytes already checked in this process (CachedFile.identity). */
const verified = new Set<string>();


export class CachedHubSource extends BaseSource {
  readonly description: string;
  readonly id: string;
  readonly revision: string;
  readonly endpoint: string;
  readonly store: HubStore;
  readonly offline: boolean;
  readonly weightFile?: string;
  private readonly download_: boolean;
  private readonly o: CachedHubSourceOptions;
  private direct: HubSource | undefined;
  private commit: string | undefined;
  private readonly http: HubHttp;
  private readonly metadata = new Map<string, Promise<HubFileMetadata | { missing: true; commit?: string }>>();
  private readonly verifyCached: boolean;
  private readonly revalidate: boolean;
  private readonly onProgress: ProgressCallback | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly throttleMs: number;
  private readonly progress = { bytesDone: 0, bytesTotal: 0, filesDone: 0, filesTotal: 0 };
  /** Files prefetch() has counted in the totals before their download starts. */
  private readonly announced = new Set<string>();

  constructor(id: string, o: CachedHubSourceOptions) {
    super();
    this.id = id;
    this.revision = o.revision ?? 'main';
    this.endpoint = o.endpoint.replace(/\/+$/, '');
    this.store = o.store;
    this.offline = o.offline === true;
    if (o.weightFile !== undefined) this.weightFile = checkFileName(o.weightFile);
    this.download_ = o.download !== false;
    this.o = o;
    this.verifyCached = o.verifyCached !== false;
    this.revalidate = o.revalidate === true && !this.offline;
    this.onProgress = o.onProgress;
    this.signal = o.signal;
    this.throttleMs = o.progressThrottleMs ?? 100;
    if (isCommitHash(this.revision)) this.commit = this.revision;
    const userFetch = o.fetch;
    this.http = new HubHttp({
      fetch: userFetch ? (i, init) => userFetch(i, init) : (i, init) => globalThis.fetch(i, init),
      endpoint: this.endpoint,
      ...(o.token !== undefined ? { token: o.token } : {}),
      ...(o.headers !== undefined ? { headers: o.headers } : {}),
      ...(o.retries !== undefined ? { retries: o.retries } : {}),
      ...(o.retryDelayMs !== undefined ? { retryDelayMs: o.retryDelayMs } : {}),
    });
    this.description = `hub:${id}@${this.revision} (${this.endpoint}; cache ${this.store.location}${this.offline ? ', offline' : ''})`;
  }

  /** The commit this source reads, once known (from the revision, refs/ or the hub). */
  async knownCommit(): Promise<string | undefined> {
    if (this.commit === undefined && !this.revalidate) this.commit = await this.store.readRef(this.id, this.revision);
    return this.commit;
  }

  private resolveUrl(revision: string, file: string): string {
    return `${this.endpoint}/${this.id}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
  }

  private offlineMiss(file: string, commitKnown: boolean): LowbitError {
    const what = commitKnown
      ? `'${file}' of ${this.id} at revision '${this.revision}' is not in the cache`
      : `${this.id} at revision '${this.revision}' is not in the cache at all (no refs/${this.revision}; needed '${file}')`;
    return new LowbitError(
      'OFFLINE_CACHE_MISS',
      `offline, and ${what} (${this.store.location}); load it once online, or turn offline mode off (HF_HUB_OFFLINE / the offline option)`,
      { file },
    );
  }

  private meta(file: string, revision: string): Promise<HubFileMetadata | { missing: true; commit?: string }> {
    let m = this.metadata.get(file);
    if (m === undefined) {
      m = this.http.metadata(this.resolveUrl(revision, file), file, `${this.id}@${this.revision}`, this.signal).then((r) => ('hidden' in r ? this.metaFromApi(file, revision) : r));
      this.metadata.set(file, m);
      m.catch(() => this.metadata.delete(file));
    }
    return m;
  }

  /** The repository's file list at a revision, from the hub's API (browsers, where a CDN redirect hides the HEAD's headers). */
  private repoInfo: Promise<{ sha: string; files: Map<string, { etag: string; size?: number }> }> | undefined;

  private async metaFromApi(file: string, revision: string): Promise<HubFileMetadata | { missing: true; commit?: string }> {
    this.repoInfo ??= (async () => {
      const url = `${this.endpoint}/api/models/${this.id}/revision/${encodeURIComponent(revision)}?blobs=true`;
      const info = (await this.http.json(url, file, `${this.id}@${this.revision}`, this.signal)) as {
        sha?: unknown;
        siblings?: { rfilename?: unknown; size?: unknown; blobId?: unknown; lfs?: { sha256?: unknown; size?: unknown } | null }[];
      };
      if (typeof info?.sha !== 'string' || !Array.isArray(info.siblings)) throw new LowbitError('NETWORK', `${url} is not the hub's model info (no sha / siblings)`, { file });
      const files = new Map<string, { etag: string; size?: number }>();
      for (const s of info.siblings) {
        const etag = s.lfs?.sha256 ?? s.blobId;
        const size = s.lfs?.size ?? s.size;
        if (typeof s.rfilename !== 'string' || typeof etag !== 'string') continue;
        files.set(s.rfilename, { etag, ...(typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? { size } : {}) });
      }
      return { sha: info.sha, files };
    })();
    this.repoInfo.catch(() => (this.repoInfo = undefined));
    const info = await this.repoInfo;
    const f = info.files.get(file);
    if (f === undefined) return { missing: true, commit: info.sha };
    return { commit: info.sha, etag: f.etag, ...(f.size !== undefined ? { size: f.size } : {}), location: this.resolveUrl(info.sha, file) };
  }

  /** Learns the commit from the hub's answer (first answer wins for this source) and records the ref. */
  private async learnCommit(commit: string): Promise<string> {
    if (this.commit === undefined) {
      this.commit = commit;
      if (this.download_) await this.store.writeRef(this.id, this.revision, commit).catch(() => undefined);
    }
    return this.commit;
  }

  /** Records in the store that the hub has no `file` at `commit` (when that is the commit this source reads). */
  private async rememberMissing(file: string, commit: string | undefined): Promise<void> {
    if (commit !== undefined && (await this.learnCommit(commit)) === commit && this.download_) await this.store.markMissing({ repo: this.id, commit, file });
  }

  /** The key of a file that is in the store after this (downloaded if need be); NOT_FOUND if the hub has none. */
  private async ensure(file: string): Promise<FileKey> {
    checkFileName(file);
    const known = await this.knownCommit();
    if (known !== undefined) {
      const key = { repo: this.id, commit: known, file };
      if (await this.store.has(key)) return key;
      if (await this.store.knownMissing(key)) throw this.notFound(file);
    }
    if (this.offline) throw this.offlineMiss(file, known !== undefined);
    let m = await this.meta(file, known ?? this.revision);
    if (!('missing' in m)) {
      const commit = await this.learnCommit(m.commit);
      // The branch moved between two of this load's requests: ask again at the commit it keeps.
      if (m.commit !== commit) {
        this.metadata.delete(file);
        m = await this.meta(file, commit);
      }
    }
    if ('missing' in m) {
      await this.rememberMissing(file, m.commit);
      throw this.notFound(file);
    }
    const commit = m.commit;
    const key = { repo: this.id, commit, file };
    const flightKey = `${this.store.location}\0${this.id}\0${commit}\0${file}`;
    const joined = inFlight.get(flightKey);
    if (joined !== undefined) {
      try {
        await joined;
        return key;
      } catch {
        // Another load's download failed (or was aborted by its own signal): try ourselves.
        if (inFlight.get(flightKey) === joined) inFlight.delete(flightKey);
      }
    }
    let flight = inFlight.get(flightKey);
    if (flight === undefined) {
      flight = (async () => {
        try {
          if (await this.store.has(key)) return;
          if (await this.store.linkExisting(key, m.etag)) return;
          await this.download(key, m);
        } catch (e) {
          throw this.storeError(e, file);
        }
      })().finally(() => inFlight.delete(flightKey));
      inFlight.set(flightKey, flight);
    }
    await flight;
    return key;
  }

  /** A failure of the store itself (a read-only folder, no --allow-write in Deno) as a LowbitError. */
  private storeError(e: unknown, file: string): unknown {
    if (e instanceof LowbitError || this.signal?.aborted) return e;
    return new LowbitError(
      'INVALID_ARGUMENT',
      `cannot write '${file}' of ${this.id} to the model cache (${this.store.location}): ${e instanceof Error ? e.message : String(e)}; set HF_HUB_CACHE, pass cache: { dir }, or cache: false to read the hub directly`,
      { file, cause: e },
    );
  }

  private notFound(file: string): LowbitError {
    return new LowbitError('NOT_FOUND', `'${file}' not found in ${this.id} at revision '${this.revision}'`, { file });
  }

  private emit(file: string, fileDone: number, fileTotal: number): void {
    this.onProgress?.({
      phase: 'download',
      file,
      bytesDone: this.progress.bytesDone,
      bytesTotal: Math.max(this.progress.bytesTotal, this.progress.bytesDone),
      tensorsDone: 0,
      tensorsTotal: 0,
      download: { file, fileBytesDone: fileDone, fileBytesTotal: Math.max(fileTotal, fileDone), filesDone: this.progress.filesDone, filesTotal: this.progress.filesTotal },
    });
  }

  /** Streams the file into the store, checking size and digest before it becomes visible. */
  private async download(key: FileKey, m: HubFileMetadata): Promise<void> {
    const { file } = key;
    const digest = expectedDigest(m.etag, m.size);
    const writer = await this.store.writer(key, m.etag);
    const total = m.size ?? 0;
    if (!this.announced.delete(file)) {
      this.progress.filesTotal++;
      this.progress.bytesTotal += total;
    }
    let done = 0;
    let hasher = digest ? await hasherFor(digest, m.size) : undefined;
    let lastEmit = -Infinity;
    const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
    this.emit(file, 0, total);
    try {
      await this.http.download(
        m.location,
        file,
        `${this.id}@${this.revision}`,
        {
          restart: async () => {
            await writer.truncate();
            this.progress.bytesDone -= done;
            done = 0;
            hasher = digest ? await hasherFor(digest, m.size) : undefined;
          },
          chunk: async (bytes) => {
            if (m.size !== undefined && done + bytes.length > m.size) {
              throw new LowbitError('INTEGRITY', `'${file}' of ${this.id}: the download is longer than the ${m.size} bytes the hub announced`, { file });
            }
            hasher?.update(bytes);
            await writer.write(bytes);
            done += bytes.length;
            this.progress.bytesDone += bytes.length;
            const t = now();
            if (t - lastEmit >= this.throttleMs) {
              lastEmit = t;
              this.emit(file, done, total);
            }
          },
        },
        this.signal,
      );
      if (m.size !== undefined && done !== m.size) {
        throw new LowbitError('NETWORK', `'${file}' of ${this.id}: got ${done} of the ${m.size} bytes the hub announced`, { file });
      }
      if (digest && hasher) checkDigest(digest, hasher.hex(), `the download of '${file}' from ${this.id}`, file);
      await writer.commit();
    } catch (e) {
      await writer.abort();
      this.progress.bytesDone -= done;
      this.progress.bytesTotal -= total;
      this.progress.filesTotal--;
      throw e;
    }
    this.progress.filesDone++;
    this.emit(file, done, total);
  }

  /** Hashes a cached file and compares it with the etag its blob is named by. */
  private async verify(range: ByteRange, etag: string, file: string): Promise<void> {
    const digest = expectedDigest(etag, range.size);
    if (digest === undefined) return;
    checkDigest(digest, await digestOfRange(digest, range, this.signal), `the cached '${file}' of ${this.id} (${this.store.location})`, file);
  }

  /** The hub read directly with Range requests, at the commit once known (download: false). */
  private directSource(commit: string | undefined): HubSource {
    const revision = commit ?? this.revision;
    if (this.direct?.revision !== revision) {
      const o = this.o;
      this.direct = new HubSource(this.id, {
        endpoint: this.endpoint,
        revision,
        ...(o.token !== undefined ? { token: o.token } : {}),
        ...(o.fetch ? { fetch: o.fetch } : {}),
        ...(o.headers !== undefined ? { headers: o.headers } : {}),
        ...(o.retries !== undefined ? { retries: o.retries } : {}),
        ...(o.retryDelayMs !== undefined ? { retryDelayMs: o.retryDelayMs } : {}),
      });
    }
    return this.direct;
  }

  async open(file: string): Promise<ByteRange> {
    if (!this.download_) {
      checkFileName(file);
      const known = await this.knownCommit();
      const cached = known === undefined ? undefined : await this.store.open({ repo: this.id, commit: known, file });
      if (cached !== undefined) return cached.range;
      if (this.offline) throw this.offlineMiss(file, known !== undefined);
      if (known !== undefined && (await this.store.knownMissing({ repo: this.id, commit: known, file }))) throw this.notFound(file);
      return this.directSource(known).open(file);
    }
    const key = await this.ensure(file);
    const cached = await this.store.open(key);
    if (cached === undefined) throw this.notFound(file); // removed between ensure and open
    if (this.verifyCached && cached.etag !== undefined && (cached.identity === undefined || !verified.has(cached.identity))) {
      try {
        await this.verify(cached.range, cached.etag, file);
      } catch (e) {
        await cached.range.close?.();
        throw e;
      }
      if (cached.identity !== undefined) verified.add(cached.identity);
    }
    return cached.range;
  }

  async exists(file: string): Promise<boolean> {
    checkFileName(file);
    const known = await this.knownCommit();
    if (known !== undefined) {
      const key = { repo: this.id, commit: known, file };
      if (await this.store.has(key)) return true;
      if (await this.store.knownMissing(key)) return false;
    }
    // Offline, a revision with a snapshot answers from it (a file not there is taken as absent:
    // huggingface_hub records misses only for files someone asked for); one without is a miss.
    if (this.offline) {
      if (known === undefined) throw this.offlineMiss(file, false);
      return false;
    }
    const m = await this.meta(file, known ?? this.revision);
    if ('missing' in m) {
      await this.rememberMissing(file, m.commit);
      return false;
    }
    await this.learnCommit(m.commit);
    return true;
  }

  /**
   * Downloads the files not yet cached, one after the other, with the overall total known up
   * front (HEAD requests for all of them first). Files the hub lacks are skipped.
   */
  async prefetch(files: readonly string[]): Promise<void> {
    if (this.offline || !this.download_) return;
    const known = await this.knownCommit();
    const todo: string[] = [];
    for (const f of files) {
      if (known !== undefined && (await this.store.has({ repo: this.id, commit: known, file: f }))) continue;
      todo.push(f);
    }
    const metas = await Promise.all(todo.map((f) => this.meta(f, known ?? this.revision)));
    // The overall total is known from here; download() does not count these files again.
    todo.forEach((f, i) => {
      const m = metas[i]!;
      if ('missing' in m) return;
      this.announced.add(f);
      this.progress.filesTotal++;
      this.progress.bytesTotal += m.size ?? 0;
    });
    for (const [i, f] of todo.entries()) {
      const m = metas[i]!;
      if ('missing' in m) continue;
      try {
        await this.ensure(f);
      } finally {
        // Not downloaded after all (already cached by another load, or failed): take it back out.
        if (this.announced.delete(f)) {
          this.progress.filesTotal--;
          this.progress.bytesTotal -= m.size ?? 0;
        }
      }
    }
  }
}
