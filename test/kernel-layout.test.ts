/**
 * The kernel layouts read from the WGSL (scripts/gen-shaders.mjs -> KERNEL_LAYOUTS; layout.ts):
 * uniforms are filled by field name at the offsets the shader declares, bindings go by variable
 * name to their @binding, and a host that names a field or binding the shader does not have, or
 * leaves out one it needs, gets an INTERNAL LowbitError at the call. No GPU needed.
 */
import { describe, expect, it } from 'vitest';
import { bindEntries, kernelLayout, packParams } from '../dist/backends/webgpu/layout.js';
import { SHADER_SOURCES } from '../dist/backends/webgpu/shaders.generated.js';
import { attentionSplits } from '../dist/backends/webgpu/attention-split.js';
import { loadCases } from './helpers/kernel-cases.js';
import { LowbitError } from '../dist/index.js';

function internal(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LowbitError);
    expect((e as LowbitError).code).toBe('INTERNAL');
    expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected an INTERNAL LowbitError');
}

describe('kernel layouts reflected from the WGSL', () => {
  it('fills norm.wgsl Params by name: u32 words, eps as f32 bits, flags as 0 / 1', () => {
    const buf = packParams('norm.wgsl', [], { rows: 3, hidden: 64, eps: 1e-5, has_bias: true });
    expect(buf.byteLength).toBe(16);
    expect([...new Uint32Array(buf, 0, 2)]).toEqual([3, 64]);
    expect(new Float32Array(buf)[2]).toBe(Math.fround(1e-5));
    expect(new Uint32Array(buf)[3]).toBe(1);
  });

  it('places array fields and leaves pad fields zero (matmul4.wgsl code after _pad2)', () => {
    const code = Float32Array.from({ length: 16 }, (_, i) => i / 8 - 1);
    const head = { m: 1, k: 64, n_total: 8, n0: 0, n_part: 8, has_bias: false, flat_base: 0, block_base: 0, block_shift: 6, g4_lanes: 8, q_at: 7 };
    const buf = packParams('matmul4.wgsl', ['SUBGROUPS'], { ...head, code });
    expect(buf.byteLength).toBe(112);
    expect(new Uint32Array(buf)[10]).toBe(7);
    expect(new Uint32Array(buf)[11]).toBe(0);
    expect([...new Float32Array(buf, 48, 16)]).toEqual([...code]);
    // QKV appends k's and v's rows and codes_at: required there, unknown without it
    internal(() => packParams('matmul4.wgsl', ['QKV'], { ...head, code }), /'n_k' is not given/);
    internal(() => packParams('matmul4.wgsl', [], { ...head, code, n_k: 4 }), /no uniform field 'n_k'/);
    const qkv = packParams('matmul4.wgsl', ['QKV'], { ...head, code, n_k: 4, n_v: 5, q_at_k: 6, q_at_v: 7 });
    expect([...new Uint32Array(qkv, 112, 4)]).toEqual([4, 5, 6, 7]);
  });

  it('refuses unknown, missing, padding and mistyped fields', () => {
    internal(() => packParams('norm.wgsl', [], { rows: 1, hidden: 2, eps: 0.1 } as never), /'has_bias' is not given/);
    internal(() => packParams('norm.wgsl', [], { rows: 1, hidden: 2, eps: 0.1, has_bias: 0, cols: 2 } as never), /no uniform field 'cols'/);
    internal(() => packParams('sample.wgsl', [], { rows: 1, cols: 2, _pad0: 0 } as never), /padding/);
    internal(() => packParams('norm.wgsl', [], { rows: 1.5, hidden: 2, eps: 0.1, has_bias: 0 }), /u32, given 1.5/);
    internal(() => packParams('matmul4.wgsl', [], { m: 1, k: 64, n_total: 8, n0: 0, n_part: 8, has_bias: 0, flat_base: 0, block_base: 0, block_shift: 6, g4_lanes: 8, q_at: 0, code: [1, 2] }), /16 words, given 2/);
  });

  it('maps binding names to @binding numbers and checks them against what the entry point uses', () => {
    const entries = bindEntries('norm.wgsl', 'rms_norm', [], { p: 'P', x: 'X', w: 'W', y: 'Y' });
    expect(entries.sort((a, b) => a.binding - b.binding)).toEqual([{ binding: 0, resource: 'P' }, { binding: 1, resource: 'X' }, { binding: 2, resource: 'W' }, { binding: 4, resource: 'Y' }]);
    internal(() => bindEntries('norm.wgsl', 'rms_norm', [], { p: 'P', x: 'X', w: 'W' }), /binding 'y' is not given/);
    internal(() => bindEntries('norm.wgsl', 'rms_norm', [], { p: 'P', x: 'X', w: 'W', y: 'Y', bias: 'B' }), /no binding 'bias'/);
    // layer_norm's bias `b` is declared in the file but rms_norm does not use it ('auto' layout would refuse it)
    internal(() => bindEntries('norm.wgsl', 'rms_norm', [], { p: 'P', x: 'X', w: 'W', y: 'Y', b: 'B' }), /does not use binding 'b'/);
    // defines change what an entry point uses: F16_COMPUTE reads half weights through wt_h
    expect(kernelLayout('matmul_dense.wgsl', ['WEIGHT_F16', 'F16_COMPUTE']).variant.entries.gemv_rows).toContain('wt_h');
    expect(kernelLayout('matmul_dense.wgsl', ['WEIGHT_F16']).variant.entries.gemv_rows).not.toContain('wt_h');
  });

  it('has a layout for every kernel file and its uniform struct as the WGSL writes it', () => {
    for (const [file, text] of Object.entries(SHADER_SOURCES)) {
      if (!text.includes('@compute') || Object.values(SHADER_SOURCES).some((t) => t.includes(`#include "${file}"`))) continue;
      const { layout, variant } = kernelLayout(file as 'norm.wgsl', []);
      // the struct's field names in source order, as a reader sees them (the first Params block)
      const struct = text.match(/struct Params \{([^}]*)\}/)![1]!.split('\n').map((l) => l.replace(/\/\/.*/, '').trim()).filter((l) => l && !l.startsWith('#')).map((l) => l.split(':')[0]!.trim());
      const inBase = struct.filter((n) => variant.fields.includes(n));
      expect(variant.fields, file).toEqual(inBase);
      expect(layout.uniform, file).toBe('p');
    }
  });
});

describe('the split rule of decode attention', () => {
  it('gives the rows of shaders/cases.json (the Rust harness checks its mirror against the same rows)', () => {
    const rows = (loadCases() as unknown as { attention_split_rule: { rows: [number, number, number, number | null, number][] } }).attention_split_rule.rows;
    expect(rows.length).toBeGreaterThan(5);
    for (const [span, heads, n, forced, splits] of rows) expect(attentionSplits(span, heads, n, forced ?? undefined), `${span}, ${heads}, ${n}, ${forced}`).toBe(splits);
  });
});
