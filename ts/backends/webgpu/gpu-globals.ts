/**
 * The WebGPU names that lowbit's public types mention, declared as empty global interfaces so
 * that lowbit's .d.ts files type-check (strict, without skipLibCheck) in apps that have no
 * WebGPU types: TypeScript's lib.dom has none, and @webgpu/types is not a dependency of lowbit.
 * Where @webgpu/types (or a lib that has WebGPU) is present, these merge with the full
 * declarations and add nothing; without them the objects are opaque handles to pass around.
 * Only interfaces go here (they merge); type aliases such as GPUPowerPreference are spelled out
 * where they are used.
 */
declare global {
  interface GPU {}
  interface GPUAdapter {}
  interface GPUDevice {}
  interface GPUBuffer {}
  interface GPUComputePipeline {}
}

export {};
