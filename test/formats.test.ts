/**
 * Weight formats as definitions (ts/formats): every format's row slices give the rows of its
 * f32 values, sizes and estimates agree, the checkpoint form round-trips or is refused, and the
 * format × backend table converts or refuses at placement, before anything is read.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  init, FORMATS, formatOf, CAPABILITIES, supportOf, adaptWeight, checkPlacement, LowbitError, quantize4bit, int8VectorwiseQuant, toHalf,
  quantizeBlockwise, blockwise8FromQuantized, q8_0ToBlockwise8, checkpointTensors, type LoadedWeight, type FormatKind,
} from '../dist/index.js';
import { checkModuleFormats, planDevices } from '../dist/models/device-map.js';

beforeAll(async () => {
  await init();
});

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
  return new Float32Array(n).map(() => u() * 2 - 1);
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** One weight of each format (and variant), [48, 96]. */
function weights(): LoadedWeight[] {
  const [n, k] = [48, 96];
  const v = rand(n * k, 3);
  const out: LoadedWeight[] = [
    { kind: 'dense', name: 'f32', dtype: 'F32', shape: [n, k], data: bytesOf(v) },
    { kind: 'dense', name: 'bf16', dtype: 'BF16', shape: [n, k], data: bytesOf(toHalf(v, 'bfloat16').data) },
  ];
  for (const dq of [false, true]) {
    const { packed, quantState } = quantize4bit(v, { quantType: 'nf4', blocksize: 64, compressStatistics: dq, shape: [n, k] });
    out.push({ kind: '4bit', name: `nf4${dq ? '-dq' : ''}`, packed, quantState });
  }
  const r = int8VectorwiseQuant(toHalf(v, 'float16'), { shape: [n, k] });
  out.push({ kind: 'int8', name: 'int8', CB: r.CB, SCB: r.SCB, shape: [n, k] });
  const { q, state } = quantizeBlockwise(v, { blocksize: 64 });
  out.push(blockwise8FromQuantized('bw8', [n, k], q, state));
  return out;
}

describe('weight formats', () => {
  it('every LoadedWeight kind has a definition and a row in the capability table for every device', () => {
    expect(Object.keys(FORMATS).sort()).toEqual(['4bit', 'blockwise8', 'dense', 'int8']);
    for (const kind of Object.keys(FORMATS)) expect(Object.keys(CAPABILITIES[kind as FormatKind]).sort()).toEqual(['cpu', 'webgpu']);
    expect(() => formatOf({ kind: 'q3_k' } as unknown as LoadedWeight)).toThrow(/unknown weight kind 'q3_k'/);
  });

  it('row slices on the format\'s row step give exactly those rows of its f32 values', () => {
    for (const w of weights()) {
      const f = formatOf(w);
      const [n, k] = f.shape(w);
      const all = f.toFloat32(w);
      const step = f.rowStep(w);
      // 96 columns in blocks of 64: two rows make three whole blocks
      expect(step, w.name).toBe(w.kind === '4bit' || w.kind === 'blockwise8' ? 2 : 1);
      const bounds = [0, 8 * step, 20 * step, n];
      for (let i = 0; i + 1 < bounds.length; i++) {
        const part = f.sliceRows(w, bounds[i]!, bounds[i + 1]!, 'part');
        expect(part.name).toBe('part');
        expect(f.shape(part)).toEqual([bounds[i + 1]! - bounds[i]!, k]);
        expect(Array.from(f.toFloat32(part)), `${w.name} rows ${bounds[i]}..${bounds[i + 1]}`).toEqual(Array.from(all.subarray(bounds[i]! * k, bounds[i + 1]! * k)));
      }
      if (step > 1) expect(() => f.sliceRows(w, 1, n)).toThrow(LowbitError);
    }
  });

  it('host bytes match the metadata estimate for plain absmax; labels name the variant', () => {
    const labels = weights().map((w) => [w.name, formatOf(w).label(w)]);
    expect(Object.fromEntries(labels)).toEqual({ f32: 'float32', bf16: 'bfloat16', nf4: '4bit-nf4', 'nf4-dq': '4bit-nf4', int8: 'int8', bw8: 'blockwise8' });
    for (const w of weights()) {
      const f = formatOf(w);
      const est = f.estimateBytes([48, 96], { dtype: w.kind === 'dense' ? w.dtype : undefined, blocksize: 64 });
      // double quantization: 1 byte per absmax instead of 4, + the nested f32 scale and 256-value code
      if (w.name === 'nf4-dq') expect(f.bytes(w)).toBe(est + 16 * 4 - 72 * 3 + 4 + 256 * 4);
      else if (w.kind === '4bit') expect(f.bytes(w)).toBe(est + 16 * 4); // + the 16-value code
      else if (w.kind === 'blockwise8') expect(f.bytes(w)).toBe(est + 256 * 4); // + the 256-value code
      else expect(f.bytes(w)).toBe(est);
    }
    const q8 = q8_0ToBlockwise8('q', [2, 32], new Uint8Array(2 * 34));
    expect(formatOf(q8).label(q8)).toBe('q8_0');
  });

  it('checkpoint form: dense, nf4 and int8 save as bitsandbytes tensors; block-wise 8-bit is refused with a reason', () => {
    const ws = weights();
    const saved = checkpointTensors(ws.filter((w) => w.kind !== 'blockwise8'));
    expect(saved.map((t) => t.name)).toContain('nf4-dq.nested_absmax');
    expect(saved.find((t) => t.name === 'int8')!.dtype).toBe('I8');
    const bw = ws.find((w) => w.kind === 'blockwise8')!;
    expect(() => checkpointTensors([bw])).toThrow(/no bitsandbytes checkpoint form/);
  });

  it('the capability table: every format native on both backends (block-wise 8-bit included: matmul_blockwise8.wgsl); unknown formats refused', () => {
    for (const kind of Object.keys(FORMATS)) for (const d of ['cpu', 'webgpu'] as const) expect(supportOf(kind, d).support, `${kind} on ${d}`).toBe('native');
    expect(supportOf('q3_k', 'webgpu')).toMatchObject({ support: 'refuse' });
    const bw = weights().find((w) => w.kind === 'blockwise8')!;
    for (const d of ['cpu', 'webgpu'] as const) {
      const a = adaptWeight(bw, d);
      expect(a.weight).toBe(bw);
      expect(a.convertedFrom).toBeUndefined();
    }
  });

  it('placement: no module needs a conversion today, refusals throw UNSUPPORTED_QUANT_TYPE naming module, format and device', () => {
    const modules = [
      { name: 'model.embed_tokens', bytes: 100, formats: [{ kind: 'dense' as const, label: 'float32' }] },
      { name: 'model.layers.0', bytes: 10, gpuBytes: 40, formats: [{ kind: 'blockwise8' as const, label: 'q8_0' }, { kind: 'dense' as const, label: 'float32' }] },
      { name: 'lm_head', bytes: 10, gpuBytes: 40, formats: [{ kind: 'blockwise8' as const, label: 'q8_0' }] },
    ];
    const plan = planDevices({ '': 'gpu', lm_head: 'cpu' }, modules, { gpu: Infinity, cpu: Infinity });
    // Q8_0 runs natively on both backends: nothing to convert
    expect(checkModuleFormats(plan, modules)).toEqual([]);
    // 'auto' counts a module's GPU size where it differs (gpuBytes): 100 + 40 > 130, so layer 0 goes to the CPU although its 10 bytes would fit
    expect([...planDevices('auto', modules, { gpu: 130, cpu: Infinity }).values()]).toEqual(['gpu', 'cpu', 'cpu']);
    const e = (() => {
      try {
        checkPlacement([{ module: 'model.layers.3', device: 'webgpu', kind: 'q3_k' as FormatKind }]);
      } catch (err) {
        return err as LowbitError;
      }
    })();
    expect(e).toBeInstanceOf(LowbitError);
    expect(e!.code).toBe('UNSUPPORTED_QUANT_TYPE');
    expect(e!.message).toMatch(/model\.layers\.3 \(q3_k on webgpu: 'q3_k' is not a weight format lowbit knows/);
    expect(e!.message).toMatch(/nothing was loaded/);
  });
});
