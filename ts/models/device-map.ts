/**
 * deviceMap → backend for AutoModelForCausalLM.fromPretrained. Now: the whole model on one
 * device, 'cpu' (wasm) or 'gpu' (WebGPU). Placing modules on different devices ('auto',
 * per-module maps, CPU fallback when the device is lost) builds on this: the Backend interface
 * already moves activations between devices with `transfer`.
 */
import type { Backend } from '../backends/backend.js';
import { CpuBackend } from '../backends/cpu/index.js';
import { WebGpuBackend, type WebGpuBackendOptions } from '../backends/webgpu/index.js';
import { LowbitError } from '../errors.js';

export type Device = 'cpu' | 'gpu';
export type DeviceMap = Device | Record<string, Device>;

export interface BackendOptions {
  deviceMap?: DeviceMap;
  /** A backend to build on (overrides deviceMap; the caller keeps ownership). */
  backend?: Backend;
  /** For deviceMap 'gpu': a navigator.gpu-like object (Node: `create([])` from the `webgpu` package). */
  gpu?: GPU;
  /** For deviceMap 'gpu': other WebGPU backend options. */
  webgpu?: Omit<WebGpuBackendOptions, 'gpu'>;
  /** Threads of the CPU backend fromPretrained makes: 'auto' (default: every core where threads work) or a count; 1 = one thread. */
  threads?: number | 'auto';
}

/** The one device a deviceMap names; refuses what is not supported yet. */
export function deviceOf(d: DeviceMap | undefined): Device {
  if (d === undefined) return 'cpu';
  if (d === 'cpu' || d === 'gpu') return d;
  if (typeof d === 'object' && d !== null && !Array.isArray(d)) {
    const values = new Set(Object.values(d));
    if (values.size === 1) {
      const v = [...values][0]!;
      if (v === 'cpu' || v === 'gpu') return v;
    }
  }
  throw new LowbitError('INVALID_ARGUMENT', `deviceMap ${JSON.stringify(d)} is not supported yet: 'cpu' or 'gpu' (or { "": "cpu" | "gpu" }) for the whole model`);
}

/** The backend to build the model on, and whether the model owns (and disposes) it. */
export async function backendFor(o: BackendOptions): Promise<{ backend: Backend; owned: boolean }> {
  const device = deviceOf(o.deviceMap);
  if (o.backend !== undefined) {
    const want = device === 'gpu' ? 'webgpu' : 'cpu';
    if (o.deviceMap !== undefined && o.backend.device !== want) throw new LowbitError('INVALID_ARGUMENT', `deviceMap '${device}' but the given backend runs on '${o.backend.device}'`);
    return { backend: o.backend, owned: false };
  }
  if (device === 'gpu') return { backend: await WebGpuBackend.create({ ...o.webgpu, ...(o.gpu ? { gpu: o.gpu } : {}) }), owned: true };
  // The model owns the CPU backend it gets: dispose() stops its worker threads.
  return { backend: await CpuBackend.create(o.threads === undefined ? {} : { threads: o.threads }), owned: true };
}
