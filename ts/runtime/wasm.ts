/**
 * Loads the wasm module once, in any runtime:
 * - Node and Deno read the .wasm file next to this module from disk;
 * - browsers fetch it (bundlers such as vite see `new URL(..., import.meta.url)` and ship it);
 * - or the caller passes the bytes, a Response, a URL or a compiled WebAssembly.Module.
 *
 * There are two builds of the module with the same exports and one JS glue (scripts/build.sh):
 * SIMD128 (lowbit_wasm_bg.wasm, every current engine) and SIMD128 + relaxed SIMD
 * (lowbit_wasm_relaxed_bg.wasm). A module containing a relaxed instruction does not even
 * validate on an engine without relaxed SIMD (Node 20, Safari), so init() tests for it first
 * (relaxedSimdSupported()) and loads the relaxed build only where it validates.
 */
import initWasm, * as bindings from '../wasm/pkg/lowbit_wasm.js';
import { LowbitError } from '../errors.js';

export type WasmSource = BufferSource | WebAssembly.Module | Response | URL | string;

/** The two wasm builds. */
export type WasmBuild = 'simd128' | 'relaxed-simd';

/**
 * Which build init() loads: 'auto' (default) the relaxed-SIMD one where the engine supports it,
 * else SIMD128; 'relaxed' or 'simd128' force one ('relaxed' throws WASM_LOAD_FAILED where the
 * engine cannot run it). In Node and Deno the environment variable LOWBIT_WASM_BUILD
 * ('auto' | 'relaxed' | 'relaxed-simd' | 'simd128') sets the default.
 */
export type WasmBuildChoice = 'auto' | 'relaxed' | 'simd128';

export interface InitOptions {
  /** Which build to load (default 'auto', or LOWBIT_WASM_BUILD). */
  simd?: WasmBuildChoice;
  /** Load this module instead of the packaged build (its build is then whatever it is). */
  source?: WasmSource;
}

let ready: Promise<void> | undefined;
let loaded = false;
let compiled: WebAssembly.Module | undefined;

function isServerRuntime(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; Deno?: unknown };
  return g.Deno !== undefined || g.process?.versions?.node !== undefined;
}

/**
 * A module of one function (v128, v128, v128) -> v128 whose body is
 * `i32x4.relaxed_dot_i8x16_i7x16_add_s` (0xfd 0x113): it validates exactly where relaxed SIMD
 * is on, and it is the instruction the relaxed build's integer-dot kernels rely on.
 */
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b, // type section: (v128 v128 v128) -> v128
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x0a, 0x0d, 0x01, 0x0b, 0x00, // code section: one body of 11 bytes, no locals
  0x20, 0x00, 0x20, 0x01, 0x20, 0x02, // local.get 0, 1, 2
  0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s (LEB128 0x113)
  0x0b, // end
]);

let relaxedSupported: boolean | undefined;
/** Whether this engine runs relaxed SIMD (validates a tiny module that uses it; cached). */
export function relaxedSimdSupported(): boolean {
  relaxedSupported ??= typeof WebAssembly === 'object' && WebAssembly.validate(RELAXED_SIMD_PROBE);
  return relaxedSupported;
}

/** LOWBIT_WASM_BUILD in Node / Deno (undefined in browsers or without permission to read it). */
function envChoice(): string | undefined {
  const g = globalThis as { process?: { env?: Record<string, string | undefined> }; Deno?: { env?: { get(k: string): string | undefined } } };
  try {
    if (g.Deno !== undefined) return g.Deno.env?.get('LOWBIT_WASM_BUILD');
    return g.process?.env?.LOWBIT_WASM_BUILD;
  } catch {
    return undefined; // Deno without --allow-env
  }
}

function parseChoice(v: string, from: string): WasmBuildChoice {
  if (v === 'auto' || v === 'simd128' || v === 'relaxed') return v;
  if (v === 'relaxed-simd') return 'relaxed';
  throw new LowbitError('INVALID_ARGUMENT', `${from} must be 'auto', 'relaxed' or 'simd128', got '${v}'`);
}

/** The packaged build to load for `choice`; throws where a forced relaxed build cannot run. */
function pickBuild(choice: WasmBuildChoice): WasmBuild {
  if (choice === 'simd128') return 'simd128';
  if (relaxedSimdSupported()) return 'relaxed-simd';
  if (choice === 'relaxed') {
    throw new LowbitError('WASM_LOAD_FAILED', "the relaxed-SIMD build was requested but this engine has no relaxed SIMD (Chrome 114+, Firefox 145+, Node 21+, Deno 1.33+ have it); use simd: 'simd128' or 'auto'");
  }
  return 'simd128';
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

function isWasmSource(v: unknown): boolean {
  return (
    typeof v === 'string' ||
    v instanceof URL ||
    v instanceof WebAssembly.Module ||
    v instanceof ArrayBuffer ||
    ArrayBuffer.isView(v) ||
    (typeof SharedArrayBuffer === 'function' && v instanceof SharedArrayBuffer) ||
    (typeof Response === 'function' && v instanceof Response)
  );
}

/** The packaged .wasm of `build` (both URLs written out literally, so that bundlers ship both). */
function packagedUrl(build: WasmBuild): URL {
  return build === 'relaxed-simd' ? new URL('../wasm/pkg/lowbit_wasm_relaxed_bg.wasm', import.meta.url) : new URL('../wasm/pkg/lowbit_wasm_bg.wasm', import.meta.url);
}

/**
 * Loads and instantiates the wasm module. Call (and await) once before any other function;
 * later calls return the same promise (whatever they ask for: one build per process).
 *
 *   await init();                        // the fastest build this engine runs
 *   await init({ simd: 'simd128' });     // force a build
 *   await init(bytesOrUrlOrModule);      // a module of your own (same as { source })
 */
export function init(options?: WasmSource | InitOptions): Promise<void> {
  // A failed init() may be retried (with other options): forget its promise once it has failed.
  ready ??= load(options).catch((e: unknown) => {
    ready = undefined;
    throw e;
  });
  return ready;
}

/** What init() does once: pick the build, compile and instantiate it, check what it reports. */
async function load(options: WasmSource | InitOptions | undefined): Promise<void> {
  try {
    let source: WasmSource | undefined;
    let choice: WasmBuildChoice;
    if (options === undefined || isWasmSource(options)) {
      source = options as WasmSource | undefined;
      choice = 'auto';
    } else if (typeof options === 'object' && options !== null) {
      const o = options as InitOptions;
      source = o.source;
      choice = parseChoice(String(o.simd ?? 'auto'), 'init({ simd })');
    } else {
      throw new LowbitError('INVALID_ARGUMENT', `init() takes a wasm source or { simd, source }, got ${typeof options}`);
    }
    let input: WasmSource;
    let expected: WasmBuild | undefined;
    if (source !== undefined) input = source;
    else {
      const env = envChoice();
      if (choice === 'auto' && env !== undefined && env !== '') choice = parseChoice(env, 'LOWBIT_WASM_BUILD');
      expected = pickBuild(choice);
      const url = packagedUrl(expected);
      input = isServerRuntime() && url.protocol === 'file:' ? await readLocal(url) : url;
    }
    const module = await compile(input);
    await initWasm({ module_or_path: module });
    const running: WasmBuild = bindings.relaxedSimdAvailable() ? 'relaxed-simd' : 'simd128';
    if (expected !== undefined && running !== expected) {
      throw new Error(`the packaged ${expected} module reports that it is the ${running} build: rebuild with scripts/build.sh`);
    }
    compiled = module;
    build = running;
    loaded = true;
  } catch (e) {
    if (e instanceof LowbitError) throw e;
    throw new LowbitError('WASM_LOAD_FAILED', `could not load lowbit's wasm module: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

let build: WasmBuild | undefined;

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

/** Which build init() loaded, as the module itself reports it ('relaxed-simd' or 'simd128'). */
export function wasmBuild(): WasmBuild {
  wasm();
  return build!;
}

/** Whether this build runs the SIMD128 kernels (every release build does). */
export function simd128Available(): boolean {
  return wasm().simd128Available();
}
