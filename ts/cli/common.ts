/**
 * What the CLI's commands share: exit codes, usage errors, the quantization choices, and how an
 * error is reported (a line on stderr, or a JSON object with --json).
 */
import { LowbitError } from '../errors.js';
import { BitsAndBytesConfig } from '../models/bnb-config.js';

/** Exit codes (README "Command line"): scripts may rely on them. */
export const EXIT = {
  ok: 0,
  /** The command ran and failed: a LowbitError (its code is printed) or another error. */
  failed: 1,
  /** Bad command line: unknown command or option, a missing or malformed value. */
  usage: 2,
  /** Interrupted (SIGINT): generation stopped. */
  interrupted: 130,
} as const;

/** A command-line mistake: reported with the usage hint and exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** --quant values -> the BitsAndBytesConfig each one means (none: weights as stored). */
export const QUANT_CHOICES = {
  none: undefined,
  int8: { loadIn8bit: true },
  fp4: { loadIn4bit: true, bnb4bitQuantType: 'fp4' },
  nf4: { loadIn4bit: true, bnb4bitQuantType: 'nf4' },
  'nf4-dq': { loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true },
} as const;
export type QuantChoice = keyof typeof QUANT_CHOICES;

export function quantChoice(v: string): QuantChoice {
  if (!Object.hasOwn(QUANT_CHOICES, v)) throw new UsageError(`--quant must be one of ${Object.keys(QUANT_CHOICES).join(', ')}, got '${v}'`);
  return v as QuantChoice;
}

export function quantizationConfig(q: QuantChoice): BitsAndBytesConfig | undefined {
  const o = QUANT_CHOICES[q];
  return o === undefined ? undefined : new BitsAndBytesConfig(o);
}

/** A non-negative integer option (or undefined when absent). */
export function intOption(name: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

/** A finite number option (or undefined when absent). */
export function numberOption(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}

export function threadsOption(v: string | undefined): number | 'auto' | undefined {
  if (v === undefined || v === 'auto') return v;
  return intOption('threads', v, 1);
}

/** parseArgs options of the sampling settings (generate, chat). */
export const SAMPLING_ARGS = {
  sample: { type: 'boolean', default: false },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
} as const;

/** The generate() sampling options those give (greedy unless --sample). */
export function samplingOptions(v: { sample?: boolean; temperature?: string; 'top-k'?: string; 'top-p'?: string; seed?: string }): { doSample: boolean; temperature: number; topP: number; topK?: number; seed?: number } {
  const seed = intOption('seed', v.seed);
  const topK = intOption('top-k', v['top-k']);
  return {
    doSample: v.sample === true,
    temperature: numberOption('temperature', v.temperature) ?? 0.7,
    topP: numberOption('top-p', v['top-p']) ?? 0.9,
    ...(topK !== undefined ? { topK } : {}),
    ...(seed !== undefined ? { seed } : {}),
  };
}

/** An abort: the library's ABORTED error (its cause the AbortSignal's reason) or a bare AbortError. */
const isAbort = (e: unknown): boolean => (e instanceof LowbitError && e.code === 'ABORTED') || (e instanceof Error && e.name === 'AbortError');

export function describeError(e: unknown): { code: string; message: string } {
  if (isAbort(e)) return { code: 'INTERRUPTED', message: 'interrupted' };
  if (e instanceof LowbitError) return { code: e.code, message: e.message };
  if (e instanceof UsageError) return { code: 'USAGE', message: e.message };
  return { code: 'INTERNAL', message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
}

export function exitCodeOf(e: unknown): number {
  if (e instanceof UsageError) return EXIT.usage;
  if (isAbort(e)) return EXIT.interrupted;
  return EXIT.failed;
}

export const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
