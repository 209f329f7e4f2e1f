/**
 * Files under a base URL, read with HTTP Range requests.
 *
 * - Size: a HEAD request's Content-Length, or (when HEAD is refused or the length is missing or
 *   encoded) the total in the Content-Range of a `bytes=0-0` request.
 * - Reads: `Range: bytes=a-b`; the answer must be 206 with a matching Content-Range. A 200 is
 *   accepted only when the read asked for the whole file; for a partial read it means the server
 *   ignored Range, and the read fails with NETWORK instead of downloading the whole file.
 * - Transient failures (a network error, a truncated body, HTTP 408/425/429/500/502/503/504) are
 *   retried a bounded number of times with exponential backoff (and Retry-After when sent).
 * - An AbortSignal passed to a read aborts it (and its retries): the read rejects with the
 *   signal's reason, as fetch does.
 * - 404/410 -> NOT_FOUND; 401/403 -> NETWORK that says a token may be needed.
 */
import { LowbitError } from '../../errors.js';
import { BaseSource, checkFileName, checkRange, decodeText, type ByteRange } from './types.js';
import { Retryable, TRANSIENT, withRetries } from './retry.js';

/** Options of `urlSource`. */
export interface UrlSourceOptions {
  /** The fetch to use (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** Headers sent with every request, e.g. `{ Authorization: 'Bearer …' }`. */
  headers?: HeadersInit;
  /** Sent as `Authorization: Bearer <token>` (overrides an Authorization header). */
  token?: string;
  /** Retries of a transient failure, after the first try (default 3). */
  retries?: number;
  /** The first retry's delay; each next one doubles (default 250 ms). */
  retryDelayMs?: number;
  /** The longest wait between tries, Retry-After included (default 10 000 ms). */
  maxRetryDelayMs?: number;
  /** Exact URLs for some file names (e.g. a signed URL whose query a relative name would lose). */
  files?: Record<string, string | URL>;
  /** The weights file the caller pointed at (set by resolveSource for a URL to a .gguf file). */
  weightFile?: string;
  /** Overrides the source's description. */
  description?: string;
}

function retryAfterMs(res: Response): number | undefined {
  const h = res.headers.get('retry-after');
  if (h === null) return undefined;
  if (/^\d+$/.test(h.trim())) return Number(h.trim()) * 1000;
  const t = Date.parse(h);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    /* already gone */
  }
}

/** 'bytes a-b/total' -> numbers; total is undefined for '*'. */
function parseContentRange(h: string | null): { start: number; end: number; total?: number } | { unsatisfiedTotal: number } | undefined {
  if (h === null) return undefined;
  let m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(h);
  if (m) return { start: Number(m[1]), end: Number(m[2]), ...(m[3] === '*' ? {} : { total: Number(m[3]) }) };
  m = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(h);
  if (m) return { unsatisfiedTotal: Number(m[1]) };
  return undefined;
}

class UrlRange implements ByteRange {
  constructor(
    private readonly source: UrlSource,
    private readonly url: string,
    readonly size: number,
    readonly name: string,
  ) {}

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    signal?.throwIfAborted();
    checkRange(offset, length, this.size, this.name);
    if (length === 0) return new Uint8Array(0);
    const { url, name: file } = this;
    const whole = offset === 0 && length === this.size;
    return this.source.withRetries(signal, async () => {
      const res = await this.source.send(url, 'GET', file, signal, `bytes=${offset}-${offset + length - 1}`);
      if (res.status === 206) {
        const cr = parseContentRange(res.headers.get('content-range'));
        if (!cr || !('start' in cr) || cr.start !== offset || cr.end !== offset + length - 1) {
          await discard(res);
          throw new LowbitError(
            'NETWORK',
            `${url} answered bytes=${offset}-${offset + length - 1} with Content-Range ${JSON.stringify(res.headers.get('content-range'))}`,
            { file },
          );
        }
        if (cr.total !== undefined && cr.total !== this.size) {
          await discard(res);
          throw new LowbitError('NETWORK', `${url} changed size while open (${this.size} bytes, now ${cr.total})`, { file });
        }
      } else if (res.status === 200) {
        if (!whole) {
          await discard(res);
          throw new LowbitError(
            'NETWORK',
            `${url} ignored the HTTP Range request for bytes ${offset}-${offset + length - 1} (answered 200 with the whole ${this.size}-byte file instead of 206); lowbit needs a server with Range support rather than downloading whole files for partial reads`,
            { file },
          );
        }
      } else {
        throw await this.source.httpError(res, url, file);
      }
      const body = await this.source.body(res, url, file, signal);
      if (body.length !== length) {
        throw new Retryable(new LowbitError('NETWORK', `${url}: got ${body.length} bytes for a ${length}-byte read at ${offset}`, { file }));
      }
      return body;
    });
  }
}

/** Files under one base URL (a directory on a CDN, a hub revision's resolve/ URL). */
export class UrlSource extends BaseSource {
  readonly description: string;
  readonly base: URL;
  readonly weightFile?: string;
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Headers;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly files: Map<string, string>;

  constructor(base: string | URL, options: UrlSourceOptions = {}) {
    super();
    let u: URL;
    try {
      u = new URL(base);
    } catch (e) {
      throw new LowbitError('INVALID_ARGUMENT', `${JSON.stringify(String(base))} is not a URL`, { cause: e });
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new LowbitError('INVALID_ARGUMENT', `urlSource needs an http(s) URL, got ${u.protocol}`);
    }
    // Relative names resolve under the base, so it must end in '/'.
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    u.hash = '';
    this.base = u;
    this.description = options.description ?? u.href;
    const userFetch = options.fetch;
    if (typeof (userFetch ?? (globalThis.fetch as typeof fetch | undefined)) !== 'function') {
      throw new LowbitError('INVALID_ARGUMENT', 'no fetch in this runtime: pass options.fetch');
    }
    // Called unbound: a browser's fetch throws 'Illegal invocation' when called on another object.
    this.fetchImpl = userFetch ? (input, init) => userFetch(input, init) : (input, init) => globalThis.fetch(input, init);
    this.headers = new Headers(options.headers);
    if (options.token !== undefined) this.headers.set('authorization', `Bearer ${options.token}`);
    const retries = options.retries ?? 3;
    if (!Number.isInteger(retries) || retries < 0) throw new LowbitError('INVALID_ARGUMENT', `retries must be a non-negative integer, got ${retries}`);
    this.retries = retries;
    this.retryDelayMs = Math.max(0, options.retryDelayMs ?? 250);
    this.maxRetryDelayMs = Math.max(0, options.maxRetryDelayMs ?? 10_000);
    this.files = new Map(Object.entries(options.files ?? {}).map(([k, v]) => [checkFileName(k), String(v)]));
    if (options.weightFile !== undefined) this.weightFile = checkFileName(options.weightFile);
  }

  /** The URL a file name resolves to. */
  urlOf(file: string): string {
    checkFileName(file);
    const exact = this.files.get(file);
    if (exact !== undefined) return exact;
    const u = new URL(file.split('/').map(encodeURIComponent).join('/'), this.base);
    u.search = this.base.search; // keep a query on the base (e.g. a signature)
    return u.href;
  }

  /** Runs `attempt`, retrying Retryable failures with jittered backoff (at least Retry-After); aborts with the signal's reason. */
  withRetries<T>(signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    return withRetries(signal, this.retries, (i, e) => Math.min(this.maxRetryDelayMs, Math.max(this.retryDelayMs * 2 ** i * (1 + Math.random() * 0.25), e.retryAfterMs ?? 0)), attempt);
  }

  /** One request; network errors and transient statuses become Retryable. */
  async send(url: string, method: 'GET' | 'HEAD', file: string, signal: AbortSignal | undefined, range?: string): Promise<Response> {
    const headers = new Headers(this.headers);
    if (range !== undefined) headers.set('range', range);
    let res: Response;
    try {
      res = await this.fetchImpl(url, { method, headers, redirect: 'follow', ...(signal ? { signal } : {}) });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new Retryable(new LowbitError('NETWORK', `${method} ${url} failed: ${e instanceof Error ? e.message : String(e)}`, { file, cause: e }));
    }
    if (TRANSIENT.has(res.status)) {
      const after = retryAfterMs(res);
      await discard(res);
      throw new Retryable(new LowbitError('NETWORK', `${method} ${url}: HTTP ${res.status} ${res.statusText} (tried ${this.retries + 1} times)`, { file }), after);
    }
    return res;
  }

  /** The response body; a failure while streaming it is Retryable. */
  async body(res: Response, url: string, file: string, signal?: AbortSignal): Promise<Uint8Array> {
    try {
      return new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new Retryable(new LowbitError('NETWORK', `reading ${url} failed: ${e instanceof Error ? e.message : String(e)}`, { file, cause: e }));
    }
  }

  /** The LowbitError for a final non-success answer (consumes the body). */
  async httpError(res: Response, url: string, file: string): Promise<LowbitError> {
    await discard(res);
    const detail = res.headers.get('x-error-message');
    const suffix = detail ? `: ${detail}` : '';
    if (res.status === 404 || res.status === 410) {
      return new LowbitError('NOT_FOUND', `'${file}' not found in ${this.description} (HTTP ${res.status} for ${url}${suffix})`, { file });
    }
    if (res.status === 401 || res.status === 403) {
      return new LowbitError(
        'NETWORK',
        `access to ${url} was denied (HTTP ${res.status}${suffix}); private or gated repositories need a token with access`,
        { file },
      );
    }
    return new LowbitError('NETWORK', `${url} answered HTTP ${res.status} ${res.statusText}${suffix}`, { file });
  }

  /** The file's size (HEAD, else the Content-Range total of a bytes=0-0 request). */
  private async size(url: string, file: string, signal?: AbortSignal): Promise<number> {
    const head = await this.withRetries(signal, () => this.send(url, 'HEAD', file, signal));
    if (head.ok) {
      const len = head.headers.get('content-length');
      const enc = head.headers.get('content-encoding');
      if (len !== null && /^\d+$/.test(len.trim()) && (enc === null || enc === 'identity')) return Number(len.trim());
    } else if (head.status !== 405 && head.status !== 501) {
      throw await this.httpError(head, url, file);
    }
    return this.withRetries(signal, async () => {
      const res = await this.send(url, 'GET', file, signal, 'bytes=0-0');
      const cr = parseContentRange(res.headers.get('content-range'));
      await discard(res);
      if (res.status === 206 && cr && 'total' in cr && cr.total !== undefined) return cr.total;
      if (res.status === 416 && cr && 'unsatisfiedTotal' in cr) return cr.unsatisfiedTotal;
      if (res.ok || res.status === 416) {
        throw new LowbitError('NETWORK', `cannot tell the size of ${url}: no Content-Length on HEAD and no Content-Range on a range request`, { file });
      }
      throw await this.httpError(res, url, file);
    });
  }

  async open(file: string, signal?: AbortSignal): Promise<ByteRange> {
    const url = this.urlOf(file);
    return new UrlRange(this, url, await this.size(url, file, signal), file);
  }

  async exists(file: string, signal?: AbortSignal): Promise<boolean> {
    const url = this.urlOf(file);
    const head = await this.withRetries(signal, () => this.send(url, 'HEAD', file, signal));
    await discard(head);
    if (head.ok) return true;
    if (head.status === 404 || head.status === 410) return false;
    if (head.status !== 405 && head.status !== 501) throw await this.httpError(head, url, file);
    const res = await this.withRetries(signal, () => this.send(url, 'GET', file, signal, 'bytes=0-0'));
    await discard(res);
    if (res.ok || res.status === 416) return true;
    if (res.status === 404 || res.status === 410) return false;
    throw await this.httpError(res, url, file);
  }

  /** The whole file in one plain GET (no Range, no HEAD). */
  override async readBytes(file: string, signal?: AbortSignal): Promise<Uint8Array> {
    const url = this.urlOf(file);
    return this.withRetries(signal, async () => {
      const res = await this.send(url, 'GET', file, signal);
      if (res.status !== 200) throw await this.httpError(res, url, file);
      const body = await this.body(res, url, file, signal);
      const len = res.headers.get('content-length');
      const enc = res.headers.get('content-encoding');
      if (len !== null && (enc === null || enc === 'identity') && Number(len) !== body.length) {
        throw new Retryable(new LowbitError('NETWORK', `${url}: got ${body.length} of ${len} bytes`, { file }));
      }
      return body;
    });
  }

  override async readText(file: string, signal?: AbortSignal): Promise<string> {
    return decodeText(await this.readBytes(file, signal));
  }
}

/** Files under a base URL as a model source. A base without a trailing '/' gets one. */
export function urlSource(base: string | URL, options?: UrlSourceOptions): UrlSource {
  return new UrlSource(base, options);
}
