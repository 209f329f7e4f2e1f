/**
 * fromPretrained builds each module as soon as its tensors have arrived: any tensor order in the
 * file gives the same model, and a load that fails midway (abort, missing tensor) frees every
 * handle it had built on the backend.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { init, AutoModelForCausalLM, BitsAndBytesConfig, CpuBackend, localSource, SafetensorsFile, writeSafetensorsFile, LowbitError, type TensorToSave } from '../dist/index.js';

const ROOT = fileURLToPath(new URL('./fixtures/reference-logits/', import.meta.url));
const NF4_DQ = () => new BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true });

beforeAll(async () => {
  await init();
});

async function tensorsOf(model: string): Promise<TensorToSave[]> {
  const st = await SafetensorsFile.open(await (await localSource(`${ROOT}${model}`)).open('model.safetensors'));
  try {
    const out: TensorToSave[] = [];
    for (const t of st.tensors.values()) out.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await st.read(t.name) });
    return out;
  } finally {
    await st.source.close?.();
  }
}

/** A deterministic shuffle (mulberry32), so a failure is reproducible. */
function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A checkpoint directory with these tensors in this order in the file, and this config. */
async function writeModel(tensors: TensorToSave[], config: Record<string, unknown>, referenceOrder: boolean): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-stream-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensorsFile(join(dir, 'model.safetensors'), tensors, { format: 'pt' }, { referenceOrder });
  return dir;
}

async function fileOrder(dir: string): Promise<string[]> {
  const st = await SafetensorsFile.open(await (await localSource(dir)).open('model.safetensors'));
  await st.source.close?.();
  return [...st.tensors.values()].sort((a, b) => a.start - b.start).map((t) => t.name);
}

/** The module ('model.layers.1', 'h.0', …) of a tensor name, for checking that a file interleaves them. */
const moduleKey = (n: string) => /^(.*?(?:layers|h)\.\d+)\./.exec(n)?.[1] ?? n.split('.').slice(0, -1).join('.');

/** Times the file order switches module: a sorted file switches once per module, a shuffled one far more. */
function switches(order: string[]): number {
  let n = 0;
  for (let i = 1; i < order.length; i++) if (moduleKey(order[i]!) !== moduleKey(order[i - 1]!)) n++;
  return n;
}

const ids = [1, 5, 9, 2, 7, 3];

/** A real CpuBackend whose every weight / cache handle is remembered, to check what was freed. */
async function trackedBackend(threads: number, onLinear?: (n: number) => void) {
  const b = await CpuBackend.create({ threads });
  const made: { disposed: boolean }[] = [];
  let linears = 0;
  for (const k of ['linear', 'embedding', 'kvCache'] as const) {
    const orig = (b[k] as (...a: unknown[]) => { disposed: boolean }).bind(b);
    (b as unknown as Record<string, unknown>)[k] = (...a: unknown[]) => {
      const h = orig(...a);
      made.push(h);
      if (k === 'linear') onLinear?.(++linears);
      return h;
    };
  }
  return { b, made };
}

describe('modules built as their tensors stream in', () => {
  for (const model of ['llama', 'gpt2', 'qwen2']) {
    it(`${model}: a file with its tensors shuffled loads the same model (nf4 + dq, fp32)`, async () => {
      const tensors = await tensorsOf(model);
      const config = JSON.parse(readFileSync(`${ROOT}${model}/config.json`, 'utf8'));
      const dir = await writeModel(shuffled(tensors, 42), config, false);
      const order = await fileOrder(dir);
      const sorted = await fileOrder(`${ROOT}${model}`);
      // The shuffled file really interleaves the modules' tensors.
      expect(switches(order)).toBeGreaterThan(2 * switches(sorted));
      for (const q of [NF4_DQ(), undefined]) {
        const opts = q ? { quantizationConfig: q, tokenizer: false } : { tokenizer: false };
        const a = await AutoModelForCausalLM.fromPretrained(`${ROOT}${model}`, opts);
        const b = await AutoModelForCausalLM.fromPretrained(dir, opts);
        expect(b.deviceMap).toEqual(a.deviceMap);
        expect(Object.keys(b.deviceMap)[0]).toBe(model === 'gpt2' ? 'transformer.wte' : 'model.embed_tokens');
        expect(b.getMemoryFootprint()).toEqual(a.getMemoryFootprint());
        expect(await b.forward(ids, 0)).toEqual(await a.forward(ids, 0));
        a.dispose();
        b.dispose();
      }
    });
  }

  it('a tied Llama head (no lm_head.weight) waits for the embedding, in any file order', async () => {
    const tensors = (await tensorsOf('llama')).filter((t) => t.name !== 'lm_head.weight');
    const config = { ...JSON.parse(readFileSync(`${ROOT}llama/config.json`, 'utf8')), tie_word_embeddings: true };
    const sortedDir = await writeModel(tensors, config, true);
    const opts = { quantizationConfig: NF4_DQ(), tokenizer: false };
    const ref = await AutoModelForCausalLM.fromPretrained(sortedDir, opts);
    const want = await ref.forward(ids, 0);
    ref.dispose();
    for (const seed of [1, 2, 3]) {
      const dir = await writeModel(shuffled(tensors, seed), config, false);
      const m = await AutoModelForCausalLM.fromPretrained(dir, opts);
      expect(m.getMemoryFootprint().byModule['lm_head']).toBeUndefined(); // shares the embedding
      expect(await m.forward(ids, 0)).toEqual(want);
      m.dispose();
    }
  });

  for (const threads of [1, 2]) {
    it(`an abort midway frees every handle built so far (CpuBackend, ${threads} thread${threads > 1 ? 's' : ''})`, async () => {
      const ac = new AbortController();
      // Abort once the first decoder layer has been built (7 linears), while tensors are still coming.
      const { b, made } = await trackedBackend(threads, (n) => n === 7 && ac.abort());
      const dir = await writeModel(shuffled(await tensorsOf('llama'), 7), JSON.parse(readFileSync(`${ROOT}llama/config.json`, 'utf8')), false);
      let progressDone = 0;
      let progressTotal = 0;
      const err = await AutoModelForCausalLM.fromPretrained(dir, {
        backend: b, quantizationConfig: NF4_DQ(), tokenizer: false, signal: ac.signal,
        onProgress: (e) => { progressDone = e.tensorsDone; progressTotal = e.tensorsTotal ?? 0; },
      }).catch((e: unknown) => e);
      // Aborts are LowbitError('ABORTED') with the signal's reason as cause.
      expect((err as LowbitError).code).toBe('ABORTED');
      expect(((err as LowbitError).cause as Error).name).toBe('AbortError');
      // A module was built before the last tensor was read: the model was made as it streamed in.
      expect(made.length).toBeGreaterThanOrEqual(7);
      expect(progressDone).toBeLessThan(progressTotal);
      expect(made.filter((h) => !h.disposed)).toEqual([]);
      // The caller's backend is still usable (not disposed by the failed load).
      const m = await AutoModelForCausalLM.fromPretrained(dir, { backend: b, quantizationConfig: NF4_DQ(), tokenizer: false });
      expect((await m.forward(ids, 0)).length).toBe(ids.length * m.config.vocabSize);
      m.dispose();
      b.dispose();
    });
  }

  it('a missing tensor is MALFORMED_FILE naming it, refused before anything is built', async () => {
    const tensors = (await tensorsOf('llama')).filter((t) => t.name !== 'model.layers.0.mlp.up_proj.weight');
    const dir = await writeModel(tensors, JSON.parse(readFileSync(`${ROOT}llama/config.json`, 'utf8')), true);
    const { b, made } = await trackedBackend(1);
    const err = await AutoModelForCausalLM.fromPretrained(dir, { backend: b, quantizationConfig: NF4_DQ(), tokenizer: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LowbitError);
    expect((err as LowbitError).code).toBe('MALFORMED_FILE');
    expect((err as LowbitError).message).toContain('model.layers.0.mlp.up_proj.weight');
    // The tensors are checked against the config from the headers (ts/models/validate.ts).
    expect(made.length).toBe(0);
    b.dispose();
  });
});
