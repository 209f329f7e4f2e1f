/**
 * The shared-memory protocol between a CpuBackend's main thread and its worker threads
 * (pool.ts is the main side, worker.ts the worker side).
 *
 * Control words (Int32Array over a SharedArrayBuffer, `ctl`):
 * - SEQ: bumped by the main thread once per command; workers Atomics.wait on it.
 * - CMD + ARG0..: the command and its arguments, written before SEQ is bumped.
 * - PENDING: workers still busy with the current command; the last one to finish notifies.
 * - one 64-byte slot per worker: its status for the command (OK / ERROR), the byte length of its
 *   error (UTF-8 JSON in the `err` buffer) and, after a BUILD, the bytes its slice holds (f64).
 *
 * Activations and outputs travel through a second SharedArrayBuffer (`data`, f32 / u32 views):
 * x (or token ids) at offset 0, outputs at ARG_OUT. Weight slices and a grown `data` buffer
 * travel by postMessage: the main thread posts one message to every worker, then sends YIELD,
 * which makes each worker return to its event loop, receive the message, handle it, count
 * itself off PENDING and go back to waiting on SEQ.
 */
import { LowbitError, type LowbitErrorCode } from '../../../errors.js';
import type { Absmax4Slice } from '../linear-slice.js';
import type { WasmBuild } from '../../../runtime/wasm.js';

export const SEQ = 0;
export const CMD = 1;
export const PENDING = 2;
export const ARG_ID = 3;
export const ARG_M = 4;
export const ARG_OUT = 5;
/** Int32 index of worker w's slot (w = 1 .. threads - 1); slots are 16 words = 64 bytes. */
export const slot = (w: number): number => 16 * w;
export const SLOT_STATUS = 0;
export const SLOT_ERR_LEN = 1;
/** Float64 index of worker w's "bytes held by its last built slice". */
export const slotBytesF64 = (w: number): number => (slot(w) + 2) / 2;
export const ctlWords = (threads: number): number => slot(threads);

/** Bytes of error text each worker may write. */
export const ERR_BYTES = 4096;

export const enum Cmd {
  /** Return to the event loop to receive one posted message. */
  Yield = 1,
  /** out[m, n] = x[m, k] · W[rows]ᵀ (+ bias): LinearHandle forward. */
  Forward = 2,
  /** out[m, vocab] = x[m, dim] · table[rows]ᵀ: tied-embedding projection. */
  Project = 3,
  /** out[t] = table[ids[t]] for the ids inside the worker's rows (ARG_M = number of ids). */
  Lookup = 4,
  /** Frees handle ARG_ID. */
  Free = 5,
  /** Leave the loop and close the worker (Deno's terminate() cannot interrupt Atomics.wait). */
  Exit = 6,
  /**
   * Forward of the same x through ARG_ID layers (q / k / v, gate / up) in one command: u32 pairs
   * (handle id, output offset) at ARG_OUT.
   */
  ForwardMany = 7,
}

export const STATUS_OK = 0;
export const STATUS_ERROR = 1;

/** Messages posted to workers (each followed by a Yield command, except `init`). */
export type WorkerMessage =
  | { type: 'init'; module: WebAssembly.Module; ctl: SharedArrayBuffer; err: SharedArrayBuffer; data: SharedArrayBuffer; index: number }
  | { type: 'data'; data: SharedArrayBuffer }
  | { type: 'nop' }
  | { type: 'build'; id: number; spec: SliceSpec };

/** A linear layer's rows [rows[0], rows[1]) of an [n, k] weight, one variant per weight format (linear-slice.ts builds it). */
export type LinearSpec = { rows: [number, number]; n: number; k: number; bias?: Float32Array; kernels?: 'fast' | 'exact' } & (
  | { kind: 'linear4'; packed: Uint8Array; scales: Absmax4Slice; quantType: string; blocksize: number; computeDtype?: 'float16' | 'bfloat16' }
  | { kind: 'blockwise8'; q: Uint8Array; absmax: Float32Array; code: Float32Array; blocksize: number }
  | { kind: 'int8'; cb: Int8Array; scb: Float32Array; threshold: number }
  | { kind: 'dense'; data: Float32Array }
  | { kind: 'denseHalf'; data: Uint16Array; dtype: string }
);

/** One thread's slice of a weight, as the worker builds its wasm handle from it. */
export type SliceSpec =
  | LinearSpec
  | ({ rows: [number, number]; n: number; k: number } & ({ kind: 'embedding'; data: Float32Array } | { kind: 'embeddingHalf'; data: Uint16Array; dtype: string }));

/**
 * Replies from workers (only during start-up; everything later goes through `ctl`). `build`: the
 * wasm build the worker instantiated (the pool checks that it is the main thread's).
 */
export type WorkerReply = { type: 'ready'; build: WasmBuild } | { type: 'error'; error: SerializedError };

export interface SerializedError {
  name: string;
  code?: string;
  message: string;
  index?: number;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) {
    const x = e as Error & { code?: string; index?: number };
    return { name: e.name, message: e.message, ...(typeof x.code === 'string' ? { code: x.code } : {}), ...(typeof x.index === 'number' ? { index: x.index } : {}) };
  }
  return { name: 'Error', message: String(e) };
}

/** The error a worker reported, rebuilt as the LowbitError the one-thread path would throw. */
export function deserializeError(s: SerializedError): LowbitError {
  if (s.name === 'LowbitError' && s.code !== undefined) return new LowbitError(s.code as LowbitErrorCode, s.message, s.index === undefined ? undefined : { index: s.index });
  return new LowbitError('INTERNAL', `internal error in a worker thread: ${s.message}`);
}

/** Writes `s` as UTF-8 JSON into `bytes` (a shared view), truncating the message to fit; returns the length. */
export function writeError(bytes: Uint8Array, s: SerializedError): number {
  const enc = new TextEncoder();
  let json = enc.encode(JSON.stringify(s));
  if (json.length > bytes.length) json = enc.encode(JSON.stringify({ ...s, message: s.message.slice(0, bytes.length / 4 - 64) + '…' }));
  bytes.set(json);
  return json.length;
}

export function readError(bytes: Uint8Array, len: number): LowbitError {
  // TextDecoder refuses shared views: copy first.
  const s = JSON.parse(new TextDecoder().decode(bytes.slice(0, len))) as SerializedError;
  return deserializeError(s);
}
