/**
 * The model worker: runs AutoModelForCausalLM inside a Web Worker for a page (ts/worker/client.ts
 * starts it and speaks ts/worker/protocol.ts with it). One model per worker.
 *
 * Why a worker: on a page's main thread every token's compute blocks the page, and CPU threads
 * make it worse (the main thread may not block in Atomics.wait, so it spins while its helper
 * threads finish: 13 vs 19 tok/s and stalls up to 348 ms in issue 12's measurements). Here the
 * model's own thread may block, so threads: 'auto' runs as in Node: every core up to 8, kept
 * only when a speed test at start-up finds them at least 1.2x as fast as one thread.
 *
 * No top-level await: bundlers build workers as classic scripts by default (vite: iife).
 */
// The libraries lowbit imports lazily, imported statically here: ts/tokenizer loads the tokenizer
// libraries and ts/loading/cache the browser hashes only when needed (a page without a bundler
// needs them only then), and a dynamic import in a worker would make bundlers split it into
// chunks, which the classic (iife) workers they build by default cannot load. Imported here,
// the tokenizer's import() resolves to this same bundle; @noble/hashes declares no side effects
// (a bare import would be dropped), so its functions are handed to the cache directly.
import '@huggingface/tokenizers';
import '@huggingface/jinja';
import { sha256 } from '@noble/hashes/sha2.js';
import { sha1 } from '@noble/hashes/legacy.js';
import { LowbitError } from '../errors.js';
import { provideHashes } from '../loading/cache/digest.js';
import { TextStreamer } from '../generation/streamer.js';
import { resolveSource } from '../loading/sources/resolve.js';
import { AutoModelForCausalLM, planModuleSizes, type FromPretrainedOptions } from '../models/auto.js';
import { quantizationConfig } from '../cli/common.js';
import type { CausalLM, GenerateOptions } from '../models/causal-lm.js';
import { kvCacheBytesPerLayer } from '../models/module-sizes.js';
import type { GenerationStats, MemoryPlan, MemoryPlanRow, PlanQuant, Reply, Request, SerializedError, WorkerModelInfo } from './protocol.js';

interface WorkerScope {
  postMessage(message: unknown): void;
  addEventListener(type: 'message', f: (e: { data: unknown }) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

/** The rows of planMemory: the CLI's --quant choices (fp4 sizes as nf4). */
const PLAN_QUANTS: readonly PlanQuant[] = ['none', 'int8', 'nf4', 'nf4-dq'];

let model: CausalLM | undefined;
/** Abort controllers of the requests in flight. */
const running = new Map<number, AbortController>();

const post = (r: Reply) => scope.postMessage(r);
provideHashes({ sha256, sha1 });

function serialize(e: unknown): SerializedError {
  if (e instanceof LowbitError) return { name: e.name, message: e.message, code: e.code, ...(e.file !== undefined ? { file: e.file } : {}), ...(e.index !== undefined ? { index: e.index } : {}), ...(e.stack ? { stack: e.stack } : {}) };
  if (e instanceof Error) return { name: e.name, message: e.message, ...(e.stack ? { stack: e.stack } : {}) };
  return { name: 'Error', message: String(e) };
}

function loadedModel(): CausalLM {
  if (model === undefined) throw new LowbitError('NOT_INITIALIZED', 'no model is loaded in this worker (it was disposed, or its load failed)');
  return model;
}

function infoOf(m: CausalLM, loadSeconds: number): WorkerModelInfo {
  const cpu = Object.values(m.deviceMap).includes('cpu') ? m.backendOf(Object.entries(m.deviceMap).find(([, d]) => d === 'cpu')![0]) : undefined;
  const c = cpu as { threads?: number; threadsNote?: string; threadSpeedup?: number } | undefined;
  return {
    family: m.config.family,
    numLayers: m.config.numLayers,
    vocabSize: m.config.vocabSize,
    maxPositions: m.maxPositions,
    deviceMap: m.deviceMap,
    memory: m.getMemoryFootprint(),
    formatConversions: [...m.formatConversions],
    threads: c?.threads ?? 1,
    ...(c?.threadsNote !== undefined ? { threadsNote: c.threadsNote } : {}),
    ...(c?.threadSpeedup !== undefined ? { threadSpeedup: c.threadSpeedup } : {}),
    hasTokenizer: m.tokenizer !== undefined,
    ...(m.tokenizerUnavailable !== undefined ? { tokenizerUnavailable: m.tokenizerUnavailable } : {}),
    loadSeconds,
  };
}

async function load(r: Extract<Request, { type: 'load' }>, signal: AbortSignal): Promise<WorkerModelInfo> {
  if (model !== undefined) throw new LowbitError('INVALID_ARGUMENT', 'this worker already holds a model: dispose it first, or start another worker');
  const t0 = performance.now();
  const options: FromPretrainedOptions = { ...(r.options as FromPretrainedOptions), signal };
  if (r.progress) options.onProgress = (event) => post({ type: 'progress', id: r.id, event });
  model = await AutoModelForCausalLM.fromPretrained(r.input as never, options);
  return infoOf(model, (performance.now() - t0) / 1000);
}

/** The loader's size plan (headers only) under each quantization choice: what `lowbit inspect` prints. */
async function plan(r: Extract<Request, { type: 'plan' }>, signal: AbortSignal): Promise<MemoryPlan> {
  const source = await resolveSource(r.input as never, { ...(r.options as object), signal } as never);
  const rows: MemoryPlanRow[] = [];
  let family = '';
  let numLayers = 0;
  let positions = 0;
  for (const quant of PLAN_QUANTS) {
    const q = quantizationConfig(quant);
    const maxPositions = r.options.maxPositions as number | undefined;
    const { config, sizes } = await planModuleSizes(source, { ...(q ? { quantizationConfig: q } : {}), ...(maxPositions !== undefined ? { maxPositions } : {}), signal });
    family = config.family;
    numLayers = config.numLayers;
    positions = maxPositions ?? Math.min(config.maxPositions, 4096);
    const total = sizes.reduce((a, m) => a + m.bytes, 0);
    // the plan counts each layer's KV cache with the layer
    const kv = config.numLayers * kvCacheBytesPerLayer(config, positions);
    rows.push({ quant, weightsBytes: total - kv, kvCacheBytes: kv, totalBytes: total });
  }
  return { family, numLayers, maxPositions: positions, rows };
}

async function generate(r: Extract<Request, { type: 'generate' }>, signal: AbortSignal): Promise<{ ids: number[]; stats: GenerationStats }> {
  const m = loadedModel();
  const t0 = performance.now();
  let first = 0;
  let last = 0;
  let count = 0;
  const text = r.text ? new TextStreamer(requireTokenizer(m), (piece) => piece && post({ type: 'text', id: r.id, text: piece }), { skipSpecialTokens: r.skipSpecialTokens }) : undefined;
  const options: GenerateOptions = {
    ...(r.options as GenerateOptions),
    signal,
    streamer: {
      put(ids) {
        const now = performance.now();
        if (count === 0) first = now;
        last = now;
        count += ids.length;
        if (r.tokens) post({ type: 'tokens', id: r.id, ids: [...ids] });
        text?.put(ids);
      },
      end() {
        text?.end();
      },
    },
    onDeviceLost: (info) => post({ type: 'device-lost', id: r.id, info }),
  };
  const ids = await m.generate(options);
  const end = performance.now();
  const promptTokens = promptLength(m, r.options);
  return {
    ids,
    stats: {
      promptTokens,
      newTokens: ids.length,
      firstTokenSeconds: count > 0 ? (first - t0) / 1000 : 0,
      totalSeconds: (end - t0) / 1000,
      decodeTokensPerSecond: count > 1 && last > first ? ((count - 1) * 1000) / (last - first) : 0,
    },
  };
}

function requireTokenizer(m: CausalLM) {
  if (m.tokenizer === undefined) throw new LowbitError('INVALID_ARGUMENT', `text streaming needs a tokenizer, and this model has none (${m.tokenizerUnavailable ?? 'none was found'})`);
  return m.tokenizer;
}

/** The prompt's token count, for the stats (as generate encodes it). */
function promptLength(m: CausalLM, o: Record<string, unknown>): number {
  if (o.inputIds !== undefined) return (o.inputIds as ArrayLike<number>).length;
  const t = m.tokenizer;
  if (t === undefined) return 0;
  if (typeof o.prompt === 'string') return t.encode(o.prompt).length;
  if (Array.isArray(o.messages)) return t.applyChatTemplate(o.messages as never, { addGenerationPrompt: true, tokenize: true }).length;
  return 0;
}

async function handle(r: Request): Promise<unknown> {
  switch (r.type) {
    case 'load':
    case 'plan':
    case 'generate': {
      const controller = new AbortController();
      running.set(r.id, controller);
      try {
        if (r.type === 'load') return await load(r, controller.signal);
        if (r.type === 'plan') return await plan(r, controller.signal);
        return await generate(r, controller.signal);
      } finally {
        running.delete(r.id);
      }
    }
    case 'abort':
      running.get(r.id)?.abort(new DOMException(r.reason, 'AbortError'));
      return undefined;
    case 'decode':
      return requireTokenizer(loadedModel()).decode(r.ids, { skipSpecialTokens: r.skipSpecialTokens });
    case 'footprint':
      return loadedModel().getMemoryFootprint();
    case 'dispose':
      model?.dispose();
      model = undefined;
      return undefined;
  }
}

scope.addEventListener('message', (e) => {
  const r = e.data as Request;
  handle(r).then(
    (value) => r.type !== 'abort' && post({ type: 'done', id: r.id, value }),
    (error: unknown) => post({ type: 'error', id: r.id, error: serialize(error) }),
  );
});
