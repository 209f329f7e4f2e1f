/**
 * The kernel cases of shaders/cases.json on WebGPU (Dawn) against the wasm CPU backend's exact
 * kernels, through the real backends on the same inputs (test/helpers/kernel-cases.ts), under
 * each host switch set of a case's `run` (subgroups, packed dot) the adapter has. The same list
 * runs on wgpu against lowbit-core (crates/lowbit-gpu/tests/cases.rs) and on the CPU's fast
 * kernels (kernel-cases.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, CpuBackend, WebGpuBackend } from '../dist/index.js';
import { testGpu } from './helpers/webgpu.js';
import { checkClose, linearEntry, loadCases, runCase, type KernelCase } from './helpers/kernel-cases.js';

const env = await testGpu();
const suite = env.skip ? describe.skip : describe;
const file = loadCases();

let cpu: CpuBackend;
let cpuFast: CpuBackend;
const backends = new Map<string, Promise<WebGpuBackend>>();

/** A backend with these switches (the adapter's default where one is not given), made once. */
function backend(s: { subgroups?: boolean; dot4?: boolean }, intActivations: boolean): Promise<WebGpuBackend> {
  const key = `${s.subgroups}|${s.dot4}|${intActivations}`;
  let b = backends.get(key);
  if (b === undefined) {
    b = WebGpuBackend.create({ gpu: env.gpu!, intActivations, ...(s.subgroups !== undefined ? { subgroups: s.subgroups } : {}), ...(s.dot4 !== undefined ? { packedDot: s.dot4 } : {}) });
    backends.set(key, b);
  }
  return b;
}

beforeAll(async () => {
  if (env.skip) return;
  await init();
  cpu = new CpuBackend();
  cpu.kernels = 'exact'; // the reference: the WGSL kernels compute in f32
  cpuFast = new CpuBackend(); // int_act cases: the CPU's integer kernels, the same integers
  cpuFast.kernels = 'fast';
});

afterAll(async () => {
  for (const b of backends.values()) (await b).dispose();
});

suite(`kernel cases (shaders/cases.json) on WebGPU (${env.adapter ?? 'no adapter'}) vs the wasm CPU kernels`, () => {
  const kernels = new Set(file.cases.map((c) => c.kernel));
  it('lists every kernel family the hosts have', () => {
    for (const k of ['matmul4', 'matmul4_qkv', 'matmul_int8', 'matmul_dense', 'matmul_blockwise8', 'norm', 'rope', 'attention', 'elementwise', 'embedding', 'sample']) expect(kernels, k).toContain(k);
  });

  for (const c of file.cases as KernelCase[]) {
    // int_act cases (decode on integer activations) run with `intActivations` against the CPU's
    // integer kernels, which quantize the activations the same way
    const intAct = c.int_act === true;
    it(`${c.kernel}: ${c.name}`, async () => {
      if (c.kernel.startsWith('matmul')) expect(linearEntry(c), 'the entry point the shapes select').toBe(c.entry);
      const tol = c.tolerance ?? file.tolerance[c.kernel]!.gpu;
      const want = await runCase(intAct ? cpuFast : cpu, c);
      let ran = 0;
      for (const s of c.run ?? [{}]) {
        const g = await backend(s, intAct);
        if ((s.subgroups === true && !g.subgroups) || (s.dot4 === true && !g.packedDot)) {
          console.log(`${c.name}: ${JSON.stringify(s)} skipped: the adapter lacks it`);
          continue;
        }
        if (c.kernel === 'matmul4_qkv' && !g.variant.fuseQkv) console.log(`${c.name}: this adapter's variant row does not fuse q / k / v; the three GEMVs run instead`);
        const got = await runCase(g, c);
        expect(got.length).toBe(want.length);
        got.forEach((o, i) => checkClose(o, want[i]!, tol, `${c.name} ${JSON.stringify(s)} output ${i}`));
        ran++;
      }
      expect(ran, 'switch sets run').toBeGreaterThan(0);
    });
  }
});
