/**
 * Model sources: a local folder, a URL and a hub id (against a hub-like server on 127.0.0.1 with
 * Range support, test/helpers/hub-server.ts), Blobs and Files; shard resolution; progress.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  blobSource,
  BlobSource,
  DEFAULT_HUB_ENDPOINT,
  HubSource,
  hubSource,
  listWeightFiles,
  LocalSource,
  localSource,
  LowbitError,
  parseShardIndex,
  ProgressTracker,
  resolveSource,
  trackReads,
  UrlSource,
  urlSource,
  type ModelSource,
  type ProgressEvent,
} from '../dist/index.js';
import { startHubServer, type HubServer } from './helpers/hub-server.js';

let tmp: string;
let server: HubServer;
const dirs = { main: '', v1: '', sharded: '', badIndex: '', missingShard: '', gguf: '', multiGguf: '', sub: '' };
const MODEL = randomBytes(256 * 1024);
const MODEL_V1 = randomBytes(4096);
const SHARD1 = randomBytes(3000);
const SHARD2 = randomBytes(5000);
const GGUF = Buffer.concat([Buffer.from('GGUF'), randomBytes(2000)]);
const CONFIG = { model_type: 'llama', hidden_size: 64 };
const INDEX = {
  metadata: { total_size: 8000 },
  weight_map: {
    'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
    'model.layers.0.mlp.up_proj.weight': 'model-00001-of-00002.safetensors',
    'lm_head.weight': 'model-00002-of-00002.safetensors',
  },
};

/** Expects a LowbitError with this code (and returns it for more checks). */
async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<LowbitError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ${code} rejection`).toBeInstanceOf(LowbitError);
  const e = err as LowbitError;
  expect(e.code, e.message).toBe(code);
  if (message) expect(e.message).toMatch(message);
  return e;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lowbit-sources-'));
  for (const k of Object.keys(dirs) as (keyof typeof dirs)[]) {
    dirs[k] = join(tmp, k);
    await mkdir(dirs[k]);
  }
  await writeFile(join(dirs.main, 'config.json'), JSON.stringify(CONFIG));
  await writeFile(join(dirs.main, 'tokenizer.json'), '{"model":{"type":"BPE"},"note":"h\u00e9llo"}');
  await writeFile(join(dirs.main, 'model.safetensors'), MODEL);
  await writeFile(join(dirs.main, 'empty.bin'), new Uint8Array(0));
  await writeFile(join(dirs.main, 'bad.json'), '{ not json');
  await mkdir(join(dirs.main, 'nested'));
  await writeFile(join(dirs.main, 'nested', 'notes.txt'), 'inside a folder');
  await writeFile(join(dirs.v1, 'config.json'), JSON.stringify({ ...CONFIG, hidden_size: 32 }));
  await writeFile(join(dirs.v1, 'model.safetensors'), MODEL_V1);
  for (const d of [dirs.sharded, dirs.missingShard]) {
    await writeFile(join(d, 'config.json'), JSON.stringify(CONFIG));
    await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify(INDEX));
    await writeFile(join(d, 'model-00001-of-00002.safetensors'), SHARD1);
  }
  await writeFile(join(dirs.sharded, 'model-00002-of-00002.safetensors'), SHARD2);
  await writeFile(
    join(dirs.badIndex, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': '../secret.safetensors' } }),
  );
  await writeFile(join(dirs.gguf, 'tiny-Q4_0.gguf'), GGUF);
  await writeFile(join(dirs.gguf, 'README.md'), '# tiny');
  await writeFile(join(dirs.multiGguf, 'tiny-Q4_0.gguf'), GGUF);
  await writeFile(join(dirs.multiGguf, 'tiny-Q8_0.gguf'), GGUF);
  // A checkpoint in a subfolder, its index naming shards relative to itself.
  await mkdir(join(dirs.sub, 'unet'));
  await writeFile(join(dirs.sub, 'unet', 'diffusion.safetensors.index.json'), JSON.stringify({ weight_map: { w: 'part-1.safetensors' } }));
  await writeFile(join(dirs.sub, 'unet', 'part-1.safetensors'), SHARD1);

  server = await startHubServer({
    repos: {
      'org/tiny': { main: dirs.main, v1: dirs.v1, 'refs/pr/1': dirs.v1 },
      'org/sharded': { main: dirs.sharded },
      'org/bad-index': { main: dirs.badIndex },
      'org/missing-shard': { main: dirs.missingShard },
      'org/tiny-GGUF': { main: dirs.gguf },
    },
  });
});

afterAll(async () => {
  await server?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

afterEach(() => {
  server.token = undefined;
  server.ignoreRange = false;
  server.failNext = 0;
  server.delayMs = 0;
  server.redirect = false;
  server.reset();
});

const resolveUrl = (repo: string, rev = 'main') => `${server.url}/${repo}/resolve/${encodeURIComponent(rev)}/`;

/** Checks exact bytes at a few offsets, the file's size and the edges of a source's model.safetensors. */
async function checkRandomAccess(source: ModelSource, file: string, expected: Uint8Array): Promise<void> {
  const r = await source.open(file);
  try {
    expect(r.size).toBe(expected.length);
    expect(r.name).toBe(file);
    const n = expected.length;
    for (const [off, len] of [[0, 8], [1, 1], [Math.floor(n / 3), Math.floor(n / 2)], [n - 10, 10], [n, 0], [Math.floor(n / 2), 0]] as const) {
      const got = await r.read(off, len);
      expect(got).toBeInstanceOf(Uint8Array);
      expect(got.length).toBe(len);
      expect(Buffer.from(got).equals(expected.subarray(off, off + len))).toBe(true);
    }
    await rejectsWith(r.read(expected.length - 4, 5), 'INVALID_ARGUMENT', /past the end/);
    await rejectsWith(r.read(expected.length + 1, 0), 'INVALID_ARGUMENT', /past the end/);
    await rejectsWith(r.read(-1, 4), 'INVALID_ARGUMENT');
    await rejectsWith(r.read(0.5, 4), 'INVALID_ARGUMENT');
    const aborted = new AbortController();
    aborted.abort();
    await expect(r.read(0, 4, aborted.signal)).rejects.toMatchObject({ name: 'AbortError' });
  } finally {
    await r.close?.();
  }
}

/** What every source must do on the main fixture folder. */
async function checkCommon(source: ModelSource): Promise<void> {
  expect(await source.readJson('config.json')).toEqual(CONFIG);
  expect(await source.readText('tokenizer.json')).toContain('h\u00e9llo');
  expect(await source.exists('config.json')).toBe(true);
  expect(await source.exists('missing.json')).toBe(false);
  const nf = await rejectsWith(source.open('missing.safetensors'), 'NOT_FOUND', /missing\.safetensors/);
  expect(nf.file).toBe('missing.safetensors');
  await rejectsWith(source.readText('missing.json'), 'NOT_FOUND');
  const bad = await rejectsWith(source.readJson('bad.json'), 'MALFORMED_FILE', /bad\.json/);
  expect(bad.file).toBe('bad.json');
  for (const name of ['../config.json', '/etc/passwd', 'a/../config.json', './config.json', 'a\\b', 'C:/x', '']) {
    await rejectsWith(source.open(name), 'INVALID_ARGUMENT');
    await rejectsWith(source.exists(name), 'INVALID_ARGUMENT');
  }
  await checkRandomAccess(source, 'model.safetensors', MODEL);
  const empty = await source.open('empty.bin');
  expect(empty.size).toBe(0);
  expect((await empty.read(0, 0)).length).toBe(0);
  await empty.close?.();
  expect(await source.readText('nested/notes.txt')).toBe('inside a folder');
  expect(await listWeightFiles(source)).toEqual({ format: 'safetensors', files: ['model.safetensors'] });
}

describe('local folder', () => {
  it('reads JSON, text and exact byte ranges; rejects reads past the end, bad names and missing files', async () => {
    const source = localSource(dirs.main);
    expect(source).toBeInstanceOf(LocalSource);
    expect(source.description).toBe(`local:${dirs.main}`);
    await checkCommon(source);
    expect(await source.list()).toEqual(['bad.json', 'config.json', 'empty.bin', 'model.safetensors', 'tokenizer.json']);
    expect(await source.exists('nested')).toBe(false);
    await rejectsWith(source.open('nested'), 'INVALID_ARGUMENT', /not a regular file|directory/);
  });

  it('fails reads after close', async () => {
    const r = await localSource(dirs.main).open('model.safetensors');
    await r.close!();
    await r.close!();
    await rejectsWith(r.read(0, 4), 'INVALID_ARGUMENT', /closed/);
  });

  it('lists links to files, as in the Hugging Face cache', async () => {
    const snap = join(tmp, 'snapshot');
    await mkdir(snap, { recursive: true });
    await symlink(join(dirs.gguf, 'tiny-Q4_0.gguf'), join(snap, 'linked.gguf'));
    const source = localSource(snap);
    expect(await source.list()).toEqual(['linked.gguf']);
    expect(await listWeightFiles(source)).toEqual({ format: 'gguf', files: ['linked.gguf'] });
    const r = await source.open('linked.gguf');
    expect(Buffer.from(await r.read(0, 4)).toString()).toBe('GGUF');
    await r.close?.();
  });

  it('resolveSource: a folder, a path to a weights file, a file: URL; clear errors for missing paths', async () => {
    const s = await resolveSource(dirs.main);
    expect(s).toBeInstanceOf(LocalSource);
    const f = await resolveSource(join(dirs.gguf, 'tiny-Q4_0.gguf'));
    expect(f).toBeInstanceOf(LocalSource);
    expect(f.weightFile).toBe('tiny-Q4_0.gguf');
    expect(await listWeightFiles(f)).toEqual({ format: 'gguf', files: ['tiny-Q4_0.gguf'] });
    expect(await (await resolveSource(pathToFileURL(dirs.main))).readJson('config.json')).toEqual(CONFIG);
    expect(await (await resolveSource(pathToFileURL(dirs.main).href)).readJson('config.json')).toEqual(CONFIG);
    await rejectsWith(resolveSource(join(tmp, 'no-such-dir')), 'NOT_FOUND', /no such local directory.*'org\/name'/s);
    await rejectsWith(resolveSource('./models/llama'), 'NOT_FOUND', /org\/name/);
    await rejectsWith(resolveSource('gpt2'), 'NOT_FOUND', /hubSource\('gpt2'\)/);
    await rejectsWith(resolveSource(join(dirs.main, 'config.json')), 'INVALID_ARGUMENT', /folder/);
    await rejectsWith(resolveSource(''), 'INVALID_ARGUMENT');
    await rejectsWith(resolveSource(new URL('ftp://example.com/x')), 'INVALID_ARGUMENT');
    await rejectsWith(resolveSource(42 as never), 'INVALID_ARGUMENT');
  });

  it('a local folder wins over a hub id of the same spelling', async () => {
    const cwd = process.cwd();
    await mkdir(join(tmp, 'cwd', 'org'), { recursive: true });
    await mkdir(join(tmp, 'cwd', 'org', 'tiny'));
    process.chdir(join(tmp, 'cwd'));
    try {
      expect(await resolveSource('org/tiny')).toBeInstanceOf(LocalSource);
      expect(await resolveSource('org/other', { endpoint: server.url, cache: false })).toBeInstanceOf(HubSource);
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('URL source (HTTP Range)', () => {
  it('reads JSON, text and exact byte ranges from a base URL', async () => {
    const source = urlSource(resolveUrl('org/tiny').replace(/\/$/, ''), { retryDelayMs: 1 });
    expect(source).toBeInstanceOf(UrlSource);
    await checkCommon(source);
  });

  it('reads a header without downloading the file: one HEAD and one 8-byte range', async () => {
    const r = await urlSource(resolveUrl('org/tiny')).open('model.safetensors');
    const head = await r.read(0, 8);
    expect(Buffer.from(head).equals(MODEL.subarray(0, 8))).toBe(true);
    expect(server.log.map((e) => [e.method, e.range, e.status])).toEqual([
      ['HEAD', undefined, 200],
      ['GET', 'bytes=0-7', 206],
    ]);
    expect(server.bytesSent()).toBe(8);
    await r.read(100_000, 1000);
    expect(server.bytesSent()).toBe(1008);
  });

  it('fails clearly when the server ignores Range, instead of downloading everything', async () => {
    const r = await urlSource(resolveUrl('org/tiny')).open('model.safetensors');
    server.ignoreRange = true;
    await rejectsWith(r.read(1000, 16), 'NETWORK', /ignored the HTTP Range request.*206/);
    // A read of the whole file is what a 200 answers, so that one is accepted.
    const all = await r.read(0, MODEL.length);
    expect(Buffer.from(all).equals(MODEL)).toBe(true);
    // Not retried: one request for the failed read, one for the whole file.
    expect(server.log.filter((e) => e.method === 'GET')).toHaveLength(2);
  });

  it('retries transient 503s with backoff, and gives up after the bounded number of retries', async () => {
    const source = urlSource(resolveUrl('org/tiny'), { retries: 3, retryDelayMs: 5 });
    const r = await source.open('model.safetensors');
    server.failNext = 2;
    const got = await r.read(10, 100);
    expect(Buffer.from(got).equals(MODEL.subarray(10, 110))).toBe(true);
    expect(server.log.filter((e) => e.method === 'GET').map((e) => e.status)).toEqual([503, 503, 206]);

    server.reset();
    server.failNext = 100;
    await rejectsWith(r.read(0, 4), 'NETWORK', /503.*tried 4 times/);
    expect(server.log).toHaveLength(4);
    server.failNext = 0;

    server.failNext = 1;
    expect(await source.readJson('config.json')).toEqual(CONFIG);
    server.failNext = 1;
    expect(await source.exists('config.json')).toBe(true);
  });

  it('404 is NOT_FOUND; a missing repo or revision too', async () => {
    await rejectsWith(urlSource(resolveUrl('org/tiny')).open('nope.safetensors'), 'NOT_FOUND', /does not exist/);
    await rejectsWith(urlSource(resolveUrl('org/unknown')).readText('config.json'), 'NOT_FOUND', /Repository not found/);
    expect(await urlSource(resolveUrl('org/tiny', 'nope')).exists('config.json')).toBe(false);
  });

  it('an AbortSignal aborts a read in flight (and its retries)', async () => {
    const r = await urlSource(resolveUrl('org/tiny')).open('model.safetensors');
    server.delayMs = 2000;
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 30);
    await expect(r.read(0, 1024, ac.signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - t0).toBeLessThan(1500);

    // Aborting during a retry's backoff.
    server.delayMs = 0;
    server.failNext = 100;
    const slow = await urlSource(resolveUrl('org/tiny'), { retries: 5, retryDelayMs: 5000 });
    const ac2 = new AbortController();
    const reason = new Error('user cancelled');
    setTimeout(() => ac2.abort(reason), 50);
    const t1 = Date.now();
    await expect(slow.readText('config.json', ac2.signal)).rejects.toBe(reason);
    expect(Date.now() - t1).toBeLessThan(2000);
  });

  it('sends headers and a token; 401 says a token is needed', async () => {
    server.token = 'hf_secret';
    await rejectsWith(urlSource(resolveUrl('org/tiny')).readText('config.json'), 'NETWORK', /401.*token/);
    expect(await urlSource(resolveUrl('org/tiny'), { token: 'hf_secret' }).readJson('config.json')).toEqual(CONFIG);
    expect(await urlSource(resolveUrl('org/tiny'), { headers: { Authorization: 'Bearer hf_secret' } }).exists('config.json')).toBe(true);
    expect(server.log.at(-1)!.authorization).toBe('Bearer hf_secret');
  });

  it('follows redirects (the hub sends large files to its CDN) with ranges intact', async () => {
    server.redirect = true;
    const r = await urlSource(resolveUrl('org/tiny')).open('model.safetensors');
    const got = await r.read(5000, 300);
    expect(Buffer.from(got).equals(MODEL.subarray(5000, 5300))).toBe(true);
    expect(server.log.some((e) => e.status === 302)).toBe(true);
    expect(server.log.some((e) => e.path.includes('/cdn/') && e.range === 'bytes=5000-5299' && e.status === 206)).toBe(true);
  });

  it('sizes files by a bytes=0-0 request when HEAD is refused', async () => {
    const fetchNoHead: typeof fetch = (input, init) =>
      init?.method === 'HEAD' ? Promise.resolve(new Response(null, { status: 405 })) : fetch(input, init);
    const source = urlSource(resolveUrl('org/tiny'), { fetch: fetchNoHead });
    const r = await source.open('model.safetensors');
    expect(r.size).toBe(MODEL.length);
    expect((await source.open('empty.bin')).size).toBe(0);
    expect(await source.exists('config.json')).toBe(true);
    expect(await source.exists('missing.json')).toBe(false);
    expect(server.log.filter((e) => e.range === 'bytes=0-0').length).toBeGreaterThan(0);
  });

  it('resolveSource: a URL to a weights file points at it, and siblings still resolve', async () => {
    const s = await resolveSource(`${resolveUrl('org/tiny-GGUF')}tiny-Q4_0.gguf`);
    expect(s).toBeInstanceOf(UrlSource);
    expect(s.weightFile).toBe('tiny-Q4_0.gguf');
    expect(await listWeightFiles(s)).toEqual({ format: 'gguf', files: ['tiny-Q4_0.gguf'] });
    expect(await s.readText('README.md')).toBe('# tiny');
    const base = await resolveSource(new URL(resolveUrl('org/tiny')));
    expect(await base.readJson('config.json')).toEqual(CONFIG);
    // A URL source cannot list, so a .gguf there must be named.
    await rejectsWith(listWeightFiles(await resolveSource(resolveUrl('org/tiny-GGUF'))), 'NOT_FOUND', /name a \.gguf file/);
    expect(await listWeightFiles(await resolveSource(resolveUrl('org/tiny-GGUF')), { file: 'tiny-Q4_0.gguf' })).toEqual({ format: 'gguf', files: ['tiny-Q4_0.gguf'] });
  });
});

describe('Hugging Face hub id', () => {
  it('resolves org/name at a revision under a configurable endpoint', async () => {
    const main = hubSource('org/tiny', { endpoint: `${server.url}/` });
    expect(main).toBeInstanceOf(HubSource);
    expect(main.endpoint).toBe(server.url);
    expect(main.revision).toBe('main');
    expect(main.description).toBe(`hub:org/tiny@main (${server.url})`);
    expect(main.urlOf('sub dir/a b.json')).toBe(`${server.url}/org/tiny/resolve/main/sub%20dir/a%20b.json`);
    await checkCommon(main);

    const v1 = hubSource('org/tiny', { endpoint: server.url, revision: 'v1' });
    expect(await v1.readJson('config.json')).toEqual({ ...CONFIG, hidden_size: 32 });
    await checkRandomAccess(v1, 'model.safetensors', MODEL_V1);
    const pr = hubSource('org/tiny', { endpoint: server.url, revision: 'refs/pr/1' });
    expect(pr.urlOf('config.json')).toBe(`${server.url}/org/tiny/resolve/refs%2Fpr%2F1/config.json`);
    expect(await pr.readJson('config.json')).toEqual({ ...CONFIG, hidden_size: 32 });

    await rejectsWith(hubSource('org/tiny', { endpoint: server.url, revision: 'nope' }).readText('config.json'), 'NOT_FOUND', /Invalid rev id: nope/);
    await rejectsWith(hubSource('org/unknown', { endpoint: server.url }).open('config.json'), 'NOT_FOUND', /Repository not found/);
  });

  it('takes the endpoint from HF_ENDPOINT, else huggingface.co', async () => {
    const saved = process.env.HF_ENDPOINT;
    try {
      process.env.HF_ENDPOINT = server.url;
      const s = hubSource('org/tiny');
      expect(s.endpoint).toBe(server.url);
      expect(await s.readJson('config.json')).toEqual(CONFIG);
      const r = await resolveSource('org/tiny', { revision: 'v1', cache: false });
      expect(r).toBeInstanceOf(HubSource);
      expect(await r.readJson('config.json')).toEqual({ ...CONFIG, hidden_size: 32 });
      // The option beats the environment.
      expect(hubSource('org/tiny', { endpoint: 'https://mirror.example' }).endpoint).toBe('https://mirror.example');
      delete process.env.HF_ENDPOINT;
      expect(hubSource('org/tiny').endpoint).toBe(DEFAULT_HUB_ENDPOINT);
      expect(hubSource('org/tiny').urlOf('model.safetensors')).toBe('https://huggingface.co/org/tiny/resolve/main/model.safetensors');
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });

  it('sends the token as a Bearer header, on every request', async () => {
    server.token = 'hf_abc';
    await rejectsWith(hubSource('org/tiny', { endpoint: server.url }).open('model.safetensors'), 'NETWORK', /401/);
    server.reset();
    const s = await resolveSource('org/tiny', { endpoint: server.url, token: 'hf_abc', cache: false });
    const r = await s.open('model.safetensors');
    await r.read(0, 8);
    expect(await s.readJson('config.json')).toEqual(CONFIG);
    expect(server.log.length).toBe(3);
    expect(server.log.every((e) => e.authorization === 'Bearer hf_abc' && e.status < 300)).toBe(true);
  });

  it('validates ids', () => {
    for (const bad of ['a/b/c', '../x', 'org/', '/name', 'org/na--me', 'org/na..me', 'org/x.git', 'org name/x', '']) {
      expect(() => hubSource(bad), bad).toThrow(LowbitError);
    }
    expect(hubSource('gpt2').urlOf('config.json')).toBe('https://huggingface.co/gpt2/resolve/main/config.json');
    expect(hubSource('Org_1/model-v0.1').id).toBe('Org_1/model-v0.1');
  });
});

describe('Blob and File sources', () => {
  it('a Map<string, Blob> behaves like a folder', async () => {
    const map = new Map<string, Blob>([
      ['config.json', new Blob([JSON.stringify(CONFIG)])],
      ['tokenizer.json', new Blob(['{"model":{"type":"BPE"},"note":"h\u00e9llo"}'])],
      ['model.safetensors', new Blob([MODEL])],
      ['empty.bin', new Blob([])],
      ['bad.json', new Blob(['{ not json'])],
      ['nested/notes.txt', new Blob(['inside a folder'])],
    ]);
    const source = await resolveSource(map);
    expect(source).toBeInstanceOf(BlobSource);
    await checkCommon(source);
    expect(await source.list!()).toEqual(['bad.json', 'config.json', 'empty.bin', 'model.safetensors', 'tokenizer.json']);
    expect(() => blobSource(new Map([['../x', new Blob([])]]))).toThrow(/not a file name/);
  });

  it('one File or Blob is a one-file source: named by File.name, an option, or its magic bytes', async () => {
    const file = new File([GGUF], 'tiny-Q4_0.gguf');
    const s = await resolveSource(file);
    expect(s.weightFile).toBe('tiny-Q4_0.gguf');
    expect(await listWeightFiles(s)).toEqual({ format: 'gguf', files: ['tiny-Q4_0.gguf'] });
    await checkRandomAccess(s, 'tiny-Q4_0.gguf', GGUF);

    const unnamedGguf = blobSource(new Blob([GGUF]));
    expect(await unnamedGguf.list()).toEqual(['model.gguf']);
    expect(await listWeightFiles(unnamedGguf)).toEqual({ format: 'gguf', files: ['model.gguf'] });
    const unnamedSt = await resolveSource(new Blob([MODEL]));
    expect(await listWeightFiles(unnamedSt)).toEqual({ format: 'safetensors', files: ['model.safetensors'] });
    await checkRandomAccess(unnamedSt, 'model.safetensors', MODEL);
    const named = await resolveSource(new Blob([MODEL]), { name: 'weights.safetensors' });
    expect(await listWeightFiles(named)).toEqual({ format: 'safetensors', files: ['weights.safetensors'] });
  });

  it('an array of Files from a directory picker drops the picked folder from their paths', async () => {
    const picked = (path: string, data: BlobPart) => {
      const f = new File([data], path.split('/').at(-1)!);
      Object.defineProperty(f, 'webkitRelativePath', { value: path });
      return f;
    };
    const s = await resolveSource([
      picked('my-model/config.json', JSON.stringify(CONFIG)),
      picked('my-model/model.safetensors.index.json', JSON.stringify(INDEX)),
      picked('my-model/model-00001-of-00002.safetensors', SHARD1),
      picked('my-model/model-00002-of-00002.safetensors', SHARD2),
    ]);
    expect(await s.readJson('config.json')).toEqual(CONFIG);
    const w = await listWeightFiles(s);
    expect(w.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    // Plain Files (drag and drop) keep their names.
    const plain = await resolveSource([new File([GGUF], 'a.gguf'), new File(['{}'], 'config.json')]);
    expect(await listWeightFiles(plain)).toEqual({ format: 'gguf', files: ['a.gguf'] });
    await rejectsWith(resolveSource([new File(['1'], 'x.json'), new File(['2'], 'x.json')]), 'INVALID_ARGUMENT', /two files/);
    await rejectsWith(resolveSource([new Blob(['1'])] as File[]), 'INVALID_ARGUMENT', /without a name/);
  });

  it('an object implementing ModelSource is used as is', async () => {
    const mine = localSource(dirs.main);
    expect(await resolveSource(mine)).toBe(mine);
  });
});

describe('sharded checkpoints and weight files', () => {
  const expectedShards = {
    format: 'safetensors',
    indexFile: 'model.safetensors.index.json',
    files: ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'],
    weightMap: {
      'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
      'model.layers.0.mlp.up_proj.weight': 'model-00001-of-00002.safetensors',
      'lm_head.weight': 'model-00002-of-00002.safetensors',
    },
    totalSize: 8000,
  };

  it('resolves model.safetensors.index.json on disk and on the hub', async () => {
    expect(await listWeightFiles(localSource(dirs.sharded))).toEqual(expectedShards);
    const hub = hubSource('org/sharded', { endpoint: server.url });
    expect(await listWeightFiles(hub)).toEqual(expectedShards);
    await checkRandomAccess(hub, 'model-00002-of-00002.safetensors', SHARD2);
  });

  it('rejects shard names that leave the model folder', async () => {
    await rejectsWith(listWeightFiles(localSource(dirs.badIndex)), 'MALFORMED_FILE', /\.\.\/secret\.safetensors/);
    await rejectsWith(listWeightFiles(hubSource('org/bad-index', { endpoint: server.url })), 'MALFORMED_FILE', /not a relative file name/);
    for (const shard of ['/abs.safetensors', '../x.safetensors', 'a/../../x.safetensors', 'C:\\x.safetensors', 'https://evil/x.safetensors', '', 'x.bin']) {
      expect(() => parseShardIndex({ weight_map: { w: shard } }), shard).toThrow(LowbitError);
    }
    for (const bad of [null, [], 'x', {}, { weight_map: [] }, { weight_map: {} }, { weight_map: { w: 3 } }]) {
      expect(() => parseShardIndex(bad), JSON.stringify(bad)).toThrow(/not a valid safetensors shard index/);
    }
  });

  it('checks that every shard exists, unless told not to', async () => {
    const e = await rejectsWith(listWeightFiles(localSource(dirs.missingShard)), 'NOT_FOUND', /1 of 2 shards.*model-00002-of-00002/);
    expect(e.file).toBe('model-00002-of-00002.safetensors');
    await rejectsWith(listWeightFiles(hubSource('org/missing-shard', { endpoint: server.url })), 'NOT_FOUND', /model-00002/);
    expect((await listWeightFiles(localSource(dirs.missingShard), { checkFiles: false })).files).toHaveLength(2);
  });

  it('resolves shard names against the folder of an index in a subfolder', async () => {
    const w = await listWeightFiles(localSource(dirs.sub), { file: 'unet/diffusion.safetensors.index.json' });
    expect(w.files).toEqual(['unet/part-1.safetensors']);
    expect(w.weightMap).toEqual({ w: 'unet/part-1.safetensors' });
  });

  it('finds a single .gguf when the source lists; asks for a name when there are several', async () => {
    expect(await listWeightFiles(localSource(dirs.gguf))).toEqual({ format: 'gguf', files: ['tiny-Q4_0.gguf'] });
    await rejectsWith(listWeightFiles(localSource(dirs.multiGguf)), 'INVALID_ARGUMENT', /tiny-Q4_0\.gguf, tiny-Q8_0\.gguf.*name the one/);
    expect(await listWeightFiles(localSource(dirs.multiGguf), { file: 'tiny-Q8_0.gguf' })).toEqual({ format: 'gguf', files: ['tiny-Q8_0.gguf'] });
    await rejectsWith(listWeightFiles(localSource(dirs.multiGguf), { file: 'tiny-Q2_K.gguf' }), 'NOT_FOUND');
    await rejectsWith(listWeightFiles(localSource(dirs.multiGguf), { file: 'config.json' }), 'INVALID_ARGUMENT');
    await rejectsWith(listWeightFiles(localSource(dirs.v1 + '-none')), 'NOT_FOUND');
    await rejectsWith(listWeightFiles(localSource(join(tmp, 'cwd'))), 'NOT_FOUND', /no model weights/);
  });
});

describe('progress', () => {
  it('aggregates bytes and tensors across files', () => {
    const events: ProgressEvent[] = [];
    const p = new ProgressTracker((e) => events.push(e));
    p.addTotal({ bytes: 300, tensors: 3 });
    p.addTotal({ bytes: 100, tensors: 1 });
    p.phase('weights', 'a.safetensors');
    p.add({ bytes: 200, tensors: 2 });
    p.addBytes(100);
    p.addTensors(1);
    p.addBytes(100, 'b.safetensors');
    p.addTensors();
    p.finish();
    expect(events).toEqual([
      { phase: 'weights', file: 'a.safetensors', bytesDone: 0, bytesTotal: 400, tensorsDone: 0, tensorsTotal: 4 },
      { phase: 'weights', file: 'a.safetensors', bytesDone: 200, bytesTotal: 400, tensorsDone: 2, tensorsTotal: 4 },
      { phase: 'weights', file: 'a.safetensors', bytesDone: 300, bytesTotal: 400, tensorsDone: 2, tensorsTotal: 4 },
      { phase: 'weights', file: 'a.safetensors', bytesDone: 300, bytesTotal: 400, tensorsDone: 3, tensorsTotal: 4 },
      { phase: 'weights', file: 'b.safetensors', bytesDone: 400, bytesTotal: 400, tensorsDone: 3, tensorsTotal: 4 },
      { phase: 'weights', file: 'b.safetensors', bytesDone: 400, bytesTotal: 400, tensorsDone: 4, tensorsTotal: 4 },
      { phase: 'done', bytesDone: 400, bytesTotal: 400, tensorsDone: 4, tensorsTotal: 4 },
    ]);
  });

  it('throttles intermediate events but never phase changes or completion', () => {
    let now = 0;
    const events: ProgressEvent[] = [];
    const p = new ProgressTracker((e) => events.push(e), { throttleMs: 100, bytesTotal: 1000, tensorsTotal: 10, now: () => now });
    p.phase('weights');
    for (let i = 0; i < 10; i++) {
      now += 30;
      p.add({ bytes: 100, tensors: 1 });
    }
    // t=0 phase; then emits at t>=100 (120), t>=220 (240), ... and the completing event at 300.
    expect(events.map((e) => e.bytesDone)).toEqual([0, 400, 800, 1000]);
    p.addTotal({ bytes: 10 });
    now += 1;
    p.addBytes(5);
    expect(events).toHaveLength(4);
    p.flush();
    expect(events.at(-1)!.bytesDone).toBe(1005);
    p.flush();
    expect(events).toHaveLength(5);
  });

  it('reports totals that grow with the work when they are not known up front', () => {
    const events: ProgressEvent[] = [];
    const p = new ProgressTracker((e) => events.push(e));
    p.addBytes(50);
    expect(events[0]).toMatchObject({ bytesDone: 50, bytesTotal: 50, tensorsDone: 0, tensorsTotal: 0, phase: 'loading' });
    expect(() => p.addBytes(-1)).toThrow(LowbitError);
    expect(() => p.addTensors(Number.NaN)).toThrow(LowbitError);
    expect(new ProgressTracker().snapshot().bytesDone).toBe(0);
  });

  it('counts the bytes read through a source', async () => {
    const events: ProgressEvent[] = [];
    const p = new ProgressTracker((e) => events.push(e), { bytesTotal: 1100 });
    const r = trackReads(await hubSource('org/tiny', { endpoint: server.url }).open('model.safetensors'), p);
    expect(r.size).toBe(MODEL.length);
    expect(r.name).toBe('model.safetensors');
    await r.read(0, 100);
    await r.read(5000, 1000);
    expect(events.map((e) => [e.file, e.bytesDone])).toEqual([
      ['model.safetensors', 100],
      ['model.safetensors', 1100],
    ]);
  });
});
