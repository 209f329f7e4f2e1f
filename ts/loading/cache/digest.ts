/**
 * The checksum a hub etag stands for, computed while bytes stream past.
 *
 * The hub's etag for a file is its git blob id when the file is in git (sha1 of
 * "blob <size>\0" + content, 40 hex digits) and the sha256 of its content when it is in git-lfs
 * (64 hex digits) — huggingface_hub's hf_hub_download docs say so, and the cache names blobs by
 * it. Any other etag (a mirror's own) cannot be checked and is not.
 *
 * Node and Deno hash with node:crypto (native); browsers with @noble/hashes (WebCrypto cannot
 * hash incrementally), imported on first use only — except when checking a cached file of up to
 * WHOLE_FILE_LIMIT bytes, which WebCrypto hashes in one go (about ten times faster than
 * @noble/hashes in V8, at the cost of holding the file in memory for a moment).
 */
import { LowbitError } from '../../errors.js';
import { isServerRuntime, type ByteRange } from '../sources/types.js';

export type DigestKind = 'sha256' | 'git-sha1';

export interface ExpectedDigest {
  kind: DigestKind;
  hex: string;
}

/** The digest an etag promises, when it is one; git blob ids need the size. */
export function expectedDigest(etag: string, size: number | undefined): ExpectedDigest | undefined {
  if (/^[0-9a-f]{64}$/.test(etag)) return { kind: 'sha256', hex: etag };
  if (/^[0-9a-f]{40}$/.test(etag) && size !== undefined) return { kind: 'git-sha1', hex: etag };
  return undefined;
}

/** An incremental hash. */
export interface Hasher {
  update(bytes: Uint8Array): void;
  hex(): string;
}

interface NodeHash {
  update(b: Uint8Array): NodeHash;
  digest(enc: 'hex'): string;
}

let nodeCrypto: Promise<{ createHash(alg: string): NodeHash }> | undefined;
let noble: Promise<{ sha256: { create(): NobleHash }; sha1: { create(): NobleHash } }> | undefined;

interface NobleHash {
  update(b: Uint8Array): NobleHash;
  digest(): Uint8Array;
}

function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

async function rawHasher(alg: 'sha256' | 'sha1'): Promise<Hasher> {
  if (isServerRuntime()) {
    const name = 'node:crypto';
    nodeCrypto ??= import(/* @vite-ignore */ name) as Promise<{ createHash(alg: string): NodeHash }>;
    const h = (await nodeCrypto).createHash(alg);
    return { update: (b) => void h.update(b), hex: () => h.digest('hex') };
  }
  noble ??= Promise.all([import('@noble/hashes/sha2.js'), import('@noble/hashes/legacy.js')]).then(
    ([sha2, legacy]) => ({ sha256: sha2.sha256, sha1: legacy.sha1 }),
    (e: unknown) => {
      noble = undefined;
      throw new LowbitError(
        'INVALID_ARGUMENT',
        `checking downloads needs the package @noble/hashes (an npm dependency of lowbit; in a browser without a bundler, map it in an import map): ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    },
  );
  const h = (await noble)[alg].create();
  return { update: (b) => void h.update(b), hex: () => toHex(h.digest()) };
}

/** A hasher for `digest` (a git blob id starts with its "blob <size>\0" header). */
export async function hasherFor(digest: ExpectedDigest, size: number | undefined): Promise<Hasher> {
  if (digest.kind === 'sha256') return rawHasher('sha256');
  const h = await rawHasher('sha1');
  h.update(new TextEncoder().encode(`blob ${size ?? 0}\0`));
  return h;
}

/** INTEGRITY error unless `actual` is the digest expected. */
export function checkDigest(digest: ExpectedDigest, actual: string, what: string, file: string): void {
  if (actual === digest.hex) return;
  throw new LowbitError(
    'INTEGRITY',
    `${what}: its ${digest.kind === 'sha256' ? 'sha256' : 'git blob sha1'} is ${actual}, but the hub's etag says ${digest.hex}; the bytes are damaged (the file is not used: delete it or load again to download it anew)`,
    { file },
  );
}

/** Cached files up to this size are hashed whole by WebCrypto in browsers. */
const WHOLE_FILE_LIMIT = 512 << 20;
const CHUNK = 8 << 20;

/** The hex digest of a whole ByteRange, read in chunks (or in one piece for WebCrypto). */
export async function digestOfRange(digest: ExpectedDigest, range: ByteRange, signal?: AbortSignal): Promise<string> {
  const subtle = (globalThis as { crypto?: { subtle?: SubtleCrypto } }).crypto?.subtle;
  if (!isServerRuntime() && subtle !== undefined && range.size <= WHOLE_FILE_LIMIT) {
    const body = await range.read(0, range.size, signal);
    let data: Uint8Array = body;
    if (digest.kind === 'git-sha1') {
      const head = new TextEncoder().encode(`blob ${range.size}\0`);
      data = new Uint8Array(head.length + body.length);
      data.set(head);
      data.set(body, head.length);
    }
    return toHex(new Uint8Array(await subtle.digest(digest.kind === 'sha256' ? 'SHA-256' : 'SHA-1', data as Uint8Array<ArrayBuffer>)));
  }
  const h = await hasherFor(digest, range.size);
  for (let at = 0; at < range.size; at += CHUNK) h.update(await range.read(at, Math.min(CHUNK, range.size - at), signal));
  return h.hex();
}
