/**
 * Getting a WebGPU device: navigator.gpu (browsers, Deno), an injected GPU object, or in Node the
 * optional npm package `webgpu` (Dawn) when it is installed. The adapter's own limits are
 * requested (not WebGPU's defaults), so large weights need fewer parts.
 */
import { LowbitError } from '../../errors.js';
// The GPU* names below, for apps without WebGPU types (see the file).
import './gpu-globals.js';

/** WebGPU's GPUPowerPreference, spelled out so that the public types need no @webgpu/types. */
export type PowerPreference = 'low-power' | 'high-performance';

/** What a WebGPU adapter says about itself (`describeAdapter`); benchmarks label their figures with it. */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (SwiftShader, lavapipe / llvmpipe, WARP) as far as can be told. */
  software: boolean;
  features: string[];
  wgslLanguageFeatures: string[];
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number; maxComputeWorkgroupStorageSize: number };
}

export interface DeviceRequest {
  gpu?: GPU;
  powerPreference?: PowerPreference;
  /** Arguments for the `webgpu` package's create() in Node (default []). */
  dawnFlags?: string[];
}

/** Why the `webgpu` package could not be used, when it is installed but failed to load. */
let nodeGpuProblem: string | undefined;

function isNode(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; Deno?: unknown };
  return g.Deno === undefined && typeof g.process?.versions?.node === 'string';
}

/**
 * Dawn for Node: the npm package `webgpu`, an optional peer dependency that the user installs
 * (`npm install webgpu`, 132 MB), loaded lazily. Undefined when it is not installed: a failed
 * import costs a millisecond and prints nothing, so deviceMap 'auto' without it is free.
 */
async function nodeGpu(flags: string[]): Promise<GPU | undefined> {
  if (!isNode()) return undefined;
  // A computed specifier keeps bundlers from resolving the Node-only package.
  const spec = 'webgpu';
  let mod: { create(flags: string[]): GPU };
  try {
    mod = (await import(/* @vite-ignore */ spec)) as typeof mod;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code !== 'ERR_MODULE_NOT_FOUND') nodeGpuProblem = `the \`webgpu\` package failed to load: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
    return undefined;
  }
  try {
    return mod.create(withF16Toggle(flags));
  } catch (e) {
    nodeGpuProblem = `the \`webgpu\` package's create() failed: ${e instanceof Error ? e.message : String(e)}`;
    return undefined;
  }
}

/**
 * Dawn hides `shader-f16` on NVIDIA + Vulkan unless its toggle vulkan_enable_f16_on_nvidia is
 * on: added to the create() flags (to an enable-dawn-features list the caller gave, or as one).
 */
export function withF16Toggle(flags: readonly string[]): string[] {
  const toggle = 'vulkan_enable_f16_on_nvidia';
  const i = flags.findIndex((f) => f.startsWith('enable-dawn-features='));
  if (i < 0) return [...flags, `enable-dawn-features=${toggle}`];
  if (flags[i]!.split('=')[1]!.split(',').includes(toggle)) return [...flags];
  return flags.map((f, j) => (j === i ? `${f},${toggle}` : f));
}

/** navigator.gpu, else the `webgpu` package in Node; undefined when neither exists. */
export async function findGpu(flags: string[] = []): Promise<GPU | undefined> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu ?? (await nodeGpu(flags));
}

/** What to do about a missing navigator.gpu, for this runtime. */
function noGpuAdvice(): string {
  if (isNode()) return nodeGpuProblem ?? 'in Node, WebGPU comes from the optional package `webgpu` (Dawn): `npm install webgpu`';
  if ((globalThis as { Deno?: unknown }).Deno !== undefined) return 'in Deno, run with --unstable-webgpu';
  return 'use a browser with WebGPU (e.g. Chrome or Edge 113+) on a secure page (https or localhost)';
}

const SOFTWARE = /swiftshader|lavapipe|llvmpipe|softpipe|warp|microsoft basic render|cpu/i;

export function describeAdapter(gpu: GPU, adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const text = `${info.vendor ?? ''} ${info.architecture ?? ''} ${info.device ?? ''} ${info.description ?? ''}`;
  const fallback = (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter === true || (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  const wgsl = (gpu as { wgslLanguageFeatures?: Iterable<string> }).wgslLanguageFeatures;
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    software: fallback || SOFTWARE.test(text),
    features: [...adapter.features].sort(),
    wgslLanguageFeatures: wgsl ? [...wgsl].sort() : [],
    limits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    },
  };
}

/** Requests an adapter and a device with the adapter's limits; typed errors when there is none. */
export async function requestDevice(req: DeviceRequest): Promise<{ gpu: GPU; adapter: GPUAdapter; device: GPUDevice; info: AdapterDescription }> {
  const gpu = req.gpu ?? (await findGpu(req.dawnFlags));
  if (gpu === undefined) {
    throw new LowbitError('WEBGPU_UNAVAILABLE', `WebGPU is not available here: no navigator.gpu (${noGpuAdvice()}; or pass { gpu }). deviceMap 'cpu' or 'auto' runs on the CPU.`);
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter(req.powerPreference ? { powerPreference: req.powerPreference } : undefined);
  } catch (e) {
    throw new LowbitError('WEBGPU_UNAVAILABLE', `requestAdapter() failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (adapter === null) throw new LowbitError('WEBGPU_UNAVAILABLE', "WebGPU found no adapter: this machine has no GPU or no driver WebGPU can use (Linux: a Vulkan driver). deviceMap 'cpu' or 'auto' runs on the CPU.");
  const l = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
  };
  let device: GPUDevice;
  try {
    // subgroups: matmul4.wgsl's decode GEMV reduces with subgroup shuffles when the device has it
    // shader-f16: half weights' decode GEMV in f16 (matmul_dense.wgsl F16_COMPUTE)
    const requiredFeatures = (['subgroups', 'shader-f16'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
    device = await adapter.requestDevice({ label: 'lowbit', requiredLimits, requiredFeatures });
  } catch (e) {
    throw new LowbitError('WEBGPU_UNAVAILABLE', `requestDevice() failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return { gpu, adapter, device, info: describeAdapter(gpu, adapter) };
}
