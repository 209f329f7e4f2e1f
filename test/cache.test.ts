/**
 * The model cache (ts/loading/cache) against the hub-shaped server of test/helpers/hub-server.ts:
 * the Hugging Face cache layout on disk, shared both ways with Python's huggingface_hub (the
 * fixture venv's, run against the same server through HF_ENDPOINT), integrity, offline mode,
 * the token, revisions, concurrency and download progress.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AutoModelForCausalLM,
  CachedHubSource,
  FsHubStore,
  LowbitError,
  resolveSource,
  type ProgressEvent,
} from '../dist/index.js';
import { startHubServer, type HubServer } from './helpers/hub-server.js';

const run = promisify(execFile);
const PYTHON = process.env.PYTHON ?? '/work/main/.venv-fixtures/bin/python';
const LLAMA = join(import.meta.dirname, 'fixtures', 'reference-logits', 'llama');
const GGUF_DIR = join(import.meta.dirname, 'fixtures', 'gguf-model');
const IDS = [1, 72, 101, 108, 108, 111];

let tmp: string;
let hub: HubServer;
let cdn: HubServer;
let v1Dir: string;

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Uint8Array) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

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

/** Every file under `dir`, relative, sorted (links listed as links). */
async function tree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix + d.name;
    if (d.isDirectory()) out.push(...(await tree(join(dir, d.name), rel + '/')));
    else out.push(rel);
  }
  return out.sort();
}

let dirCount = 0;
const freshDir = async () => {
  const d = join(tmp, `cache-${dirCount++}`);
  await mkdir(d);
  return d;
};

/** Runs env vars in `vars` for the duration of `f`. */
async function withEnv<T>(vars: Record<string, string | undefined>, f: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await f();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'lowbit-cache-'));
  // v1: the same model with a different config (so its blobs differ from main's for config.json only).
  v1Dir = join(tmp, 'v1');
  await mkdir(v1Dir);
  const config = JSON.parse(await readFile(join(LLAMA, 'config.json'), 'utf8'));
  await writeFile(join(v1Dir, 'config.json'), JSON.stringify({ ...config, _note: 'v1' }));
  await cp(join(LLAMA, 'model.safetensors'), join(v1Dir, 'model.safetensors'));
  const repos = { 'org/llama': { main: LLAMA, v1: v1Dir }, 'org/tiny-GGUF': { main: GGUF_DIR } };
  hub = await startHubServer({ repos });
  cdn = await startHubServer({ repos });
});

afterAll(async () => {
  await hub?.close();
  await cdn?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

afterEach(() => {
  for (const s of [hub, cdn]) {
    s.token = undefined;
    s.redirect = false;
    s.cdnOrigin = undefined;
    s.delayMs = 0;
    s.failNext = 0;
    s.reset();
  }
});

const load = (dir: string, extra: Record<string, unknown> = {}) =>
  AutoModelForCausalLM.fromPretrained('org/llama', { endpoint: hub.url, cache: { dir }, tokenizer: false, ...extra });

describe('hub cache on disk', () => {
  it('a first load downloads into the Hugging Face layout; a second load makes no request', async () => {
    const dir = await freshDir();
    const events: ProgressEvent[] = [];
    const model = await load(dir, { onProgress: (e: ProgressEvent) => events.push(e) });
    const commit = hub.commitOf('org/llama', 'main');
    const repo = join(dir, 'models--org--llama');
    const weights = await readFile(join(LLAMA, 'model.safetensors'));
    const config = await readFile(join(LLAMA, 'config.json'));

    // The layout, as huggingface_hub writes it.
    expect(await readFile(join(repo, 'refs', 'main'), 'utf8')).toBe(commit);
    const files = await tree(repo);
    expect(files).toContain(`blobs/${sha256(weights)}`);
    expect(files).toContain(`blobs/${gitSha1(config)}`);
    expect(files).toContain(`snapshots/${commit}/model.safetensors`);
    expect(files).toContain(`snapshots/${commit}/config.json`);
    expect(files.filter((f) => f.includes('.incomplete') || f.endsWith('.tmp'))).toEqual([]);
    expect((await lstat(join(repo, 'snapshots', commit, 'model.safetensors'))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(repo, 'snapshots', commit, 'model.safetensors'))).toBe(`../../blobs/${sha256(weights)}`);
    expect(await readlink(join(repo, 'snapshots', commit, 'config.json'))).toBe(`../../blobs/${gitSha1(config)}`);
    expect(await readFile(join(repo, 'blobs', sha256(weights)))).toEqual(weights);

    // Download progress: per file and overall, the total known from the start (prefetch).
    const dl = events.filter((e) => e.phase === 'download');
    const weightEvents = dl.filter((e) => e.download?.file === 'model.safetensors');
    expect(weightEvents.length).toBeGreaterThanOrEqual(2);
    expect(weightEvents[0]!.download).toMatchObject({ fileBytesDone: 0, fileBytesTotal: weights.length });
    expect(weightEvents.at(-1)!.download).toMatchObject({ fileBytesDone: weights.length, fileBytesTotal: weights.length });
    expect(weightEvents[0]!.bytesTotal).toBeGreaterThanOrEqual(weights.length);
    const last = dl.at(-1)!;
    expect(last.bytesDone).toBe(last.bytesTotal);
    expect(last.download!.filesDone).toBe(last.download!.filesTotal);
    expect(last.bytesDone).toBe(weights.length + config.length);
    for (let i = 1; i < dl.length; i++) expect(dl[i]!.bytesDone).toBeGreaterThanOrEqual(dl[i - 1]!.bytesDone);
    // The 'weights' phase follows, as before.
    expect(events.some((e) => e.phase === 'weights')).toBe(true);

    const want = await model.forward(IDS, 0);
    model.dispose();

    hub.reset();
    const again = await load(dir);
    expect(hub.log).toEqual([]);
    expect(await again.forward(IDS, 0)).toEqual(want);
    again.dispose();

    // The same numbers as loading the folder itself.
    const local = await AutoModelForCausalLM.fromPretrained(LLAMA, { tokenizer: false });
    expect(await local.forward(IDS, 0)).toEqual(want);
    local.dispose();
  });

  it('with the tokenizer looked for (the default), a second load makes no request either: absent files are remembered', async () => {
    const dir = await freshDir();
    const opts = { endpoint: hub.url, cache: { dir } };
    (await AutoModelForCausalLM.fromPretrained('org/llama', opts)).dispose();
    const commit = hub.commitOf('org/llama', 'main');
    expect((await tree(join(dir, 'models--org--llama', '.no_exist', commit))).length).toBeGreaterThan(0);
    hub.reset();
    const again = await AutoModelForCausalLM.fromPretrained('org/llama', opts);
    expect(again.tokenizer).toBeUndefined();
    again.dispose();
    expect(hub.log).toEqual([]);
  });

  it('reads a cache that huggingface_hub filled, and huggingface_hub reads one lowbit filled', async () => {
    const pyDir = await freshDir();
    const script = [
      'import sys',
      'from huggingface_hub import hf_hub_download',
      "for f in ['config.json', 'model.safetensors']:",
      "    print(hf_hub_download('org/llama', f, revision=sys.argv[1]))",
    ].join('\n');
    const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: pyDir, HF_HUB_DISABLE_TELEMETRY: '1', HF_HUB_DISABLE_XET: '1', HF_TOKEN: '' };
    // As on huggingface.co: the weights (git-lfs) are redirected to a CDN on another host.
    hub.redirect = true;
    hub.cdnOrigin = cdn.url;
    await run(PYTHON, ['-c', script, 'main'], { env });
    hub.redirect = false;
    expect(cdn.log.some((r) => r.method === 'GET' && /^\/org\/llama\/cdn\/[^/]+\/model\.safetensors$/.test(r.path) && r.authorization === undefined)).toBe(true);
    const commit = hub.commitOf('org/llama', 'main');
    expect(await readFile(join(pyDir, 'models--org--llama', 'refs', 'main'), 'utf8')).toBe(commit);
    const weightsSha = sha256(await readFile(join(LLAMA, 'model.safetensors')));
    expect(await readlink(join(pyDir, 'models--org--llama', 'snapshots', commit, 'model.safetensors'))).toBe(`../../blobs/${weightsSha}`);

    // Offline, so nothing may come from the server: every file must be found in Python's cache.
    hub.reset();
    const model = await load(pyDir, { offline: true });
    expect(hub.log).toEqual([]);
    const local = await AutoModelForCausalLM.fromPretrained(LLAMA, { tokenizer: false });
    expect(await model.forward(IDS, 0)).toEqual(await local.forward(IDS, 0));
    model.dispose();
    local.dispose();

    // The other way: lowbit fills a cache (revision v1), Python reads it with local_files_only.
    const ourDir = await freshDir();
    const source = await resolveSource('org/llama', { endpoint: hub.url, revision: 'v1', cache: { dir: ourDir } });
    await source.readJson('config.json');
    await (await source.open('model.safetensors')).close?.();
    const check = [
      'import sys, hashlib',
      'from huggingface_hub import hf_hub_download',
      "for f in ['config.json', 'model.safetensors']:",
      "    p = hf_hub_download('org/llama', f, revision='v1', local_files_only=True)",
      "    print(f, hashlib.sha256(open(p, 'rb').read()).hexdigest())",
    ].join('\n');
    const { stdout } = await run(PYTHON, ['-c', check], { env: { ...env, HF_HUB_CACHE: ourDir, HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' } });
    const got = Object.fromEntries(stdout.trim().split('\n').map((l) => l.split(' ')));
    expect(got).toEqual({
      'config.json': sha256(await readFile(join(v1Dir, 'config.json'))),
      'model.safetensors': sha256(await readFile(join(v1Dir, 'model.safetensors'))),
    });
  }, 120_000);

  it('a damaged cached blob is detected (INTEGRITY), never used', async () => {
    const dir = await freshDir();
    (await load(dir)).dispose();
    const weights = await readFile(join(LLAMA, 'model.safetensors'));
    const blob = join(dir, 'models--org--llama', 'blobs', sha256(weights));
    const damaged = Buffer.from(weights);
    const at = damaged.length - 4; // same size, the lowest bit of a mantissa off in the last tensor
    damaged[at] = damaged[at]! ^ 1;
    await rm(blob);
    await writeFile(blob, damaged);
    const e = await rejectsWith(load(dir), 'INTEGRITY', /sha256/);
    expect(e.file).toBe('model.safetensors');
    // Turning the check off is possible (and then the damaged bytes are read as they are).
    (await load(dir, { cache: { dir, verifyCached: false } })).dispose();
  });

  it('a download that does not match the hub\'s sha256 leaves nothing behind', async () => {
    const dir = await freshDir();
    // A fetch that flips one byte of the weights on the way.
    const flipping: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!String(input).endsWith('model.safetensors') || init?.method === 'HEAD' || res.body === null) return res;
      const body = new Uint8Array(await res.arrayBuffer());
      body[100]! ^= 1;
      return new Response(body, { status: res.status, headers: res.headers });
    };
    await rejectsWith(load(dir, { fetch: flipping, retries: 0 }), 'INTEGRITY', /model\.safetensors.*sha256/s);
    const files = await tree(join(dir, 'models--org--llama'));
    const configBlob = `blobs/${gitSha1(await readFile(join(LLAMA, 'config.json')))}`;
    expect(files.filter((f) => f.startsWith('blobs/') && f !== configBlob)).toEqual([]);
    expect(files.some((f) => f.endsWith('/model.safetensors'))).toBe(false);
  });

  it('an interrupted download leaves no file that looks complete, and the next load finishes it', async () => {
    const dir = await freshDir();
    const cutting: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!String(input).endsWith('model.safetensors') || init?.method === 'HEAD' || res.body === null) return res;
      const reader = res.body.getReader();
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          const r = await reader.read();
          if (r.done || sent > 1000) return c.error(new TypeError('connection reset'));
          sent += r.value.length;
          c.enqueue(r.value.subarray(0, 1000));
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    await rejectsWith(load(dir, { fetch: cutting, retries: 0 }), 'NETWORK', /connection reset/);
    const files = await tree(join(dir, 'models--org--llama'));
    expect(files.filter((f) => f.includes('model.safetensors') || f.includes('.incomplete'))).toEqual([]);
    (await load(dir)).dispose();
  });

  it('an aborted load stops its download and leaves nothing that looks complete', async () => {
    const dir = await freshDir();
    const controller = new AbortController();
    const onProgress = (e: ProgressEvent) => {
      if (e.phase === 'download' && e.download?.file === 'model.safetensors') controller.abort(new Error('user stop'));
    };
    const e = await rejectsWith(load(dir, { signal: controller.signal, onProgress }), 'ABORTED');
    expect((e.cause as Error).message).toBe('user stop');
    const files = await tree(join(dir, 'models--org--llama'));
    expect(files.filter((f) => f.includes('model.safetensors') || f.includes('.incomplete'))).toEqual([]);
  });

  it('revalidate asks the hub for the branch\'s commit once per load instead of trusting refs/', async () => {
    const dir = await freshDir();
    (await load(dir)).dispose();
    const refFile = join(dir, 'models--org--llama', 'refs', 'main');
    // As if main had been cached at another commit: revalidate finds the current one.
    await writeFile(refFile, 'f'.repeat(40));
    hub.reset();
    (await load(dir, { cache: { dir, revalidate: true } })).dispose();
    expect(await readFile(refFile, 'utf8')).toBe(hub.commitOf('org/llama', 'main'));
    expect(hub.log.filter((r) => r.method === 'GET')).toEqual([]); // the blobs were there: linked, not downloaded
    expect(hub.log.length).toBeGreaterThan(0);
  });

  it('offline: a cached model loads with no request; a miss is OFFLINE_CACHE_MISS naming repo, revision and file', async () => {
    const dir = await freshDir();
    (await load(dir)).dispose();
    hub.reset();
    await withEnv({ HF_HUB_OFFLINE: '1' }, async () => {
      (await load(dir)).dispose();
      const e = await rejectsWith(load(await freshDir()), 'OFFLINE_CACHE_MISS', /offline.*org\/llama at revision 'main' is not in the cache/s);
      expect(['config.json', 'model.safetensors.index.json', 'model.safetensors']).toContain(e.file); // the first file the load needed
      await rejectsWith(load(dir, { revision: 'v1' }), 'OFFLINE_CACHE_MISS', /revision 'v1'/);
      // A revision that is cached but lacks a file: the miss names the file.
      const s = await resolveSource('org/llama', { endpoint: hub.url, cache: { dir } });
      const miss = await rejectsWith(s.readText('generation_config.json'), 'OFFLINE_CACHE_MISS', /'generation_config\.json' of org\/llama at revision 'main' is not in the cache/);
      expect(miss.file).toBe('generation_config.json');
      // offline needs the cache
      await rejectsWith(load(dir, { cache: false }), 'INVALID_ARGUMENT', /offline/);
    });
    await rejectsWith(load(await freshDir(), { offline: true }), 'OFFLINE_CACHE_MISS');
    expect(hub.log).toEqual([]);
  });

  it('a file the hub lacks is remembered in .no_exist/<commit>/ and not asked about again', async () => {
    const dir = await freshDir();
    const s = await resolveSource('org/llama', { endpoint: hub.url, cache: { dir } });
    expect(await s.exists('generation_config.json')).toBe(false);
    const commit = hub.commitOf('org/llama', 'main');
    expect(existsSync(join(dir, 'models--org--llama', '.no_exist', commit, 'generation_config.json'))).toBe(true);
    hub.reset();
    const again = await resolveSource('org/llama', { endpoint: hub.url, cache: { dir } });
    expect(await again.exists('generation_config.json')).toBe(false);
    await rejectsWith(again.readText('generation_config.json'), 'NOT_FOUND', /generation_config\.json/);
    expect(hub.log).toEqual([]);
  });

  it('revisions: a branch is recorded in refs/, a commit is used as it is', async () => {
    const dir = await freshDir();
    const v1 = await resolveSource('org/llama', { endpoint: hub.url, revision: 'v1', cache: { dir } });
    expect(v1).toBeInstanceOf(CachedHubSource);
    expect((await v1.readJson<{ _note?: string }>('config.json'))._note).toBe('v1');
    const commit = hub.commitOf('org/llama', 'v1');
    expect(await readFile(join(dir, 'models--org--llama', 'refs', 'v1'), 'utf8')).toBe(commit);
    hub.reset();
    const pinned = await resolveSource('org/llama', { endpoint: hub.url, revision: commit, cache: { dir } });
    expect((await pinned.readJson<{ _note?: string }>('config.json'))._note).toBe('v1');
    expect(hub.log).toEqual([]);
    // main shares the weights blob with v1: it is linked, not downloaded again.
    const main = await resolveSource('org/llama', { endpoint: hub.url, cache: { dir } });
    await (await main.open('model.safetensors')).close?.();
    await (await v1.open('model.safetensors')).close?.();
    hub.reset();
    await (await main.open('model.safetensors')).close?.();
    expect(hub.log.filter((r) => r.method === 'GET' && r.path.endsWith('model.safetensors'))).toEqual([]);
    expect(existsSync(join(dir, 'models--org--llama', 'refs', commit))).toBe(false);
    await rejectsWith(resolveSource('org/llama', { endpoint: hub.url, revision: 'nope', cache: { dir } }).then((s) => s.readText('config.json')), 'NOT_FOUND', /RevisionNotFound/);
  });

  it('cache: false reads the hub directly, with HF_TOKEN, and still not to the CDN', async () => {
    hub.token = 'hf_secret';
    hub.redirect = true;
    hub.cdnOrigin = cdn.url;
    const s = await withEnv({ HF_TOKEN: 'hf_secret' }, () => resolveSource('org/llama', { endpoint: hub.url, cache: false }));
    expect(s).not.toBeInstanceOf(CachedHubSource);
    expect(JSON.parse(await s.readText('config.json'))).toEqual(JSON.parse(await readFile(join(LLAMA, 'config.json'), 'utf8')));
    expect(hub.log.every((r) => r.authorization === 'Bearer hf_secret')).toBe(true);
    expect(cdn.log.length).toBeGreaterThan(0);
    expect(cdn.log.every((r) => r.authorization === undefined)).toBe(true);
  });

  it('HF_TOKEN goes to the hub, not to the CDN a redirect points at; the token file works too', async () => {
    hub.token = 'hf_secret';
    hub.redirect = true;
    hub.cdnOrigin = cdn.url;
    const dir = await freshDir();
    await withEnv({ HF_TOKEN: 'hf_secret', HF_TOKEN_PATH: undefined }, async () => (await load(dir)).dispose());
    expect(hub.log.length).toBeGreaterThan(0);
    expect(hub.log.every((r) => r.authorization === 'Bearer hf_secret')).toBe(true);
    expect(cdn.log.filter((r) => r.method === 'GET').length).toBe(2); // config.json, model.safetensors
    expect(cdn.log.every((r) => r.authorization === undefined)).toBe(true);

    // The token file huggingface_hub writes (HF_TOKEN_PATH, default HF_HOME/token).
    hub.reset();
    cdn.reset();
    const tokenFile = join(tmp, 'token');
    await writeFile(tokenFile, 'hf_secret\n');
    await withEnv({ HF_TOKEN: undefined, HUGGING_FACE_HUB_TOKEN: undefined, HF_TOKEN_PATH: tokenFile }, async () => (await load(await freshDir())).dispose());
    expect(hub.log.every((r) => r.authorization === 'Bearer hf_secret')).toBe(true);
    expect(cdn.log.every((r) => r.authorization === undefined)).toBe(true);

    // No token: the hub refuses, and the message says what to do.
    await withEnv({ HF_TOKEN: undefined, HUGGING_FACE_HUB_TOKEN: undefined, HF_TOKEN_PATH: join(tmp, 'none'), HF_HOME: join(tmp, 'home') }, async () => {
      await rejectsWith(load(await freshDir()), 'NETWORK', /401.*HF_TOKEN/s);
    });
  });

  it('concurrent loads of the same file download it once and leave it whole; separate writers stay atomic', async () => {
    const dir = await freshDir();
    hub.delayMs = 50;
    const [a, b] = await Promise.all([load(dir), load(dir)]);
    expect(await a.forward(IDS, 0)).toEqual(await b.forward(IDS, 0));
    a.dispose();
    b.dispose();
    expect(hub.log.filter((r) => r.method === 'GET' && r.path.endsWith('model.safetensors')).length).toBe(1);

    // Two writers of the same blob (as two processes would be): interleaved writes, both commit.
    const weights = await readFile(join(LLAMA, 'model.safetensors'));
    const store = new FsHubStore(await freshDir());
    const key = { repo: 'org/llama', commit: 'c'.repeat(40), file: 'model.safetensors' };
    const w1 = await store.writer(key, sha256(weights));
    const w2 = await store.writer(key, sha256(weights));
    const half = weights.length >> 1;
    await w1.write(weights.subarray(0, half));
    await w2.write(weights.subarray(0, 1000));
    await w2.write(weights.subarray(1000));
    await w2.commit();
    await w1.write(weights.subarray(half));
    await w1.commit();
    const file = await store.open(key);
    expect(file?.etag).toBe(sha256(weights));
    expect(await file!.range.read(0, file!.range.size)).toEqual(new Uint8Array(weights));
    await file!.range.close?.();
    expect((await tree(store.dir)).filter((f) => f.includes('.incomplete') || f.endsWith('.tmp'))).toEqual([]);
  });

  it('where symlinks cannot be made (HF_HUB_DISABLE_SYMLINKS) the snapshot holds copies', async () => {
    const dir = await freshDir();
    await withEnv({ HF_HUB_DISABLE_SYMLINKS: '1' }, async () => (await load(dir)).dispose());
    const commit = hub.commitOf('org/llama', 'main');
    const pointer = join(dir, 'models--org--llama', 'snapshots', commit, 'model.safetensors');
    expect((await lstat(pointer)).isSymbolicLink()).toBe(false);
    expect(await readFile(pointer)).toEqual(await readFile(join(LLAMA, 'model.safetensors')));
    hub.reset();
    (await load(dir)).dispose();
    expect(hub.log).toEqual([]);
  });

  it('Deno fills the same cache layout from its environment; Node reads it with no request, and Deno reads it offline', async () => {
    const DENO = join(import.meta.dirname, '..', 'node_modules', '.bin', 'deno');
    if (!existsSync(DENO)) throw new Error(`deno is not installed (${DENO} is missing): run \`npm ci\``);
    const dir = await freshDir();
    const env = { ...process.env, NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', DENO_NO_PROMPT: '1', DENO_DIR: join(tmp, 'deno-dir'), HF_HUB_CACHE: dir, HF_TOKEN: 'hf_deno' };
    const deno = (extra: Record<string, string> = {}) =>
      run(DENO, ['run', '--allow-read', '--allow-write', '--allow-env', '--allow-net', 'test/runtimes/deno-cache-check.ts', hub.url], { env: { ...env, ...extra }, timeout: 90_000 });
    hub.token = 'hf_deno';
    const first = JSON.parse((await deno()).stdout.trim().split('\n').at(-1)!) as { runtime: string; logits: number[]; downloads: { file: string; done: number; total: number }[] };
    expect(first.runtime).toMatch(/^deno /);
    const weights = await readFile(join(LLAMA, 'model.safetensors'));
    expect(first.downloads.filter((d) => d.file === 'model.safetensors').at(-1)).toEqual({ file: 'model.safetensors', done: weights.length, total: weights.length });
    const commit = hub.commitOf('org/llama', 'main');
    expect(await readlink(join(dir, 'models--org--llama', 'snapshots', commit, 'model.safetensors'))).toBe(`../../blobs/${sha256(weights)}`);
    hub.reset();
    const model = await load(dir);
    expect(hub.log).toEqual([]);
    expect(Array.from(await model.forward(IDS, 0))).toEqual(first.logits);
    model.dispose();
    const offline = JSON.parse((await deno({ HF_HUB_OFFLINE: '1' })).stdout.trim().split('\n').at(-1)!) as { logits: number[]; downloads: unknown[] };
    expect(offline.downloads).toEqual([]);
    expect(offline.logits).toEqual(first.logits);
    expect(hub.log).toEqual([]);
  }, 120_000);

  it('a hub file URL (…/resolve/<revision>/<file>.gguf) is cached like a hub id, that file being the weights', async () => {
    const dir = await freshDir();
    const url = `${hub.url}/org/tiny-GGUF/resolve/main/llama-q8_0.gguf`;
    const s = await resolveSource(url, { endpoint: hub.url, cache: { dir } });
    expect(s).toBeInstanceOf(CachedHubSource);
    expect(s.weightFile).toBe('llama-q8_0.gguf');
    const a = await AutoModelForCausalLM.fromPretrained(url, { endpoint: hub.url, cache: { dir }, tokenizer: false });
    const want = await a.forward(IDS, 0);
    a.dispose();
    const commit = hub.commitOf('org/tiny-GGUF', 'main');
    const gguf = await readFile(join(GGUF_DIR, 'llama-q8_0.gguf'));
    expect(await readlink(join(dir, 'models--org--tiny-GGUF', 'snapshots', commit, 'llama-q8_0.gguf'))).toBe(`../../blobs/${sha256(gguf)}`);
    // Only the file the URL named was downloaded.
    expect((await tree(join(dir, 'models--org--tiny-GGUF', 'blobs'))).length).toBe(1);
    hub.reset();
    const b = await AutoModelForCausalLM.fromPretrained(url, { endpoint: hub.url, cache: { dir }, tokenizer: false });
    expect(hub.log).toEqual([]);
    expect(await b.forward(IDS, 0)).toEqual(want);
    b.dispose();
    const local = await AutoModelForCausalLM.fromPretrained(join(GGUF_DIR, 'llama-q8_0.gguf'), { tokenizer: false });
    expect(await local.forward(IDS, 0)).toEqual(want);
    local.dispose();
    // The same URL with cache: false, or on a host that is not the hub, is a plain URL source.
    expect(await resolveSource(url, { endpoint: hub.url, cache: false })).not.toBeInstanceOf(CachedHubSource);
    expect(await resolveSource(url)).not.toBeInstanceOf(CachedHubSource);
  });

  it('download: false reads cached files from the cache and others by Range from the hub, storing nothing', async () => {
    const dir = await freshDir();
    const weights = await readFile(join(LLAMA, 'model.safetensors'));
    const s = await resolveSource('org/llama', { endpoint: hub.url, cache: { dir, download: false } });
    const r = await s.open('model.safetensors');
    expect(r.size).toBe(weights.length);
    expect(await r.read(8, 16)).toEqual(new Uint8Array(weights.subarray(8, 24)));
    expect(await s.exists('generation_config.json')).toBe(false);
    expect(hub.bytesSent()).toBeLessThan(1000);
    expect(await readdir(dir)).toEqual([]);
    // Once cached (by a load that downloads), the same source kind reads the cache with no request.
    (await load(dir)).dispose();
    hub.reset();
    const cached = await resolveSource('org/llama', { endpoint: hub.url, cache: { dir, download: false } });
    const c = await cached.open('model.safetensors');
    expect(await c.read(0, c.size)).toEqual(new Uint8Array(weights));
    await c.close?.();
    expect(hub.log).toEqual([]);
  });

  it('the cache folder comes from HF_HUB_CACHE, else HF_HOME/hub', async () => {
    const home = join(tmp, 'hf-home');
    await withEnv({ HF_HUB_CACHE: undefined, HUGGINGFACE_HUB_CACHE: undefined, HF_HOME: home }, async () => {
      const s = (await resolveSource('org/llama', { endpoint: hub.url })) as CachedHubSource;
      expect(s.store.location).toBe(join(home, 'hub'));
    });
    const hubCache = join(tmp, 'hub-cache');
    await withEnv({ HF_HUB_CACHE: hubCache, HF_HOME: home }, async () => {
      const s = (await resolveSource('org/llama', { endpoint: hub.url })) as CachedHubSource;
      expect(s.store.location).toBe(hubCache);
      await s.readText('config.json');
    });
    expect(existsSync(join(hubCache, 'models--org--llama', 'refs', 'main'))).toBe(true);
  });
});

describe('hub cache in a browser (Cache API, headless Chromium)', () => {
  for (const viaCdn of [false, true]) {
  it(`downloads into the Cache API keyed by repo/commit/file, loads again with no request, offline hit and miss, damage detected${viaCdn ? ' (git-lfs files redirected to a CDN on another origin: metadata from the hub API)' : ''}`, async () => {
    if (viaCdn) {
      hub.redirect = true;
      hub.cdnOrigin = cdn.url;
    }
    const { runPage } = await import('./helpers/chromium.js');
    const root = join(import.meta.dirname, '..');
    type Result = {
      ok: boolean;
      error?: string;
      logits: number[];
      events: ProgressEvent[];
      keys: string[];
      same: boolean;
      offlineSame: boolean;
      offlineMiss: string;
      corrupt: string;
      unchecked: string;
    };
    const { result, logs } = await runPage<Result>(root, `/test/runtimes/browser-cache/?hub=${encodeURIComponent(hub.url)}`, { timeoutMs: 120_000 });
    expect(result.ok, `${result.error}\n${logs.join('\n')}`).toBe(true);

    // The server's log, cut at the page's marks.
    const steps: Record<string, string[]> = {};
    let step = 'before';
    for (const r of hub.log) {
      if (r.path.startsWith('/__mark/')) step = r.path.slice('/__mark/'.length);
      else (steps[step] ??= []).push(`${r.method} ${r.path}`);
    }
    if (viaCdn) {
      expect(steps.first).toContain('GET /api/models/org/llama/revision/main');
      expect(cdn.log.map((r) => `${r.method} ${r.path}`)).toContain(`GET /org/llama/cdn/${hub.commitOf('org/llama', 'main')}/model.safetensors`);
    } else {
      expect(steps.first).toContain('GET /org/llama/resolve/main/model.safetensors');
    }
    expect(steps.second ?? []).toEqual([]);
    expect(steps.offline ?? []).toEqual([]);
    expect(steps.corrupt ?? []).toEqual([]);

    const commit = hub.commitOf('org/llama', 'main');
    expect(result.keys).toEqual(
      expect.arrayContaining([`/org/llama/resolve/${commit}/model.safetensors`, `/org/llama/resolve/${commit}/config.json`, '/org/llama/lowbit-cache/refs/main']),
    );
    const local = await AutoModelForCausalLM.fromPretrained(LLAMA, { tokenizer: false });
    expect(result.logits).toEqual(Array.from(await local.forward(IDS, 0)));
    local.dispose();
    expect(result.same).toBe(true);
    expect(result.offlineSame).toBe(true);
    expect(result.offlineMiss).toMatch(/^OFFLINE_CACHE_MISS: .*revision 'v1'/);
    expect(result.corrupt).toMatch(/^INTEGRITY: .*model\.safetensors/);
    expect(result.unchecked).toBe('resolved');

    const weights = await readFile(join(LLAMA, 'model.safetensors'));
    const last = result.events.filter((e) => e.download?.file === 'model.safetensors').at(-1)!;
    expect(last.download).toMatchObject({ fileBytesDone: weights.length, fileBytesTotal: weights.length });
  }, 180_000);
  }
});
