/**
 * deviceMap → where each module of a model runs, as in transformers / accelerate:
 *
 * - 'cpu' | 'gpu' | { '': 'cpu' | 'gpu' }: the whole model on one device.
 * - a per-module map { 'model.embed_tokens': 'cpu', 'model.layers.0': 'gpu', …, 'lm_head': 'gpu' }:
 *   each module takes the value of the longest key that is its name or a dotted prefix of it
 *   ('' covers everything); every module must be covered, and every key must name a module.
 * - 'auto': modules in order (embeddings, decoder layers, final norm, lm_head) go on the GPU
 *   while they fit in its budget; from the first one that does not, the rest go on the CPU
 *   (accelerate's infer_auto_device_map fills devices in order the same way and never goes
 *   back). A tied lm_head shares the embedding's weight, so it goes with the embedding
 *   (accelerate keeps tied parameters together). Without a WebGPU adapter, 'auto' is all CPU.
 *
 * Sizes come from tensor metadata and the quantization choice before any weight is read
 * (moduleSizes); a model that does not fit within the budgets is refused with OUT_OF_MEMORY
 * before anything is allocated.
 */
import type { Backend } from '../backends/backend.js';
import { CpuBackend } from '../backends/cpu/index.js';
import { WebGpuBackend, type WebGpuBackendOptions } from '../backends/webgpu/index.js';
import { LowbitError } from '../errors.js';
import type { DecoderConfig } from './config.js';

export type Device = 'cpu' | 'gpu';
export type DeviceMap = 'auto' | Device | Record<string, Device>;

/** Byte budgets per device: a number of bytes or a string such as '2GiB', '512MB', '300 KiB'. */
export interface MaxMemory {
  gpu?: number | string;
  cpu?: number | string;
}

export interface BackendOptions {
  deviceMap?: DeviceMap;
  /** Budgets for deviceMap 'auto' (and a check for explicit maps when given). See defaultGpuBudget. */
  maxMemory?: MaxMemory;
  /** A backend to build on (overrides deviceMap; the caller keeps ownership). */
  backend?: Backend;
  /** For deviceMap 'gpu' / 'auto' / maps naming 'gpu': a navigator.gpu-like object (Node: `create([])` from the `webgpu` package). */
  gpu?: GPU;
  /** WebGPU backend options for the GPU backend fromPretrained makes. */
  webgpu?: Omit<WebGpuBackendOptions, 'gpu'>;
  /** Threads of the CPU backend fromPretrained makes: 'auto' (default: every core where threads work) or a count; 1 = one thread. */
  threads?: number | 'auto';
  /**
   * 4-bit kernels of the CPU backend fromPretrained makes: 'fast' (default; int8 activations and
   * integer dot products) or 'exact' (f32, equal to dequantize-then-matmul). See CpuBackendOptions.kernels.
   */
  cpuKernels?: 'fast' | 'exact';
  /**
   * Keep the host copy of GPU modules' weights so that generation can go on on the CPU when the
   * GPU device is lost (default true; costs host memory about the size of those weights).
   */
  keepHostWeights?: boolean;
}

const bad = (m: string): never => {
  throw new LowbitError('INVALID_ARGUMENT', m);
};

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

/** 1024, '2GiB', '1.5 GB', '300KiB' → bytes (decimal KB/MB/GB, binary KiB/MiB/GiB, as accelerate). */
export function parseBytes(v: number | string, what: string): number {
  if (typeof v === 'number') {
    if (!(Number.isFinite(v) && v >= 0)) bad(`${what} must be a non-negative number of bytes, got ${v}`);
    return Math.floor(v);
  }
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(v) : null;
  if (!m) return bad(`${what} must be bytes or a size like '2GiB' / '512MB', got ${JSON.stringify(v)}`);
  return Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'B').toUpperCase()]!);
}

/**
 * The GPU budget 'auto' uses when maxMemory.gpu is not given. WebGPU does not report how much
 * memory a device has; the adapter's maxBufferSize (the largest single buffer it promises) is
 * the one size it does state, so it is the default: conservative on discrete GPUs (often 2–4
 * GiB of a larger card), and it keeps a model within what the implementation accepts at once.
 */
export function defaultGpuBudget(gpu: WebGpuBackend): number {
  return gpu.maxBufferSize;
}

/** Checks a deviceMap's shape (values 'cpu' / 'gpu'); modules are checked by planDevices. */
export function checkDeviceMap(d: DeviceMap | undefined): void {
  if (d === undefined || d === 'auto' || d === 'cpu' || d === 'gpu') return;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) bad(`deviceMap must be 'auto', 'cpu', 'gpu' or { module: 'cpu' | 'gpu' }, got ${JSON.stringify(d)}`);
  for (const [k, v] of Object.entries(d)) if (v !== 'cpu' && v !== 'gpu') bad(`deviceMap['${k}'] must be 'cpu' or 'gpu', got ${JSON.stringify(v)}`);
  if (Object.keys(d).length === 0) bad('deviceMap is an empty object: name a device for every module (or { "": "cpu" })');
}

/** Whether a deviceMap may put something on the GPU. */
export function wantsGpu(d: DeviceMap | undefined): boolean {
  if (d === undefined || d === 'cpu') return false;
  if (d === 'auto' || d === 'gpu') return true;
  return Object.values(d).includes('gpu');
}

/** A module of a model: its name (transformers'), its estimated bytes, and for a tied lm_head the table it shares. */
export interface ModuleSize {
  name: string;
  bytes: number;
  /** A tied lm_head: the module whose weight it uses (it needs a copy of that weight elsewhere). */
  tiedTo?: string;
}

/** Module names in the order a forward pass runs them. */
export function moduleNames(config: DecoderConfig): string[] {
  const layers = Array.from({ length: config.numLayers }, (_, i) => (config.family === 'gpt2' ? `transformer.h.${i}` : `model.layers.${i}`));
  if (config.family === 'gpt2') return ['transformer.wte', 'transformer.wpe', ...layers, 'transformer.ln_f', 'lm_head'];
  return ['model.embed_tokens', ...layers, 'model.norm', 'lm_head'];
}

/** The module a (transformers-named) tensor belongs to; GPT-2 tensors may lack 'transformer.'. */
export function moduleOfTensor(config: DecoderConfig, tensor: string): string | undefined {
  const t = config.family === 'gpt2' && !tensor.startsWith('transformer.') && !tensor.startsWith('lm_head.') ? `transformer.${tensor}` : tensor;
  const m = /^(model\.layers\.\d+|transformer\.h\.\d+|model\.embed_tokens|model\.norm|transformer\.wte|transformer\.wpe|transformer\.ln_f|lm_head)\./.exec(t);
  return m?.[1];
}

function covering(map: Record<string, Device>, module: string): Device | undefined {
  let best: string | undefined;
  for (const k of Object.keys(map)) {
    if (k === '' || module === k || module.startsWith(k + '.')) if (best === undefined || k.length > best.length) best = k;
  }
  return best === undefined ? undefined : map[best];
}

export interface Budgets {
  gpu: number;
  cpu: number;
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(3)} GiB (${n} bytes)`;

/**
 * Places each module. `budgets` bound 'auto'; for other maps only `explicit` budgets (given
 * maxMemory) are checked. Throws INVALID_ARGUMENT for maps that do not cover the model and
 * OUT_OF_MEMORY when the modules do not fit.
 */
export function planDevices(map: DeviceMap, modules: readonly ModuleSize[], budgets: Budgets, explicit: Partial<Budgets> = {}): Map<string, Device> {
  const out = new Map<string, Device>();
  const size = new Map(modules.map((m) => [m.name, m]));
  if (map === 'auto') {
    let gpuLeft = budgets.gpu;
    let full = false;
    for (const m of modules) {
      if (m.tiedTo !== undefined && out.has(m.tiedTo)) {
        out.set(m.name, out.get(m.tiedTo)!);
        continue;
      }
      if (!full && m.bytes <= gpuLeft) {
        out.set(m.name, 'gpu');
        gpuLeft -= m.bytes;
      } else {
        full = true;
        out.set(m.name, 'cpu');
      }
    }
  } else if (map === 'cpu' || map === 'gpu') {
    for (const m of modules) out.set(m.name, map);
  } else {
    const names = modules.map((m) => m.name);
    for (const k of Object.keys(map)) {
      if (k !== '' && !names.some((n) => n === k || n.startsWith(k + '.'))) bad(`deviceMap key '${k}' names no module of this model (modules: ${names.join(', ')})`);
    }
    for (const n of names) {
      const d = covering(map, n);
      if (d === undefined) bad(`deviceMap does not place module '${n}': add it (or a prefix of it, or "") to the map`);
      out.set(n, d!);
    }
  }
  // What each device holds; a tied lm_head away from its table holds a copy of it.
  const used: Budgets = { gpu: 0, cpu: 0 };
  for (const m of modules) {
    const d = out.get(m.name)!;
    const bytes = m.tiedTo !== undefined ? (out.get(m.tiedTo) === d ? 0 : size.get(m.tiedTo)?.bytes ?? 0) : m.bytes;
    used[d] += bytes;
  }
  const limit: Partial<Budgets> = map === 'auto' ? budgets : explicit;
  for (const d of ['gpu', 'cpu'] as const) {
    const l = limit[d];
    if (l !== undefined && used[d] > l) {
      const what = map === 'auto' ? `the model needs ${gib(used.gpu + used.cpu)}; after ${gib(used.gpu)} on the GPU, ${gib(used.cpu)} remain for the CPU` : `the modules placed on the ${d} need ${gib(used[d])}`;
      throw new LowbitError('OUT_OF_MEMORY', `deviceMap ${typeof map === 'string' ? `'${map}'` : '(per module)'}: ${what}, over the ${d} budget of ${gib(l)} (raise maxMemory.${d})`);
    }
  }
  return out;
}

/** The one device a whole-model deviceMap names, or undefined for per-module maps / 'auto'. */
export function singleDevice(d: DeviceMap | undefined): Device | undefined {
  if (d === undefined) return 'cpu';
  if (d === 'cpu' || d === 'gpu') return d;
  if (d === 'auto') return undefined;
  const keys = Object.keys(d);
  return keys.length === 1 && keys[0] === '' ? d['']! : undefined;
}

/** Kept for callers of the whole-model API: the single device of a map; INVALID_ARGUMENT otherwise. */
export function deviceOf(d: DeviceMap | undefined): Device {
  checkDeviceMap(d);
  const s = singleDevice(d);
  if (s === undefined) bad(`deviceMap ${JSON.stringify(d)} places modules on several devices; this call needs one device`);
  return s!;
}

export async function makeGpuBackend(o: BackendOptions): Promise<WebGpuBackend> {
  return WebGpuBackend.create({ ...o.webgpu, ...(o.gpu ? { gpu: o.gpu } : {}) });
}

export async function makeCpuBackend(o: BackendOptions): Promise<CpuBackend> {
  // The model owns the CPU backend it gets: dispose() stops its worker threads.
  return CpuBackend.create({ ...(o.threads === undefined ? {} : { threads: o.threads }), ...(o.cpuKernels === undefined ? {} : { kernels: o.cpuKernels }) });
}

/** The backend for a whole-model deviceMap, and whether the model owns (and disposes) it. */
export async function backendFor(o: BackendOptions): Promise<{ backend: Backend; owned: boolean }> {
  const device = deviceOf(o.deviceMap);
  if (o.backend !== undefined) {
    const want = device === 'gpu' ? 'webgpu' : 'cpu';
    if (o.deviceMap !== undefined && o.backend.device !== want) throw new LowbitError('INVALID_ARGUMENT', `deviceMap '${device}' but the given backend runs on '${o.backend.device}'`);
    return { backend: o.backend, owned: false };
  }
  if (device === 'gpu') return { backend: await makeGpuBackend(o), owned: true };
  return { backend: await makeCpuBackend(o), owned: true };
}

/** The budgets of maxMemory (given ones, and the defaults 'auto' uses). */
export function budgetsOf(o: BackendOptions, gpu: WebGpuBackend | undefined): { budgets: Budgets; explicit: Partial<Budgets> } {
  const explicit: Partial<Budgets> = {};
  if (o.maxMemory !== undefined) {
    if (typeof o.maxMemory !== 'object' || o.maxMemory === null) bad(`maxMemory must be { gpu?, cpu? }, got ${JSON.stringify(o.maxMemory)}`);
    for (const k of Object.keys(o.maxMemory)) if (k !== 'gpu' && k !== 'cpu') bad(`maxMemory.${k}: only 'gpu' and 'cpu' budgets exist`);
    if (o.maxMemory.gpu !== undefined) explicit.gpu = parseBytes(o.maxMemory.gpu, 'maxMemory.gpu');
    if (o.maxMemory.cpu !== undefined) explicit.cpu = parseBytes(o.maxMemory.cpu, 'maxMemory.cpu');
  }
  return { budgets: { gpu: gpu === undefined ? 0 : explicit.gpu ?? defaultGpuBudget(gpu), cpu: explicit.cpu ?? Infinity }, explicit };
}
