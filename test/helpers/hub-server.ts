/**
 * A small HTTP server on 127.0.0.1 laid out like the Hugging Face hub, for source tests:
 *
 *   GET|HEAD /<org>/<name>/resolve/<revision>/<file…>
 *
 * with single-range Range support (`bytes=a-b`, `bytes=a-`, `bytes=-n`; 206 + Content-Range;
 * 416 + `Content-Range: bytes *\/size` when unsatisfiable), 404s with the hub's X-Error-Code
 * (RepoNotFound, RevisionNotFound, EntryNotFound), and switches that tests flip at run time:
 *
 * - token: require `Authorization: Bearer <token>` (else 401);
 * - ignoreRange: answer 200 with the whole file, as a server without Range support does;
 * - failNext: answer the next N requests with 503;
 * - delayMs: wait before answering (to abort requests in flight);
 * - redirect: answer /resolve/ with a 302 to /cdn/… (the hub redirects large files to its CDN);
 *   cdnOrigin sends it to another server's /cdn/… instead (a CDN on another host).
 *
 * Answers carry the hub's metadata headers as huggingface.co sends them, so huggingface_hub and
 * lowbit's cache can use the server: X-Repo-Commit (a made-up 40-hex commit per revision; a
 * request may name the revision by it), ETag = the git blob sha1 for ordinary files and, for
 * git-lfs-like files (.safetensors, .gguf, .bin), ETag / X-Linked-Etag = the sha256 and
 * X-Linked-Size; a 404 for a missing file says EntryNotFound with the commit. CORS is open
 * (a browser page on another port can read it, Authorization and Range included). The /cdn/
 * paths answer as a CDN does: bytes and an ETag of their own, none of the hub's headers.
 * GET /api/models/<org>/<name>/revision/<rev> answers the hub's model info with file metadata.
 *
 * Every request is logged with the body bytes sent, so tests can check what was transferred.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface HubServerOptions {
  /** repo id ('org/name') -> revision -> directory served for it. */
  repos: Record<string, Record<string, string>>;
  token?: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  range?: string;
  authorization?: string;
  status: number;
  /** Body bytes written. */
  bytes: number;
}

export interface HubServer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly log: RequestRecord[];
  token: string | undefined;
  ignoreRange: boolean;
  failNext: number;
  delayMs: number;
  redirect: boolean;
  /** e.g. 'http://127.0.0.1:4321': redirects go to <cdnOrigin>/<org>/<name>/cdn/… (with redirect on). */
  cdnOrigin: string | undefined;
  /** The commit hash the server gives a repo's revision. */
  commitOf(repo: string, revision: string): string;
  /** Body bytes sent since the last reset(). */
  bytesSent(): number;
  /** Clears the log. */
  reset(): void;
  close(): Promise<void>;
}

type Range = { start: number; end: number } | 'unsatisfiable' | undefined;

/** A single byte range (inclusive end) for a file of `size` bytes; undefined means "whole file". */
function parseRange(header: string | undefined, size: number): Range {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // multiple ranges or junk: ignoring Range is allowed
  const [, a, b] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || (b !== '' && Number(b) < start)) return 'unsatisfiable';
  return { start, end };
}

export async function startHubServer(options: HubServerOptions): Promise<HubServer> {
  const log: RequestRecord[] = [];
  const state = {
    token: options.token,
    ignoreRange: false,
    failNext: 0,
    delayMs: 0,
    redirect: false,
    cdnOrigin: undefined as string | undefined,
  };
  const commitOf = (repo: string, revision: string) => createHash('sha1').update(`${repo}\0${revision}`).digest('hex');
  /** Per file: its git blob sha1 and sha256, by path + size + mtime. */
  const digests = new Map<string, { git: string; sha256: string }>();
  async function digestsOf(path: string, size: number, mtimeMs: number) {
    const k = `${path}:${size}:${mtimeMs}`;
    let d = digests.get(k);
    if (!d) {
      const bytes = await readFile(path);
      d = {
        git: createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex'),
        sha256: createHash('sha256').update(bytes).digest('hex'),
      };
      digests.set(k, d);
    }
    return d;
  }
  const isLfs = (name: string) => /\.(safetensors|gguf|bin)$/i.test(name);

  function record(req: IncomingMessage, res: ServerResponse, path: string): { add(n: number): void } {
    const entry: RequestRecord = {
      method: req.method ?? '',
      path,
      status: 0,
      bytes: 0,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    };
    log.push(entry);
    // Every answer goes through writeHead; record its status before the client can see it.
    const writeHead = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse;
    res.writeHead = ((status: number, ...rest: unknown[]) => {
      entry.status = status;
      return writeHead(status, ...rest);
    }) as typeof res.writeHead;
    return { add: (n) => (entry.bytes += n) };
  }

  function fail(res: ServerResponse, status: number, code?: string, message?: string): void {
    if (code) res.setHeader('X-Error-Code', code);
    if (message) res.setHeader('X-Error-Message', message);
    res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': '0' });
    res.end();
  }

  /** Every file under `dir`, relative, '/'-separated. */
  async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
    const out: string[] = [];
    for (const d of await readdir(dir, { withFileTypes: true })) {
      if (d.isDirectory()) out.push(...(await filesUnder(join(dir, d.name), `${prefix}${d.name}/`)));
      else if (d.isFile()) out.push(prefix + d.name);
    }
    return out;
  }

  /**
   * GET /api/models/<org>/<name>/revision/<revision>[?blobs=true]: the hub's model info as
   * huggingface_hub's model_info(files_metadata=True) reads it: { id, sha, siblings: [{
   * rfilename, size, blobId, lfs?: { size, sha256, pointerSize } }] }.
   */
  async function api(res: ServerResponse, parts: string[]): Promise<void> {
    const [models, org, name, what, revEnc] = parts;
    if (models !== 'models' || !org || !name || what !== 'revision' || revEnc === undefined) return fail(res, 404, 'RepoNotFound', 'Not an API URL');
    const repoId = `${decodeURIComponent(org)}/${decodeURIComponent(name)}`;
    const repo = options.repos[repoId];
    if (!repo) return fail(res, 404, 'RepoNotFound', 'Repository not found');
    const asked = decodeURIComponent(revEnc);
    const revision = Object.keys(repo).find((r) => r === asked || commitOf(repoId, r) === asked);
    if (revision === undefined) return fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${asked}`);
    const dir = repo[revision]!;
    const siblings = [];
    for (const f of await filesUnder(dir)) {
      const st = await stat(join(dir, f));
      const d = await digestsOf(join(dir, f), st.size, st.mtimeMs);
      siblings.push({ rfilename: f, size: st.size, blobId: d.git, ...(isLfs(f) ? { lfs: { size: st.size, sha256: d.sha256, pointerSize: 134 } } : {}) });
    }
    const body = JSON.stringify({ id: repoId, sha: commitOf(repoId, revision), siblings });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) });
    res.end(body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const rec = record(req, res, url.pathname);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'X-Repo-Commit, X-Linked-Etag, X-Linked-Size, ETag, Content-Length, Content-Range, Accept-Ranges, X-Error-Code, X-Error-Message, Location');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD', 'Access-Control-Allow-Headers': 'Authorization, Range', 'Access-Control-Max-Age': '600' });
      return void res.end();
    }
    if (state.delayMs > 0) await new Promise((r) => setTimeout(r, state.delayMs));
    if (res.destroyed || req.destroyed) return;
    if (state.failNext > 0) {
      state.failNext--;
      return fail(res, 503, undefined, 'simulated outage');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, 405);
    if (state.token !== undefined && req.headers.authorization !== `Bearer ${state.token}`) {
      return fail(res, 401, 'GatedRepo', 'Invalid credentials in Authorization header');
    }
    const parts = url.pathname.split('/').slice(1);
    if (parts[0] === 'api') return api(res, parts.slice(1));
    const [org, name, kind, revEnc, ...fileParts] = parts;
    if (!org || !name || (kind !== 'resolve' && kind !== 'cdn') || revEnc === undefined || fileParts.length === 0) {
      return fail(res, 404, 'RepoNotFound', 'Not a resolve URL');
    }
    const repo = options.repos[`${decodeURIComponent(org)}/${decodeURIComponent(name)}`];
    if (!repo) return fail(res, 404, 'RepoNotFound', 'Repository not found');
    const repoId = `${decodeURIComponent(org)}/${decodeURIComponent(name)}`;
    const asked = decodeURIComponent(revEnc);
    const revision = Object.keys(repo).find((r) => r === asked || commitOf(repoId, r) === asked);
    const dir = revision === undefined ? undefined : repo[revision];
    if (revision === undefined || dir === undefined) return fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${asked}`);
    const commit = commitOf(repoId, revision);
    // A CDN knows nothing of repos and commits: the hub's headers come from /resolve/ only.
    if (kind === 'resolve') res.setHeader('X-Repo-Commit', commit);
    const segments = fileParts.map(decodeURIComponent);
    if (segments.some((s) => s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\\'))) return fail(res, 400);
    const path = join(dir, ...segments);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) return fail(res, 404, 'EntryNotFound', `${segments.join('/')} does not exist on "${revision}"`);
    const d = await digestsOf(path, st.size, st.mtimeMs);
    const lfs = isLfs(segments[segments.length - 1]!);
    if (state.redirect && kind === 'resolve') {
      const cdnPath = url.pathname.replace('/resolve/', '/cdn/');
      res.writeHead(302, {
        Location: state.cdnOrigin === undefined ? cdnPath : `${state.cdnOrigin}${cdnPath}`,
        'Content-Length': '0',
        'X-Linked-Etag': `"${lfs ? d.sha256 : d.git}"`,
        'X-Linked-Size': String(st.size),
      });
      return void res.end();
    }

    const size = st.size;
    const range = state.ignoreRange ? undefined : parseRange(req.headers.range, size);
    res.setHeader('Accept-Ranges', state.ignoreRange ? 'none' : 'bytes');
    res.setHeader('ETag', kind === 'cdn' ? `"cdn-${d.sha256.slice(0, 16)}"` : `"${lfs ? d.sha256 : d.git}"`);
    if (lfs && kind === 'resolve') {
      res.setHeader('X-Linked-Etag', `"${d.sha256}"`);
      res.setHeader('X-Linked-Size', String(size));
    }
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Length': '0' });
      return void res.end();
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const length = end - start + 1;
    if (range) res.writeHead(206, { 'Content-Length': String(length), 'Content-Range': `bytes ${start}-${end}/${size}` });
    else res.writeHead(200, { 'Content-Length': String(size) });
    if (req.method === 'HEAD' || length <= 0) return void res.end();
    const stream = createReadStream(path, { start, end });
    stream.on('data', (chunk) => rec.add(chunk.length));
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy());
    stream.pipe(res);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) fail(res, 500);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    log,
    get token() {
      return state.token;
    },
    set token(v) {
      state.token = v;
    },
    get ignoreRange() {
      return state.ignoreRange;
    },
    set ignoreRange(v) {
      state.ignoreRange = v;
    },
    get failNext() {
      return state.failNext;
    },
    set failNext(v) {
      state.failNext = v;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(v) {
      state.delayMs = v;
    },
    get redirect() {
      return state.redirect;
    },
    set redirect(v) {
      state.redirect = v;
    },
    get cdnOrigin() {
      return state.cdnOrigin;
    },
    set cdnOrigin(v) {
      state.cdnOrigin = v;
    },
    commitOf,
    bytesSent: () => log.reduce((n, r) => n + r.bytes, 0),
    reset: () => void log.splice(0),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}
