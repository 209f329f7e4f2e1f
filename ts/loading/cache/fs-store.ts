/**
 * The Hugging Face hub cache on disk (Node, and Deno through node:fs), laid out exactly as
 * Python's huggingface_hub lays it out (file_download.py, v2.4), so each reuses the other's files:
 *
 *   <cache>/models--<org>--<name>/
 *     blobs/<etag>                       the bytes; etag = git blob sha1, or sha256 for git-lfs files
 *     snapshots/<commit>/<file>          relative symlink to ../../blobs/<etag> (one more ../ per
 *                                        folder in <file>); a copy where symlinks cannot be made
 *                                        or HF_HUB_DISABLE_SYMLINKS is set
 *     refs/<revision>                    the commit a branch or tag was at (text, no newline)
 *     .no_exist/<commit>/<file>          empty: the hub said the file is not in that commit
 *
 * Writes are atomic: a download goes to blobs/<etag>.<random>.incomplete and is renamed into
 * place only once complete and checked; links and refs are made under a temporary name and
 * renamed over the final one. So an interrupted download never leaves a file that looks
 * complete, and two processes writing the same file both leave a whole one. (huggingface_hub
 * also takes a lock in <cache>/.locks/ to avoid downloading twice; lowbit does not need it for
 * correctness and does not take it.)
 */
import { LowbitError } from '../../errors.js';
import { LocalSource } from '../sources/local.js';
import { checkFileName } from '../sources/types.js';
import { envFlag, readEnv } from './env.js';
import type { BlobWriter, CachedFile, FileKey, HubStore } from './store.js';

interface Stats {
  size: number;
  mtimeMs: number;
  isFile(): boolean;
  isSymbolicLink(): boolean;
}
interface WriteHandle {
  write(b: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  truncate(len: number): Promise<void>;
  close(): Promise<void>;
}
interface Fs {
  mkdir(p: string, o: { recursive: true }): Promise<unknown>;
  open(p: string, flags: string): Promise<WriteHandle>;
  rename(a: string, b: string): Promise<void>;
  unlink(p: string): Promise<void>;
  symlink(target: string, p: string): Promise<void>;
  readlink(p: string): Promise<string>;
  realpath(p: string): Promise<string>;
  copyFile(a: string, b: string): Promise<void>;
  stat(p: string): Promise<Stats>;
  lstat(p: string): Promise<Stats>;
  readFile(p: string, enc: 'utf8'): Promise<string>;
  writeFile(p: string, data: string, o?: { flag?: string }): Promise<void>;
}
interface Path {
  join(...p: string[]): string;
  dirname(p: string): string;
  basename(p: string): string;
  relative(a: string, b: string): string;
}

let mods: Promise<{ fs: Fs; path: Path }> | undefined;
function nodeMods(): Promise<{ fs: Fs; path: Path }> {
  const f = 'node:fs/promises';
  const p = 'node:path';
  mods ??= Promise.all([import(/* @vite-ignore */ f), import(/* @vite-ignore */ p)]).then(([fs, path]) => ({ fs: fs as Fs, path: path as Path }));
  return mods;
}

function errno(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null ? ((e as { code?: unknown }).code as string | undefined) : undefined;
}

function randomSuffix(): string {
  return Math.random().toString(16).slice(2, 10).padEnd(8, '0');
}

/** A name the hub gave (etag, commit) that is safe as one path segment. */
function checkSegment(value: string, what: string): string {
  if (!/^[\w.-]+$/.test(value) || value === '.' || value === '..') {
    throw new LowbitError('NETWORK', `the hub sent a ${what} that cannot name a cache file: ${JSON.stringify(value)}`);
  }
  return value;
}

/** huggingface_hub's repo_folder_name for models: 'org/name' -> 'models--org--name'. */
export function repoFolderName(repo: string): string {
  return ['models', ...repo.split('/')].join('--');
}

export class FsHubStore implements HubStore {
  readonly location: string;
  private readonly symlinks: boolean;

  constructor(readonly dir: string) {
    this.location = dir;
    this.symlinks = !envFlag(readEnv('HF_HUB_DISABLE_SYMLINKS'));
  }

  private async repoDir(repo: string): Promise<string> {
    return (await nodeMods()).path.join(this.dir, repoFolderName(repo));
  }

  private async pointerPath(key: FileKey): Promise<string> {
    checkFileName(key.file);
    return (await nodeMods()).path.join(await this.repoDir(key.repo), 'snapshots', checkSegment(key.commit, 'commit'), ...key.file.split('/'));
  }

  private async blobPath(repo: string, etag: string): Promise<string> {
    return (await nodeMods()).path.join(await this.repoDir(repo), 'blobs', checkSegment(etag, 'etag'));
  }

  private async refPath(repo: string, revision: string): Promise<string> {
    checkFileName(revision); // 'main', 'v1.0', 'refs/pr/1': relative, no '..'
    return (await nodeMods()).path.join(await this.repoDir(repo), 'refs', ...revision.split('/'));
  }

  async readRef(repo: string, revision: string): Promise<string | undefined> {
    const { fs } = await nodeMods();
    try {
      const commit = (await fs.readFile(await this.refPath(repo, revision), 'utf8')).trim();
      return /^[\w.-]+$/.test(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(repo: string, revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    if ((await this.readRef(repo, revision)) === commit) return; // leave a read-only cache alone
    const { fs, path } = await nodeMods();
    const ref = await this.refPath(repo, revision);
    await fs.mkdir(path.dirname(ref), { recursive: true });
    const tmp = `${ref}.${randomSuffix()}.tmp`;
    await fs.writeFile(tmp, checkSegment(commit, 'commit'));
    await fs.rename(tmp, ref);
  }

  async has(key: FileKey): Promise<boolean> {
    const { fs } = await nodeMods();
    try {
      return (await fs.stat(await this.pointerPath(key))).isFile();
    } catch {
      return false;
    }
  }

  async open(key: FileKey): Promise<CachedFile | undefined> {
    if (!(await this.has(key))) return undefined;
    const { fs, path } = await nodeMods();
    const pointer = await this.pointerPath(key);
    let etag: string | undefined;
    try {
      if ((await fs.lstat(pointer)).isSymbolicLink()) {
        const target = await fs.readlink(pointer);
        if (path.basename(path.dirname(target)) === 'blobs') etag = path.basename(target);
      }
    } catch {
      /* a copy, not a link: nothing names its blob */
    }
    const real = await fs.realpath(pointer);
    const st = await fs.stat(real);
    const snapshot = path.join(await this.repoDir(key.repo), 'snapshots', key.commit);
    const range = await new LocalSource(snapshot).open(key.file);
    return { range, ...(etag !== undefined ? { etag } : {}), identity: `${real}:${st.size}:${st.mtimeMs}` };
  }

  private async noExistPath(key: FileKey): Promise<string> {
    checkFileName(key.file);
    return (await nodeMods()).path.join(await this.repoDir(key.repo), '.no_exist', checkSegment(key.commit, 'commit'), ...key.file.split('/'));
  }

  async knownMissing(key: FileKey): Promise<boolean> {
    const { fs } = await nodeMods();
    try {
      return (await fs.stat(await this.noExistPath(key))).isFile();
    } catch {
      return false;
    }
  }

  async markMissing(key: FileKey): Promise<void> {
    const { fs, path } = await nodeMods();
    try {
      const p = await this.noExistPath(key);
      await fs.mkdir(path.dirname(p), { recursive: true });
      await fs.writeFile(p, '', { flag: 'a' });
    } catch {
      /* remembering a miss is an optimization; a read-only cache just asks again */
    }
  }

  /** Points snapshots/<commit>/<file> at the blob: a relative symlink, else a copy; atomically. */
  private async link(key: FileKey, blob: string): Promise<void> {
    const { fs, path } = await nodeMods();
    const pointer = await this.pointerPath(key);
    await fs.mkdir(path.dirname(pointer), { recursive: true });
    const tmp = `${pointer}.${randomSuffix()}.tmp`;
    if (this.symlinks) {
      try {
        await fs.symlink(path.relative(path.dirname(pointer), blob), tmp);
        await fs.rename(tmp, pointer);
        return;
      } catch (e) {
        await fs.unlink(tmp).catch(() => undefined);
        if (!['EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EINVAL'].includes(errno(e) ?? '')) throw e;
      }
    }
    await fs.copyFile(blob, tmp);
    await fs.rename(tmp, pointer);
  }

  async linkExisting(key: FileKey, etag: string): Promise<boolean> {
    const { fs } = await nodeMods();
    const blob = await this.blobPath(key.repo, etag);
    try {
      if (!(await fs.stat(blob)).isFile()) return false;
    } catch {
      return false;
    }
    await this.link(key, blob);
    return true;
  }

  async writer(key: FileKey, etag: string): Promise<BlobWriter> {
    const { fs, path } = await nodeMods();
    const blob = await this.blobPath(key.repo, etag);
    await fs.mkdir(path.dirname(blob), { recursive: true });
    await this.tagCacheDir();
    const tmp = `${blob}.${randomSuffix()}.incomplete`;
    const handle = await fs.open(tmp, 'w');
    let position = 0;
    let closed = false;
    const close = async () => {
      if (!closed) {
        closed = true;
        await handle.close();
      }
    };
    return {
      write: async (bytes) => {
        let done = 0;
        while (done < bytes.length) {
          const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
          done += bytesWritten;
        }
        position += bytes.length;
      },
      truncate: async () => {
        await handle.truncate(0);
        position = 0;
      },
      commit: async () => {
        await close();
        await fs.rename(tmp, blob);
        await this.link(key, blob);
      },
      abort: async () => {
        await close().catch(() => undefined);
        await fs.unlink(tmp).catch(() => undefined);
      },
    };
  }

  /** CACHEDIR.TAG (https://bford.info/cachedir/), which huggingface_hub also writes: backups skip the cache. */
  private async tagCacheDir(): Promise<void> {
    const { fs, path } = await nodeMods();
    const tag = path.join(this.dir, 'CACHEDIR.TAG');
    await fs
      .writeFile(tag, 'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag (Hugging Face hub cache).\n', { flag: 'wx' })
      .catch(() => undefined);
  }
}
