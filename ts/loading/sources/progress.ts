/**
 * Progress of a load: bytes and tensors done out of the total, across all files.
 *
 *   const progress = new ProgressTracker(options.onProgress, { throttleMs: 100 });
 *   progress.addTotal({ bytes: header.dataBytes, tensors: header.count });   // per file, as known
 *   progress.phase('weights', 'model-00001-of-00002.safetensors');
 *   progress.add({ bytes: n, tensors: 1 });
 *   progress.finish();
 *
 * Throttling drops intermediate events only: phase changes, the event that completes both
 * totals, and finish() are always delivered. An exception thrown by the callback propagates
 * to the caller of the tracker (so a callback can cancel a load by throwing).
 */
import { LowbitError } from '../../errors.js';
import type { ByteRange } from './types.js';

/** What loading reports to `onProgress`: the phase, and bytes and tensors done out of their totals. */
export interface ProgressEvent {
  /**
   * What is happening: 'download' (files coming into the model cache; bytesDone / bytesTotal
   * count the downloads of this load and `download` has the current file), then 'metadata',
   * 'weights', 'done'.
   */
  phase: string;
  /** The file being read, when one is. */
  file?: string;
  bytesDone: number;
  /** Never below bytesDone (it grows with it while the total is still unknown). */
  bytesTotal: number;
  tensorsDone: number;
  /** Never below tensorsDone. */
  tensorsTotal: number;
  /** In phase 'download': the file being downloaded, and how far. */
  download?: DownloadProgress;
}

/** One file's download into the model cache, within all the downloads of a load. */
export interface DownloadProgress {
  file: string;
  fileBytesDone: number;
  /** The file's size (from the hub's metadata); never below fileBytesDone. */
  fileBytesTotal: number;
  /** Files downloaded so far in this load, and files to download known so far. */
  filesDone: number;
  filesTotal: number;
}

/** The `onProgress` option of the loading functions. */
export type ProgressCallback = (event: ProgressEvent) => void;

/** Options of `ProgressTracker`. */
export interface ProgressTrackerOptions {
  /** The least time between two delivered events, in ms (default 0: deliver every event). */
  throttleMs?: number;
  /** Initial totals; addTotal() adds to them. */
  bytesTotal?: number;
  tensorsTotal?: number;
  /** The phase before the first phase() call (default 'loading'). */
  phase?: string;
  /** The clock (default performance.now / Date.now); for tests. */
  now?: () => number;
}

function count(n: number, what: string): number {
  if (!Number.isFinite(n) || n < 0) throw new LowbitError('INVALID_ARGUMENT', `progress: ${what} must be a non-negative number, got ${n}`);
  return n;
}

/** Aggregates bytes and tensors across files and reports them to an onProgress callback. */
export class ProgressTracker {
  private bytesDone = 0;
  private bytesTotal: number;
  private tensorsDone = 0;
  private tensorsTotal: number;
  private currentPhase: string;
  private currentFile: string | undefined;
  private readonly throttleMs: number;
  private readonly now: () => number;
  private lastEmit = -Infinity;
  private pending = false;

  constructor(
    private readonly onProgress?: ProgressCallback,
    options: ProgressTrackerOptions = {},
  ) {
    this.throttleMs = count(options.throttleMs ?? 0, 'throttleMs');
    this.bytesTotal = count(options.bytesTotal ?? 0, 'bytesTotal');
    this.tensorsTotal = count(options.tensorsTotal ?? 0, 'tensorsTotal');
    this.currentPhase = options.phase ?? 'loading';
    this.now = options.now ?? (typeof performance !== 'undefined' ? () => performance.now() : () => Date.now());
  }

  /** The current state, as the next event would report it. */
  snapshot(): ProgressEvent {
    return {
      phase: this.currentPhase,
      ...(this.currentFile === undefined ? {} : { file: this.currentFile }),
      bytesDone: this.bytesDone,
      bytesTotal: Math.max(this.bytesTotal, this.bytesDone),
      tensorsDone: this.tensorsDone,
      tensorsTotal: Math.max(this.tensorsTotal, this.tensorsDone),
    };
  }

  /** Adds to the totals (e.g. once per file, when its header has been read). Does not emit. */
  addTotal(total: { bytes?: number; tensors?: number }): void {
    this.bytesTotal += count(total.bytes ?? 0, 'bytes');
    this.tensorsTotal += count(total.tensors ?? 0, 'tensors');
  }

  /** Starts a phase (and names the file, if any); always emits. */
  phase(phase: string, file?: string): void {
    this.currentPhase = phase;
    this.currentFile = file;
    this.emit(true);
  }

  /** Records work done; emits unless throttled. `file` switches the current file. */
  add(done: { bytes?: number; tensors?: number; file?: string }): void {
    this.bytesDone += count(done.bytes ?? 0, 'bytes');
    this.tensorsDone += count(done.tensors ?? 0, 'tensors');
    if (done.file !== undefined) this.currentFile = done.file;
    const complete = this.bytesDone >= this.bytesTotal && this.tensorsDone >= this.tensorsTotal && this.bytesTotal + this.tensorsTotal > 0;
    this.emit(complete);
  }

  addBytes(bytes: number, file?: string): void {
    this.add({ bytes, ...(file === undefined ? {} : { file }) });
  }

  addTensors(tensors = 1, file?: string): void {
    this.add({ tensors, ...(file === undefined ? {} : { file }) });
  }

  /** Delivers an event held back by throttling, if there is one. */
  flush(): void {
    if (this.pending) this.emit(true);
  }

  /** Ends the load: switches to `phase` (default 'done') and always emits. */
  finish(phase = 'done'): void {
    this.currentFile = undefined;
    this.phase(phase);
  }

  private emit(force: boolean): void {
    if (!this.onProgress) return;
    const t = this.now();
    if (!force && this.throttleMs > 0 && t - this.lastEmit < this.throttleMs) {
      this.pending = true;
      return;
    }
    this.lastEmit = t;
    this.pending = false;
    this.onProgress(this.snapshot());
  }
}

/** Wraps a ByteRange so that every completed read adds its bytes to `tracker`. */
export function trackReads(range: ByteRange, tracker: ProgressTracker): ByteRange {
  return {
    get size() {
      return range.size;
    },
    get name() {
      return range.name;
    },
    async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
      const bytes = await range.read(offset, length, signal);
      tracker.addBytes(bytes.length, range.name);
      return bytes;
    },
    ...(range.close ? { close: () => range.close!() } : {}),
  };
}
