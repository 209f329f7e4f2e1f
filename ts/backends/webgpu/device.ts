/**
 * Getting a WebGPU device: navigator.gpu (browsers, Deno), an injected GPU object, or in Node the
 * optional npm package `webgpu` (Dawn) when it is installed. The adapter's own limits are
 * requested (not WebGPU's defaults), so large weights need fewer parts.
 */
import { LowbitError } from '../../errors.js';

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
  powerPreference?: GPUPowerPreference;
  /** Arguments for the `webgpu` package's create() in Node (default []). */
  dawnFlags?: string[];
}

/** The optional Node package, loaded lazily; undefined when it is not installed. */
async function nodeGpu(flags: string[]): Promise<GPU | undefined> {
  const g = globalThis as { process?: { versions?: { node?: string } }; Deno?: unknown };
  if (g.Deno !== undefined || g.process?.versions?.node === undefined) return undefined;
  // A computed specifier keeps bundlers from resolving the Node-only package.
  const spec = 'webgpu';
  try {
    const mod = (await import(/* @vite-ignore */ spec)) as { create(flags: string[]): GPU };
    return mod.create(flags);
  } catch {
    return undefined;
  }
}

/** navigator.gpu, else the `webgpu` package in Node; undefined when neither exists. */
export async function findGpu(flags: string[] = []): Promise<GPU | undefined> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu ?? (await nodeGpu(flags));
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
    throw new LowbitError('WEBGPU_UNAVAILABLE', 'WebGPU is not available here: no navigator.gpu (in Node, install the optional package `webgpu`, or pass { gpu })');
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter(req.powerPreference ? { powerPreference: req.powerPreference } : undefined);
  } catch (e) {
    throw new LowbitError('WEBGPU_UNAVAILABLE', `requestAdapter() failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (adapter === null) throw new LowbitError('WEBGPU_UNAVAILABLE', 'WebGPU found no adapter (no usable GPU or driver; on Linux without a GPU see scripts/setup-webgpu.sh)');
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
    const requiredFeatures: GPUFeatureName[] = adapter.features.has('subgroups') ? ['subgroups' as GPUFeatureName] : [];
    device = await adapter.requestDevice({ label: 'lowbit', requiredLimits, requiredFeatures });
  } catch (e) {
    throw new LowbitError('WEBGPU_UNAVAILABLE', `requestDevice() failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return { gpu, adapter, device, info: describeAdapter(gpu, adapter) };
}
