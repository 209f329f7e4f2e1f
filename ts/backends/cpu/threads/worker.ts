/**
 * A CpuBackend worker thread (Node worker_threads, Deno and browser module workers): its own
 * instance of the wasm module, the weight slices it was given, and a loop that waits on the
 * shared control words for commands (protocol.ts) and computes its rows of each output.
 */
import { callWasm } from '../../../errors.js';
import { init, wasm, wasmBuild } from '../../../runtime/wasm.js';
import type { Embedding, Linear } from '../../../wasm/pkg/lowbit_wasm.js';
import {
  ARG_ID, ARG_M, ARG_OUT, CMD, Cmd, ERR_BYTES, PENDING, SEQ, SLOT_ERR_LEN, SLOT_STATUS, STATUS_ERROR, STATUS_OK,
  serializeError, slot, slotBytesF64, writeError, type SliceSpec, type WorkerMessage, type WorkerReply,
} from './protocol.js';
import { newLinear } from '../linear-slice.js';

interface Part {
  obj: Linear | Embedding;
  /** First and one-past-last row of the full weight that this slice holds. */
  r0: number;
  r1: number;
  /** Full output width (rows of the whole weight) and input width. */
  n: number;
  k: number;
}

interface Port {
  post(m: WorkerReply): void;
}

const parts = new Map<number, Part>();
let ctl: Int32Array;
let bytesF64: Float64Array;
let errBytes: Uint8Array;
let f32: Float32Array;
let u32: Uint32Array;
let index = 0;
/** The last SEQ this worker has taken up. */
let seen = 0;

function setData(data: SharedArrayBuffer): void {
  f32 = new Float32Array(data);
  u32 = new Uint32Array(data);
}

function build(id: number, s: SliceSpec): void {
  const w = wasm();
  const obj = callWasm(() => {
    switch (s.kind) {
      case 'embedding':
        return new w.Embedding(s.data, s.rows[1] - s.rows[0], s.k);
      case 'embeddingHalf':
        return w.Embedding.fromHalf(s.data, s.dtype, s.rows[1] - s.rows[0], s.k);
      default:
        return newLinear(w, s);
    }
  });
  parts.get(id)?.obj.free();
  parts.set(id, { obj, r0: s.rows[0], r1: s.rows[1], n: s.n, k: s.k });
  bytesF64[slotBytesF64(index)] = obj.bytes();
}

/** Copies this slice's [m, r1 - r0] result into the shared [m, n] output. */
function scatter(y: Float32Array, p: Part, m: number, out: number): void {
  const w = p.r1 - p.r0;
  if (m === 1) f32.set(y, out + p.r0);
  else for (let i = 0; i < m; i++) f32.set(y.subarray(i * w, (i + 1) * w), out + i * p.n + p.r0);
}

function execute(cmd: number): void {
  if (cmd === Cmd.ForwardMany) {
    const [count, m, pairs] = [ctl[ARG_ID]!, ctl[ARG_M]!, ctl[ARG_OUT]!];
    const mine: [Part, number][] = [];
    for (let j = 0; j < count; j++) {
      const p = parts.get(u32[pairs + 2 * j]!);
      if (p !== undefined) mine.push([p, u32[pairs + 2 * j + 1]!]);
    }
    if (mine.length === 0) return;
    // the layers read the same x (one k): one wasm copy, quantized once for them all
    const x = f32.subarray(0, m * mine[0]![0].k);
    const input = mine.length > 1 ? callWasm(() => new (wasm().Input)(x, m)) : undefined;
    try {
      for (const [p, out] of mine) {
        const l = p.obj as Linear;
        scatter(callWasm(() => (input === undefined ? l.forward(x, m) : l.forwardInput(input))), p, m, out);
      }
    } finally {
      input?.free();
    }
    return;
  }
  const p = parts.get(ctl[ARG_ID]!);
  if (cmd === Cmd.Free) {
    p?.obj.free();
    parts.delete(ctl[ARG_ID]!);
    return;
  }
  if (p === undefined) return; // no rows of this weight here
  const m = ctl[ARG_M]!;
  const out = ctl[ARG_OUT]!;
  if (cmd === Cmd.Forward || cmd === Cmd.Project) {
    const x = f32.subarray(0, m * p.k);
    const y = callWasm(() => (cmd === Cmd.Forward ? (p.obj as Linear).forward(x, m) : (p.obj as Embedding).project(x, m)));
    scatter(y, p, m, out);
  } else if (cmd === Cmd.Lookup) {
    // m = number of ids (already checked against the vocabulary); rows of ours only
    const at: number[] = [];
    const local: number[] = [];
    for (let t = 0; t < m; t++) {
      const id = u32[t]!;
      if (id >= p.r0 && id < p.r1) {
        at.push(t);
        local.push(id - p.r0);
      }
    }
    if (at.length === 0) return;
    const rows = callWasm(() => (p.obj as Embedding).lookup(Uint32Array.from(local)));
    for (let j = 0; j < at.length; j++) f32.set(rows.subarray(j * p.k, (j + 1) * p.k), out + at[j]! * p.k);
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
}

/** Records this worker's outcome for the current command and counts it off PENDING. */
function finish(error?: unknown): void {
  const s = slot(index);
  if (error === undefined) ctl[s + SLOT_STATUS] = STATUS_OK;
  else {
    ctl[s + SLOT_ERR_LEN] = writeError(errBytes.subarray(index * ERR_BYTES, (index + 1) * ERR_BYTES), serializeError(error));
    ctl[s + SLOT_STATUS] = STATUS_ERROR;
  }
  if (Atomics.sub(ctl, PENDING, 1) === 1) Atomics.notify(ctl, PENDING);
}

/** How this worker closes itself (runtime-specific, set at start-up). */
let close: () => void = () => {};

/** Waits for and runs commands until one says Yield (then returns to the event loop) or Exit. */
function serve(): void {
  for (;;) {
    Atomics.wait(ctl, SEQ, seen); // no spin: see pool.ts
    const s = Atomics.load(ctl, SEQ);
    if (s === seen) continue;
    seen = s;
    const cmd = Atomics.load(ctl, CMD);
    if (cmd === Cmd.Yield) return; // the posted message's handler calls finish()
    if (cmd === Cmd.Exit) {
      close();
      return;
    }
    try {
      execute(cmd);
      finish();
    } catch (e) {
      finish(e);
    }
  }
}

async function onMessage(m: WorkerMessage, p: Port): Promise<void> {
  if (m.type === 'init') {
    try {
      await init(m.module);
      ctl = new Int32Array(m.ctl);
      bytesF64 = new Float64Array(m.ctl);
      errBytes = new Uint8Array(m.err);
      setData(m.data);
      index = m.index;
      seen = Atomics.load(ctl, SEQ);
      p.post({ type: 'ready', build: wasmBuild() });
    } catch (e) {
      p.post({ type: 'error', error: serializeError(e) });
      return;
    }
    serve();
    return;
  }
  try {
    if (m.type === 'build') build(m.id, m.spec);
    else if (m.type === 'data') setData(m.data);
    finish();
  } catch (e) {
    finish(e);
  }
  serve();
}

/**
 * Starts listening. Browsers and Deno: synchronously, at module evaluation, so that no message
 * posted while the module loaded is missed. Node: after importing node:worker_threads (its
 * parentPort queues messages until a listener is attached). No top-level await: bundlers build
 * this file as a classic (iife) worker by default, and that format has none (vite's default).
 */
async function main(): Promise<void> {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: string } } };
  if (g.Deno === undefined && typeof g.process?.versions?.node === 'string') {
    // A computed specifier keeps browser bundlers from resolving node:worker_threads.
    const spec = 'node:worker_threads';
    const { parentPort } = (await import(/* @vite-ignore */ spec)) as typeof import('node:worker_threads');
    if (!parentPort) throw new Error('worker.js must run in a worker thread');
    const p: Port = { post: (m) => parentPort.postMessage(m) };
    close = () => parentPort.close();
    parentPort.on('message', (m: WorkerMessage) => void onMessage(m, p));
  } else {
    const self = globalThis as unknown as { postMessage(m: unknown): void; close(): void; addEventListener(t: 'message', f: (e: MessageEvent) => void): void };
    const p: Port = { post: (m) => self.postMessage(m) };
    close = () => self.close();
    self.addEventListener('message', (e) => void onMessage(e.data as WorkerMessage, p));
  }
}

main().catch((e: unknown) => {
  // An uncaught error inside the worker: the pool sees it as the worker's 'error' event.
  setTimeout(() => {
    throw e;
  });
});
