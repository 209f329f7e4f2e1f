/**
 * GGUF through the TypeScript API: header and metadata, dequantization against the `gguf`
 * Python package's own values (test/fixtures/gguf, scripts/fixtures/make_gguf_fixtures.py),
 * the incremental header read, errors naming the file, and quantize-on-load from GGUF.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init, localSource, GgufFile, loadWeights, LowbitError, dequantize4bit, type ByteRange } from '../dist/index.js';

const DIR = fileURLToPath(new URL('./fixtures/gguf/', import.meta.url));
const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
const reference = readFileSync(join(DIR, 'reference.bin'));
const tmp = mkdtempSync(join(tmpdir(), 'lowbit-gguf-'));

beforeAll(async () => {
  await init();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Counts reads, to see the header come in pieces. */
function counting(r: ByteRange): ByteRange & { reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = [];
  return { name: r.name, size: r.size, reads, read: (o, n, s) => (reads.push([o, n]), r.read(o, n, s)), close: () => r.close?.() ?? Promise.resolve() };
}

describe('GGUF', () => {
  for (const f of manifest.files) {
    it(`${f.file}: header, metadata and every tensor dequantized like gguf-py`, async () => {
      const src = await localSource(DIR);
      const range = counting(await src.open(f.file));
      const gg = await GgufFile.open(range, { initialBytes: 40 });
      expect(range.reads.length).toBeGreaterThan(1); // grew the prefix as the parser asked
      expect([gg.version, gg.alignment, gg.dataStart]).toEqual([f.version, f.alignment, f.data_start]);
      expect([...gg.metadata.keys()]).toEqual(f.metadata.map((m: { key: string }) => m.key));
      expect(gg.metadata.get('general.architecture')).toBe('lowbit-test');
      for (const t of f.tensors) {
        const info = gg.info(t.name);
        expect(info.shape).toEqual([...t.ne].reverse());
        expect([info.ggmlType, info.offset, info.nBytes]).toEqual([t.type_name, t.offset, t.n_bytes]);
        const ours = await gg.dequantize(t.name, 'float32');
        const theirs = new Uint8Array(reference.subarray(t.ref_offset, t.ref_offset + t.ref_nbytes));
        expect(Buffer.from(ours.buffer, ours.byteOffset, ours.byteLength).equals(Buffer.from(theirs)), t.name).toBe(true);
      }
      await range.close();
    });
  }

  it('a truncated or corrupted file gives MALFORMED_FILE naming it', async () => {
    const good = readFileSync(join(DIR, 'types_v3.gguf'));
    writeFileSync(join(tmp, 'cut.gguf'), good.subarray(0, 1000));
    const bad = Buffer.from(good);
    bad.write('GGUX', 0);
    writeFileSync(join(tmp, 'magic.gguf'), bad);
    const src = await localSource(tmp);
    for (const [file, word] of [['cut.gguf', ''], ['magic.gguf', 'magic']]) {
      const e = await GgufFile.open(await src.open(file!)).then(() => null, (x: unknown) => x);
      expect(e).toBeInstanceOf(LowbitError);
      expect((e as LowbitError).code).toBe('MALFORMED_FILE');
      expect((e as LowbitError).file).toBe(file);
      expect((e as LowbitError).message).toContain(file!);
      expect((e as LowbitError).message.toLowerCase()).toContain(word!);
    }
  });

  it('quantize-on-load from GGUF: ggml blocks -> f32 -> NF4; embeddings and norms stay as they are', async () => {
    const d = join(tmp, 'model');
    rmSync(d, { recursive: true, force: true });
    (await import('node:fs')).mkdirSync(d);
    copyFileSync(join(DIR, 'small_v2.gguf'), join(d, 'model.gguf'));
    const src = await localSource(d);
    const gg = await GgufFile.open(await src.open('model.gguf'));
    const out = new Map<string, any>();
    for await (const w of loadWeights(src, { quantization: { quantType: 'nf4', blocksize: 64 } })) out.set(w.name, w);
    expect(out.get('token_embd.weight').kind).toBe('dense');
    expect(out.get('output_norm.weight').kind).toBe('dense');
    const q = out.get('blk.0.attn_q.weight');
    expect(q.kind).toBe('4bit');
    expect(q.quantState.shape).toEqual([2, 64]);
    // NF4 of the dequantized Q8_0 values: within NF4's error of them.
    const ref = await gg.dequantize('blk.0.attn_q.weight');
    const back = dequantize4bit(q.packed, q.quantState, { outDtype: 'float32' });
    const am = q.quantState.absmaxF32();
    for (let i = 0; i < ref.length; i++) expect(Math.abs(ref[i]! - back[i]!)).toBeLessThanOrEqual(am[i >> 6]! * 0.152);
  });
});
