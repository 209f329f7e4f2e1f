/**
 * Where a cached hub source keeps files: the Hugging Face cache folder in Node and Deno
 * (fs-store.ts), the Cache API in browsers (browser-store.ts). Both key files by repo, commit and
 * file name, remember which commit a branch or tag was at, and which files a commit lacks.
 */
import type { ByteRange } from '../sources/types.js';

export interface FileKey {
  /** 'org/name' */
  repo: string;
  /** A full commit hash. */
  commit: string;
  /** A relative file name ('config.json', 'sub/x.safetensors'). */
  file: string;
}

/** A cached file, opened; `etag` when the store can tell (it names the blob), for checking. */
export interface CachedFile {
  range: ByteRange;
  etag?: string;
  /**
   * Identifies these exact bytes (a path with its size and mtime) so a process checks them once;
   * undefined when the store cannot tell a rewrite (the Cache API): checked at every open.
   */
  identity?: string;
}

/** Receives a download; nothing is visible in the store until commit() succeeds. */
export interface BlobWriter {
  write(bytes: Uint8Array): Promise<void>;
  /** Drops what was written (a retry starts again from byte 0). */
  truncate(): Promise<void>;
  /** Makes the bytes the file at `key` (atomically: readers see all of it or nothing). */
  commit(): Promise<void>;
  /** Throws the bytes away (a failed or damaged download). */
  abort(): Promise<void>;
}

export interface HubStore {
  /** Where the store is, for messages ('/home/u/.cache/huggingface/hub', 'Cache API "lowbit-hub"'). */
  readonly location: string;
  /** The commit a branch or tag was at when last seen (refs/<revision>). */
  readRef(repo: string, revision: string): Promise<string | undefined>;
  writeRef(repo: string, revision: string, commit: string): Promise<void>;
  /** The cached file, or undefined. */
  open(key: FileKey): Promise<CachedFile | undefined>;
  /** Whether the file is cached (without opening it). */
  has(key: FileKey): Promise<boolean>;
  /** Whether the hub said the file does not exist at this commit (.no_exist/). */
  knownMissing(key: FileKey): Promise<boolean>;
  markMissing(key: FileKey): Promise<void>;
  /** Makes the file at `key` from a blob already held under `etag`; false when there is none. */
  linkExisting(key: FileKey, etag: string): Promise<boolean>;
  /** A writer for a new download of the blob `etag` to be the file at `key`. */
  writer(key: FileKey, etag: string): Promise<BlobWriter>;
}

/** A full commit hash (huggingface_hub's REGEX_COMMIT_HASH). */
export function isCommitHash(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}
