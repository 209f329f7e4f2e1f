/**
 * The composition root of placement: the one place under ts/models that names the concrete
 * backends (CPU, WebGPU) and makes them for fromPretrained. Everything else in ts/models works
 * through the Backend interface (scripts/check-layers.mjs enforces it).
 */
import type { Backend } from '../backends/backend.js';
import { CpuBackend } from '../backends/cpu/index.js';
import { WebGpuBackend, type WebGpuBackendOptions } from '../backends/webgpu/index.js';
import { LowbitError } from '../errors.js';
import type { Quantize4bitOptions, Quantized4bit } from '../quant/blockwise4.js';
import type { FloatInput } from '../tensor/dtypes.js';
import type { Placement } from './causal-lm.js';
import { deviceOf, parseBytes, type Budgets, type DeviceMap, type MaxMemory } from './device-map.js';

const bad = (m: string): never => {
  throw new LowbitError('INVALID_ARGUMENT', m);
};

/** The device and backend options of `fromPretrained`. */
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
   * 4-bit and GGUF Q8_0 kernels of the CPU backend fromPretrained makes: 'fast' (default; inputs
   * of up to 4 rows quantized to 14-bit integers, integer dot products) or 'exact' (f32, equal to
   * dequantize-then-matmul). See CpuBackendOptions.kernels and the README's accuracy table.
   */
  cpuKernels?: 'fast' | 'exact';
  /**
   * Keep the host copy of GPU modules' weights so that generation can go on on the CPU when the
   * GPU device is lost (default true; costs host memory about the size of those weights).
   */
  keepHostWeights?: boolean;
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

/**
 * quantize4bit on the model's CPU backend's worker threads, when it has them: loadWeights then
 * quantizes each tensor on every thread (the same bytes as one thread).
 */
export function threadedQuantizer(placement: Placement, modules: readonly string[]): ((input: FloatInput, options: Quantize4bitOptions) => Quantized4bit) | undefined {
  const backends = typeof placement === 'function' ? modules.map((m) => placement(m)) : [placement];
  const cpu = backends.find((b): b is CpuBackend => b instanceof CpuBackend && b.threads > 1);
  return cpu === undefined ? undefined : (input, options) => cpu.quantize4bit(input, options);
}
