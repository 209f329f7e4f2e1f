/**
 * generate() / forward() arguments, checked before anything runs: token ids are integers in
 * [0, vocab) (nothing is coerced — '12', 1.7, NaN or 2**32 + 1 are refused, not read as other
 * ids), and every option has the type it is used as, so a caller's mistake is an
 * INVALID_ARGUMENT naming the option rather than a TypeError from deep inside.
 */
import { LowbitError } from '../errors.js';
import { checkSignal, show, typeName } from './validate.js';

const bad = (m: string): never => {
  throw new LowbitError('INVALID_ARGUMENT', m);
};

/** Token ids as a Uint32Array; INVALID_ARGUMENT unless an array / typed array of integers in [0, vocab). */
export function checkTokenIds(ids: unknown, vocabSize: number, what = 'inputIds'): Uint32Array {
  const arrayLike = Array.isArray(ids) || (ArrayBuffer.isView(ids) && !(ids instanceof DataView));
  if (!arrayLike) bad(`${what} must be an array of token ids, got ${typeName(ids)}`);
  const a = ids as ArrayLike<unknown>;
  const out = new Uint32Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= vocabSize) {
      bad(`${what}[${i}] = ${typeof v === 'string' ? show(v) : String(v)} is not a token id: ids must be integers in [0, ${vocabSize})`);
    }
    out[i] = n as number;
  }
  return out;
}

const isFunction = (v: unknown) => typeof v === 'function';

/** The shape of generate()'s options (values are checked where they are used: sampling, maxNewTokens, ids). */
export function checkGenerateOptions(o: unknown): void {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) bad(`generate() takes an options object ({ inputIds | prompt | messages, … }), got ${typeName(o)}`);
  const g = o as Record<string, unknown>;
  checkSignal(g.signal, 'generate');
  if (g.prompt !== undefined && typeof g.prompt !== 'string') bad(`prompt must be a string, got ${typeName(g.prompt)}`);
  if (g.messages !== undefined) {
    if (!Array.isArray(g.messages)) bad(`messages must be an array of { role, content }, got ${typeName(g.messages)}`);
    for (const [i, m] of (g.messages as unknown[]).entries()) {
      if (typeof m !== 'object' || m === null || typeof (m as { role?: unknown }).role !== 'string') bad(`messages[${i}] must be { role: string, content }, got ${show(m)}`);
    }
  }
  const t = g.tokenizer;
  if (t !== undefined && (typeof t !== 'object' || t === null || !isFunction((t as { encode?: unknown }).encode) || !isFunction((t as { decode?: unknown }).decode))) {
    bad('tokenizer must be a lowbit Tokenizer (AutoTokenizer.fromPretrained), with encode / decode / applyChatTemplate');
  }
  if (g.messages !== undefined && t !== undefined && !isFunction((t as { applyChatTemplate?: unknown }).applyChatTemplate)) bad('generate({ messages }) needs a tokenizer with applyChatTemplate');
  if (g.onToken !== undefined && !isFunction(g.onToken)) bad(`onToken must be a function, got ${typeName(g.onToken)}`);
  if (g.onDeviceLost !== undefined && !isFunction(g.onDeviceLost)) bad(`onDeviceLost must be a function, got ${typeName(g.onDeviceLost)}`);
  const s = g.streamer;
  if (s !== undefined && (typeof s !== 'object' || s === null || !isFunction((s as { put?: unknown }).put) || !isFunction((s as { end?: unknown }).end))) bad('streamer must have put(ids) and end() (e.g. a TextStreamer)');
  if (g.stop !== undefined && typeof g.stop !== 'string' && !Array.isArray(g.stop)) bad(`stop must be a string or an array of strings, got ${typeName(g.stop)}`);
  if (g.eosTokenIds !== undefined) {
    if (!Array.isArray(g.eosTokenIds) || !g.eosTokenIds.every((x) => Number.isInteger(x) && (x as number) >= 0)) bad(`eosTokenIds must be an array of integer token ids, got ${show(g.eosTokenIds)}`);
  }
  if (g.onPrefill !== undefined && !isFunction(g.onPrefill)) bad(`onPrefill must be a function, got ${typeName(g.onPrefill)}`);
  for (const k of ['doSample', 'reuseCache'] as const) if (g[k] !== undefined && typeof g[k] !== 'boolean') bad(`${k} must be true or false, got ${typeName(g[k])}`);
  for (const k of ['temperature', 'topK', 'topP', 'repetitionPenalty', 'seed', 'maxNewTokens'] as const) {
    if (g[k] !== undefined && typeof g[k] !== 'number') bad(`${k} must be a number, got ${typeName(g[k])}`);
  }
}
