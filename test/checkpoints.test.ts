/**
 * bitsandbytes checkpoints both ways, against files transformers + bitsandbytes wrote
 * (test/fixtures/bnb-checkpoints, made by scripts/fixtures/make_bnb_checkpoints.py):
 * - reading: every quantized weight dequantizes to bitsandbytes' own dequantization, bit for bit;
 * - writing: quantizing the same fp16 model on load and saving it gives the same tensors, and the
 *   same bytes, as transformers' save_pretrained.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, localSource, SafetensorsFile, loadWeights, saveBnbCheckpoint, bnbQuantizationConfig, dequantize4bit, int8VectorwiseDequant, type LoadedWeight, type ProgressEvent } from '../dist/index.js';

const ROOT = fileURLToPath(new URL('./fixtures/bnb-checkpoints/', import.meta.url));
const manifest = JSON.parse(readFileSync(join(ROOT, 'manifest.json'), 'utf8')) as { versions: Record<string, string>; variants: Record<string, { base: string; quantized_weights: string[] }> };
const tmp = mkdtempSync(join(tmpdir(), 'lowbit-ckpt-'));

beforeAll(async () => {
  await init();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function collect(dir: string, options = {}): Promise<Map<string, LoadedWeight>> {
  const out = new Map<string, LoadedWeight>();
  for await (const w of loadWeights(await localSource(dir), options)) out.set(w.name, w);
  return out;
}

async function tensorsOf(file: string): Promise<Map<string, { dtype: string; shape: number[]; data: Uint8Array }>> {
  const st = await SafetensorsFile.open(await (await localSource(join(file, '..'))).open(file.split('/').pop()!));
  const m = new Map<string, { dtype: string; shape: number[]; data: Uint8Array }>();
  for (const [name, info] of st.tensors) m.set(name, { dtype: info.dtype, shape: info.shape, data: await st.read(name) });
  return m;
}

const OPTIONS: Record<string, object> = {
  'llama-nf4': { quantType: 'nf4' },
  'llama-nf4-dq': { quantType: 'nf4', doubleQuant: true, computeDtype: 'bfloat16' },
  'llama-fp4': { quantType: 'fp4' },
  'llama-fp4-dq': { quantType: 'fp4', doubleQuant: true },
  'llama-int8': { quantType: 'int8' },
};

describe('reading bitsandbytes checkpoints', () => {
  for (const [variant, v] of Object.entries(manifest.variants)) {
    it(`${variant}: every quantized weight equals bitsandbytes' dequantization`, async () => {
      const weights = await collect(join(ROOT, variant));
      const ref = await tensorsOf(join(ROOT, variant, 'reference.safetensors'));
      expect(v.quantized_weights.length).toBeGreaterThan(0);
      for (const name of v.quantized_weights) {
        const w = weights.get(name);
        const r = ref.get(name)!;
        expect(w?.kind, name).not.toBe('dense');
        let ours: Uint8Array;
        if (w!.kind === '4bit') {
          expect(w!.quantState.shape).toEqual(r.shape);
          const out = dequantize4bit(w!.packed, w!.quantState, { outDtype: r.dtype === 'F16' ? 'float16' : r.dtype === 'BF16' ? 'bfloat16' : 'float32' });
          ours = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
        } else if (w!.kind === 'int8') {
          const out = int8VectorwiseDequant(w!.CB, w!.SCB, w!.shape[1]);
          ours = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
        } else throw new Error('unreachable');
        expect(Buffer.from(ours).equals(Buffer.from(r.data)), name).toBe(true);
      }
      // Everything else comes through unchanged.
      const file = await tensorsOf(join(ROOT, variant, 'model.safetensors'));
      for (const [name, w] of weights) if (w.kind === 'dense') expect(Buffer.from(w.data).equals(Buffer.from(file.get(name)!.data)), name).toBe(true);
    });
  }
});

describe('malformed safetensors', () => {
  it('gives MALFORMED_FILE naming the file and the problem', async () => {
    const { writeFileSync } = await import('node:fs');
    const good = readFileSync(join(ROOT, 'llama-nf4', 'model.safetensors'));
    const n = Number(good.readBigUInt64LE(0));
    const dir = join(tmp, 'bad');
    (await import('node:fs')).mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cut.safetensors'), good.subarray(0, 8 + n + 100)); // data cut short
    const huge = Buffer.from(good);
    huge.writeBigUInt64LE(1n << 40n, 0); // header length beyond the file
    writeFileSync(join(dir, 'len.safetensors'), huge);
    const src = await localSource(dir);
    for (const [file, word] of [['cut.safetensors', 'bytes'], ['len.safetensors', 'header']] as const) {
      const e = await SafetensorsFile.open(await src.open(file)).then(() => null, (x: unknown) => x as { code: string; file: string; message: string });
      expect(e?.code, file).toBe('MALFORMED_FILE');
      expect(e?.file).toBe(file);
      expect(e?.message).toContain(file);
      expect(e?.message.toLowerCase()).toContain(word);
    }
  });
});

describe('writing bitsandbytes checkpoints', () => {
  for (const [variant, opts] of Object.entries(OPTIONS)) {
    it(`${variant}: quantize-on-load + save gives what transformers saved`, async () => {
      const base = manifest.variants[variant]!.base;
      const q = opts as { quantType: 'nf4' | 'fp4' | 'int8'; doubleQuant?: boolean };
      const events: ProgressEvent[] = [];
      const weights = await collect(join(ROOT, base), { quantization: { quantType: q.quantType, doubleQuant: q.doubleQuant ?? false }, onProgress: (e: ProgressEvent) => events.push(e), progressThrottleMs: 0 });
      const out = join(tmp, variant);
      const modelConfig = JSON.parse(readFileSync(join(ROOT, variant, 'config.json'), 'utf8'));
      const qcfgTheirs = modelConfig.quantization_config;
      delete modelConfig.quantization_config;
      await saveBnbCheckpoint(out, weights.values(), modelConfig, bnbQuantizationConfig(opts as never));
      const written = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      expect(written.quantization_config).toEqual(qcfgTheirs);
      // Python must read the threshold as a float (transformers checks isinstance(..., float)).
      expect(readFileSync(join(out, 'config.json'), 'utf8')).toContain('"llm_int8_threshold": 6.0');

      const ours = await tensorsOf(join(out, 'model.safetensors'));
      const theirs = await tensorsOf(join(ROOT, variant, 'model.safetensors'));
      expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
      const differing: string[] = [];
      for (const [name, t] of theirs) {
        const o = ours.get(name)!;
        expect([o.dtype, o.shape], name).toEqual([t.dtype, t.shape]);
        if (!Buffer.from(o.data).equals(Buffer.from(t.data))) differing.push(name);
      }
      // Double quantization: the offset is an f64 mean here, torch's f32 sum there (see README);
      // the nested codes and the JSON's nested_offset may then differ in rare cases. Nothing else may.
      for (const name of differing) expect(name, `${variant}: ${name} differs`).toMatch(/\.weight\.(absmax|quant_state\.bitsandbytes__(nf4|fp4))$/);
      if (differing.length === 0) {
        // Same tensors, same order and metadata: the files are byte-identical.
        expect(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(ROOT, variant, 'model.safetensors')))).toBe(true);
      }
      // Progress: monotone, ends with everything done.
      const last = events.at(-1)!;
      expect(last.phase).toBe('done');
      expect(last.bytesDone).toBe(last.bytesTotal);
      expect(last.tensorsDone).toBe(last.tensorsTotal);
      for (let i = 1; i < events.length; i++) expect(events[i]!.bytesDone).toBeGreaterThanOrEqual(events[i - 1]!.bytesDone);
    });
  }
});
