/**
 * The two requests a cached hub download makes, as huggingface_hub makes them
 * (file_download.py get_hf_file_metadata / _get_metadata_or_catch_error, utils/_http.py):
 *
 * 1. HEAD ${endpoint}/${repo}/resolve/${revision}/${file} without following redirects that leave
 *    the hub: the answer carries X-Repo-Commit (the commit the revision is at), the etag
 *    (X-Linked-Etag, else ETag, quotes and W/ removed), the size (X-Linked-Size, else
 *    Content-Length when it is not a redirect) and, for git-lfs files, a Location on a CDN.
 *    Redirects to the same origin or another hub origin (a renamed repo) are followed.
 * 2. GET of that location, streamed.
 *
 * The token (Authorization) goes to hub origins only: the endpoint's, huggingface.co, hf.co.
 * Server runtimes follow redirects by hand to enforce that; a browser cannot see a redirect
 * (fetch gives an opaque response for redirect: 'manual') and follows them itself, and the
 * fetch standard has it drop Authorization when a redirect changes origin.
 *
 * So in a browser the HEAD of a git-lfs file ends on the CDN, whose answer lacks the hub's
 * headers. metadata() then says `{ hidden: true }` and the caller asks the hub's API instead
 * (GET /api/models/<repo>/revision/<revision>?blobs=true: the commit as `sha`, and per file
 * `siblings[].size`, `.blobId`, `.lfs.sha256` — what huggingface_hub's model_info reads).
 */
import { LowbitError } from '../../errors.js';
import { isServerRuntime } from '../sources/types.js';
import { Retryable, TRANSIENT, withRetries } from '../sources/retry.js';

export interface HubHttpOptions {
  fetch: typeof fetch;
  /** The hub's base URL, e.g. https://huggingface.co. */
  endpoint: string;
  token?: string;
  /** Extra headers for hub requests (never sent to other origins either). */
  headers?: HeadersInit;
  /** Retries of network errors and HTTP 408/425/429/5xx (default 3). */
  retries?: number;
  retryDelayMs?: number;
}

export interface HubFileMetadata {
  /** X-Repo-Commit: the commit hash the revision resolved to. */
  commit: string;
  /** The normalized etag: the git blob id or, for git-lfs files, the sha256. */
  etag: string;
  /** Bytes, when the hub said. */
  size?: number;
  /** Where to GET the bytes: the resolve URL, or the CDN location it redirects to. */
  location: string;
}

const MAX_REDIRECTS = 10;

/** huggingface_hub's _normalize_etag: W/"x" and "x" -> x. */
export function normalizeEtag(etag: string | null): string | undefined {
  if (etag === null) return undefined;
  const v = etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
  return v.length > 0 ? v : undefined;
}

function originOf(url: string): string {
  return new URL(url).origin;
}

/** The origins a token may be sent to. */
export function hubOrigins(endpoint: string): Set<string> {
  return new Set([originOf(endpoint), 'https://huggingface.co', 'https://hf.co']);
}

async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    /* already gone */
  }
}

export class HubHttp {
  private readonly origins: Set<string>;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  /** Whether redirects can be seen and followed by hand (Node, Deno: yes; browsers: no). */
  private readonly manualRedirects = isServerRuntime();

  constructor(private readonly o: HubHttpOptions) {
    this.origins = hubOrigins(o.endpoint);
    this.retries = o.retries ?? 3;
    this.retryDelayMs = o.retryDelayMs ?? 250;
  }

  /** Headers for a request to `url`: the token only when it is a hub origin. */
  private headersFor(url: string, extra?: Record<string, string>): Headers {
    const onHub = this.origins.has(originOf(url));
    const h = new Headers(onHub ? this.o.headers : undefined);
    if (!onHub) h.delete('authorization');
    if (onHub && this.o.token !== undefined) h.set('authorization', `Bearer ${this.o.token}`);
    for (const [k, v] of Object.entries(extra ?? {})) h.set(k, v);
    return h;
  }

  /** One request, following redirects by hand where we can (dropping the token off the hub). */
  private async request(method: 'HEAD' | 'GET', url: string, file: string, signal: AbortSignal | undefined, stopOffHub: boolean): Promise<{ res: Response; url: string }> {
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const extra: Record<string, string> = this.manualRedirects ? { 'accept-encoding': 'identity' } : {};
      let res: Response;
      try {
        res = await this.o.fetch(url, { method, headers: this.headersFor(url, extra), redirect: this.manualRedirects ? 'manual' : 'follow', ...(signal ? { signal } : {}) });
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        throw new Retryable(new LowbitError('NETWORK', `${method} ${url} failed: ${e instanceof Error ? e.message : String(e)}`, { file, cause: e }));
      }
      if (TRANSIENT.has(res.status)) {
        await discard(res);
        throw new Retryable(new LowbitError('NETWORK', `${method} ${url}: HTTP ${res.status} (tried ${this.retries + 1} times)`, { file }));
      }
      const location = res.status >= 300 && res.status < 400 ? res.headers.get('location') : null;
      if (location === null) return { res, url };
      const target = new URL(location, url).href;
      // A redirect off the hub (a CDN's signed URL): the metadata is on this answer.
      if (stopOffHub && !this.origins.has(originOf(target))) return { res, url: target };
      await discard(res);
      url = target;
    }
    throw new LowbitError('NETWORK', `${method} ${url}: more than ${MAX_REDIRECTS} redirects`, { file });
  }

  private withRetries<T>(signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    return withRetries(signal, this.retries, (i) => this.retryDelayMs * 2 ** i, attempt);
  }

  /** The LowbitError for a final non-success answer. */
  private async failure(res: Response, url: string, file: string, where: string): Promise<LowbitError> {
    await discard(res);
    const code = res.headers.get('x-error-code');
    const detail = res.headers.get('x-error-message');
    const suffix = `${code ? ` ${code}` : ''}${detail ? `: ${detail}` : ''}`;
    if (res.status === 404 || res.status === 410) return new LowbitError('NOT_FOUND', `'${file}' not found in ${where} (HTTP ${res.status}${suffix})`, { file });
    if (res.status === 401 || res.status === 403) {
      return new LowbitError('NETWORK', `access to ${url} was denied (HTTP ${res.status}${suffix}); private or gated repositories need a token with access (HF_TOKEN, \`hf auth login\` or the token option)`, { file });
    }
    return new LowbitError('NETWORK', `${url} answered HTTP ${res.status}${suffix}`, { file });
  }

  /**
   * The file's metadata. A missing file gives `{ missing: true, commit }` (commit when the hub
   * said, so the miss can be remembered as huggingface_hub does in .no_exist/).
   */
  async metadata(url: string, file: string, where: string, signal?: AbortSignal): Promise<HubFileMetadata | { missing: true; commit?: string } | { hidden: true }> {
    return this.withRetries(signal, async () => {
      const { res, url: location } = await this.request('HEAD', url, file, signal, true);
      if (res.ok && res.redirected && !this.manualRedirects && res.headers.get('x-repo-commit') === null) {
        await discard(res);
        return { hidden: true };
      }
      const redirected = res.status >= 300 && res.status < 400;
      if (!res.ok && !redirected) {
        if ((res.status === 404 || res.status === 410) && res.headers.get('x-error-code') === 'EntryNotFound') {
          const commit = res.headers.get('x-repo-commit') ?? undefined;
          await discard(res);
          return { missing: true, ...(commit ? { commit } : {}) };
        }
        throw await this.failure(res, url, file, where);
      }
      await discard(res);
      const commit = res.headers.get('x-repo-commit');
      if (commit === null) {
        throw new LowbitError('NETWORK', `${url} answered without an X-Repo-Commit header, so it does not look like a Hugging Face hub endpoint (check HF_ENDPOINT / the endpoint option)`, { file });
      }
      const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
      if (etag === undefined) throw new LowbitError('NETWORK', `${url} answered without an ETag, so the cache cannot name the file`, { file });
      const sizeHeader = res.headers.get('x-linked-size') ?? (redirected ? null : res.headers.get('content-length'));
      const size = sizeHeader !== null && /^\d+$/.test(sizeHeader.trim()) ? Number(sizeHeader.trim()) : undefined;
      return { commit, etag, ...(size !== undefined ? { size } : {}), location };
    });
  }

  /** A JSON document from the hub (its API), with the token. */
  async json(url: string, file: string, where: string, signal?: AbortSignal): Promise<unknown> {
    return this.withRetries(signal, async () => {
      const { res } = await this.request('GET', url, file, signal, false);
      if (!res.ok) throw await this.failure(res, url, file, where);
      try {
        return (await res.json()) as unknown;
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        throw new Retryable(new LowbitError('NETWORK', `${url} did not answer JSON: ${e instanceof Error ? e.message : String(e)}`, { file, cause: e }));
      }
    });
  }

  /**
   * GETs `location` and hands its body to `consume` chunk by chunk. A failed try (network,
   * transient status, a consumer error marked retryable) starts again from byte 0 after
   * `restart()`; the consumer sees every byte of exactly one complete answer when this resolves.
   */
  async download(
    location: string,
    file: string,
    where: string,
    consume: { restart(): Promise<void>; chunk(bytes: Uint8Array): Promise<void> | void },
    signal?: AbortSignal,
  ): Promise<void> {
    let first = true;
    await this.withRetries(signal, async () => {
      if (!first) await consume.restart();
      first = false;
      const { res, url } = await this.request('GET', location, file, signal, false);
      if (res.status !== 200) throw await this.failure(res, url, file, where);
      if (res.body === null) return;
      const reader = res.body.getReader();
      try {
        for (;;) {
          let r: ReadableStreamReadResult<Uint8Array>;
          try {
            r = await reader.read();
          } catch (e) {
            if (signal?.aborted) throw signal.reason;
            throw new Retryable(new LowbitError('NETWORK', `reading ${url} failed: ${e instanceof Error ? e.message : String(e)}`, { file, cause: e }));
          }
          if (r.done) break;
          await consume.chunk(r.value);
        }
      } finally {
        reader.releaseLock();
      }
    });
  }
}
