/**
 * The kernel cases of shaders/cases.json on the wasm CPU backend: its fast kernels (what decode
 * runs by default) against its exact ones (dequantize-then-matmul, the reference the WebGPU
 * suite compares with) within the file's `fast` tolerance, on the inputs the other hosts draw
 * (test/helpers/kernel-cases.ts); and the file's PRNG check, which crates/lowbit-gpu/tests/cases.rs
 * makes too, so both languages draw the same inputs. No GPU needed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { init, CpuBackend } from '../dist/index.js';
import { checkClose, linearEntry, loadCases, Prng, runCase } from './helpers/kernel-cases.js';

const file = loadCases();
let fast: CpuBackend;
let exact: CpuBackend;

beforeAll(async () => {
  await init();
  fast = new CpuBackend();
  exact = new CpuBackend();
  exact.kernels = 'exact';
});

describe('kernel cases (shaders/cases.json) on the wasm CPU kernels', () => {
  it("the PRNG gives the file's first values (as the Rust runner checks)", () => {
    const { seed, first } = file.prng.check;
    const r = new Prng(seed);
    expect(first.map(() => r.next())).toEqual(first);
  });

  for (const c of file.cases) {
    it(`${c.kernel}: ${c.name}`, async () => {
      if (c.kernel.startsWith('matmul')) expect(linearEntry(c), 'the entry point the shapes select').toBe(c.entry);
      const [got, want] = [await runCase(fast, c), await runCase(exact, c)];
      expect(got.length).toBe(want.length);
      got.forEach((o, i) => checkClose(o, want[i]!, file.tolerance[c.kernel]!.fast, `${c.name} output ${i}`));
    });
  }
});
