/** Stable error codes, one per failure class (mirrors lowbit_core::ErrorKind). */
export type LowbitErrorCode =
  | 'UNSUPPORTED_BLOCKSIZE'
  | 'UNSUPPORTED_QUANT_TYPE'
  | 'UNSUPPORTED_DTYPE'
  | 'LENGTH_MISMATCH'
  | 'NON_FINITE'
  | 'EMPTY_TENSOR'
  | 'INCONSISTENT_STATE'
  | 'PARSE'
  | 'MALFORMED_FILE'
  | 'NEED_MORE_DATA'
  | 'NOT_FOUND'
  | 'NETWORK'
  | 'INVALID_ARGUMENT'
  | 'NOT_INITIALIZED'
  | 'WASM_LOAD_FAILED'
  /** No WebGPU here: no navigator.gpu (nor the optional `webgpu` package in Node), or no adapter / device. */
  | 'WEBGPU_UNAVAILABLE'
  /** The GPU device was lost (driver reset, out of memory, destroyed); the backend is unusable. */
  | 'DEVICE_LOST'
  /** The GPU reported a validation or out-of-memory error for recorded work. */
  | 'GPU_ERROR'
  /** A model does not fit within the memory budgets of its deviceMap (maxMemory); refused before anything is allocated. */
  | 'OUT_OF_MEMORY'
  /** A CPU worker thread died or stopped answering (the backend is unusable; dispose it). */
  | 'WORKER_FAILED'
  /** An AbortSignal stopped the call (generate, fromPretrained); `cause` is the signal's reason. */
  | 'ABORTED'
  /** Work from a file ran past a safety limit (a chat template's output size or running time). */
  | 'LIMIT_EXCEEDED'
  /** Downloaded or cached bytes do not match the checksum the hub gave for them (sha256 / git blob id). */
  | 'INTEGRITY'
  /** Offline (HF_HUB_OFFLINE=1 or `offline: true`) and the file is not in the cache; the message names repo, revision and file. */
  | 'OFFLINE_CACHE_MISS'
  | 'INTERNAL';

/**
 * Every error lowbit throws. `code` is stable; `index` names the first bad element for NON_FINITE;
 * `file` names the file (relative to its model source) that a loading error is about.
 */
export class LowbitError extends Error {
  override readonly name = 'LowbitError';
  /** What went wrong, stable across versions (README: Errors). */
  readonly code: LowbitErrorCode;
  /** NON_FINITE: the first bad element. */
  readonly index?: number;
  /** Loading errors: the file (relative to its model source) the error is about. */
  readonly file?: string;
  constructor(code: LowbitErrorCode, message: string, options?: { index?: number; file?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.index !== undefined) this.index = options.index;
    if (options?.file !== undefined) this.file = options.file;
  }
}

/** Converts whatever the wasm glue threw into a LowbitError. */
export function toLowbitError(e: unknown): LowbitError {
  if (e instanceof LowbitError) return e;
  if (e instanceof Error && e.name === 'LowbitError') {
    const code = (e as Error & { code?: LowbitErrorCode }).code ?? 'INTERNAL';
    const index = (e as Error & { index?: number }).index;
    return new LowbitError(code, e.message, index === undefined ? undefined : { index });
  }
  // A trap (e.g. out of memory) rather than a checked error.
  const msg = e instanceof Error ? e.message : String(e);
  return new LowbitError('INTERNAL', `internal error in the wasm module: ${msg}`, { cause: e });
}

/** Runs a wasm call and rethrows its errors as LowbitError. */
export function callWasm<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw toLowbitError(e);
  }
}
