/**
 * A WebGPU adapter for the tests: Dawn (the optional npm package `webgpu`) in Node, on the
 * lavapipe that scripts/setup-webgpu.sh prepared (.cache/webgpu/lvp_icd.json) unless
 * VK_ICD_FILENAMES already names a driver.
 *
 * Tests skip, with the reason printed, only when no adapter can be created — unless
 * LOWBIT_WEBGPU_EXPECT=1 (set by .cache/webgpu/env, which setup writes and scripts/test.sh
 * sources): then the missing adapter is an error, so CI cannot pass by skipping.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const ICD = join(ROOT, '.cache/webgpu/lvp_icd.json');

/** Environment for a process (this one or a child) that should find the prepared lavapipe. */
export function webgpuEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base };
  if (!env.VK_ICD_FILENAMES && existsSync(ICD)) env.VK_ICD_FILENAMES = ICD;
  if (!env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), 'lowbit-xdg-runtime');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    env.XDG_RUNTIME_DIR = dir;
  }
  return env;
}

export const expectAdapter = process.env.LOWBIT_WEBGPU_EXPECT === '1';

export interface TestGpu {
  gpu?: GPU;
  /** Why there is no adapter (then the suite skips, or fails when one was expected). */
  skip?: string;
  adapter?: string;
}

let cached: Promise<TestGpu> | undefined;

/** Dawn's GPU object with a working adapter, or the reason there is none. */
export function testGpu(): Promise<TestGpu> {
  cached ??= (async () => {
    Object.assign(process.env, webgpuEnv());
    let create: (flags: string[]) => GPU;
    try {
      ({ create } = (await import('webgpu')) as unknown as { create: (flags: string[]) => GPU });
    } catch (e) {
      return fail(`the optional npm package 'webgpu' is not installed (${(e as Error).message.split('\n')[0]}); run scripts/setup-webgpu.sh`);
    }
    const gpu = create([]);
    const adapter = await gpu.requestAdapter();
    if (adapter === null) return fail(`Dawn found no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? ''}); run scripts/setup-webgpu.sh`);
    return { gpu, adapter: `${adapter.info.vendor} ${adapter.info.architecture} ${adapter.info.description}`.trim() };
  })();
  return cached;
}

function fail(reason: string): TestGpu {
  if (expectAdapter) throw new Error(`LOWBIT_WEBGPU_EXPECT=1 (setup prepared WebGPU) but: ${reason}`);
  console.warn(`[webgpu tests skipped] ${reason}`);
  return { skip: reason };
}
