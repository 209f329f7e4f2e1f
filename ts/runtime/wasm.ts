/**
 * Loads the wasm module once, in any runtime:
 * - Node and Deno read the .wasm file next to this module from disk;
 * - browsers fetch it (bundlers such as vite see `new URL(..., import.meta.url)` and ship it);
 * - or the caller passes the bytes, a Response, a URL or a compiled WebAssembly.Module.
 */
import initWasm, * as bindings from '../wasm/pkg/lowbit_wasm.js';
import { LowbitError } from '../errors.js';

export type WasmSource = BufferSource | WebAssembly.Module | Response | URL | string;

let ready: Promise<void> | undefined;
let loaded = false;
let compiled: WebAssembly.Module | undefined;

function isServerRuntime(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; Deno?: unknown };
  return g.Deno !== undefined || g.process?.versions?.node !== undefined;
}

async function readLocal(url: URL): Promise<Uint8Array> {
  // A computed specifier keeps browser bundlers from trying to resolve node:fs.
  const fsModule = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ fsModule)) as { readFile(u: URL): Promise<Uint8Array> };
  return fs.readFile(url);
}

/** A Response's body compiled (streaming when the server says application/wasm). */
async function compileResponse(r: Response): Promise<WebAssembly.Module> {
  if (!r.ok) throw new Error(`failed to fetch Wasm: ${r.status} ${r.statusText} fetching '${r.url}'`);
  if (typeof WebAssembly.compileStreaming === 'function' && r.headers.get('Content-Type') === 'application/wasm') return WebAssembly.compileStreaming(r);
  return WebAssembly.compile(await r.arrayBuffer());
}

/** Any WasmSource as a compiled module (kept so that worker threads can instantiate it too). */
async function compile(input: WasmSource): Promise<WebAssembly.Module> {
  if (input instanceof WebAssembly.Module) return input;
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) return WebAssembly.compile(input);
  if (typeof Response === 'function' && input instanceof Response) return compileResponse(input);
  return compileResponse(await fetch(input as URL | string));
}

/**
 * Loads and instantiates the wasm module. Call (and await) once before any other function;
 * later calls return the same promise.
 */
export function init(source?: WasmSource): Promise<void> {
  ready ??= (async () => {
    try {
      let input: WasmSource;
      if (source !== undefined) input = source;
      else {
        const url = new URL('../wasm/pkg/lowbit_wasm_bg.wasm', import.meta.url);
        input = isServerRuntime() && url.protocol === 'file:' ? await readLocal(url) : url;
      }
      const module = await compile(input);
      await initWasm({ module_or_path: module });
      compiled = module;
      loaded = true;
    } catch (e) {
      ready = undefined;
      throw new LowbitError('WASM_LOAD_FAILED', `could not load lowbit's wasm module: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  })();
  return ready;
}

/** The wasm bindings; throws NOT_INITIALIZED before init() has finished. */
export function wasm(): typeof bindings {
  if (!loaded) throw new LowbitError('NOT_INITIALIZED', "lowbit is not initialized: call `await init()` first");
  return bindings;
}

/** The compiled module init() instantiated (worker threads instantiate it again). */
export function wasmModule(): WebAssembly.Module {
  if (compiled === undefined) throw new LowbitError('NOT_INITIALIZED', "lowbit is not initialized: call `await init()` first");
  return compiled;
}

/** Whether this build runs the SIMD128 kernels (every release build does). */
export function simd128Available(): boolean {
  return wasm().simd128Available();
}
