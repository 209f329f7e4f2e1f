/**
 * Messages between a page and the model worker (ts/worker/model-worker.ts). Everything here is
 * structured-cloneable: functions (onProgress, streamers, onToken) and AbortSignals stay on the
 * page and are replaced by messages; a BitsAndBytesConfig crosses as its plain fields, which
 * fromPretrained accepts.
 */
import type { LowbitErrorCode } from '../errors.js';
import type { ProgressEvent } from '../loading/sources/progress.js';
import type { MemoryFootprint } from '../models/causal-lm.js';

/** A model source that can be posted to a worker: an http(s) URL or hub id, a Blob / File, File[] or Map<string, Blob>. */
export type WorkerSourceInput = string | Blob | readonly Blob[] | ReadonlyMap<string, Blob>;

/** The quantization choices the memory plan compares (the CLI's --quant values). */
export type PlanQuant = 'none' | 'int8' | 'nf4' | 'nf4-dq';

/** One row of planMemory: the bytes the loader plans for the model under one quantization choice. */
export interface MemoryPlanRow {
  quant: PlanQuant;
  weightsBytes: number;
  kvCacheBytes: number;
  totalBytes: number;
}

export interface MemoryPlan {
  family: string;
  numLayers: number;
  maxPositions: number;
  /** none (weights as the loader holds them unquantized), int8, nf4, nf4-dq */
  rows: MemoryPlanRow[];
}

/** What the page learns about a loaded model (CausalLM's fields that do not need the model object). */
export interface WorkerModelInfo {
  family: string;
  numLayers: number;
  vocabSize: number;
  maxPositions: number;
  /** module -> 'cpu' | 'webgpu' */
  deviceMap: Record<string, string>;
  memory: MemoryFootprint;
  formatConversions: string[];
  threads: number;
  threadsNote?: string;
  threadSpeedup?: number;
  /** Whether the model has a tokenizer (prompt / messages / text streaming need one). */
  hasTokenizer: boolean;
  tokenizerUnavailable?: string;
  loadSeconds: number;
}

/** Timing of one generate call, measured in the worker. */
export interface GenerationStats {
  promptTokens: number;
  newTokens: number;
  /** From the call to the first new token (prefill + first step), seconds. */
  firstTokenSeconds: number;
  totalSeconds: number;
  /** New tokens after the first, per second of the time after the first (0 with fewer than 2 tokens). */
  decodeTokensPerSecond: number;
}

export interface SerializedError {
  name: string;
  message: string;
  code?: LowbitErrorCode;
  file?: string;
  index?: number;
  stack?: string;
}

/** Page -> worker. `id` pairs a request with its replies. */
export type Request =
  | { type: 'load'; id: number; input: WorkerSourceInput; options: Record<string, unknown>; progress: boolean }
  | { type: 'plan'; id: number; input: WorkerSourceInput; options: Record<string, unknown> }
  | { type: 'generate'; id: number; options: Record<string, unknown>; text: boolean; tokens: boolean; skipSpecialTokens: boolean }
  | { type: 'decode'; id: number; ids: number[]; skipSpecialTokens: boolean }
  | { type: 'abort'; id: number; reason: string }
  | { type: 'footprint'; id: number }
  | { type: 'dispose'; id: number };

/** Worker -> page. */
export type Reply =
  | { type: 'progress'; id: number; event: ProgressEvent }
  | { type: 'tokens'; id: number; ids: number[] }
  | { type: 'text'; id: number; text: string }
  | { type: 'device-lost'; id: number; info: { reason: string; message: string; modules: string[] } }
  | { type: 'done'; id: number; value: unknown }
  | { type: 'error'; id: number; error: SerializedError };
