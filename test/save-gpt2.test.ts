/**
 * GPT-2's Conv1D weights are stored [in, out]; bitsandbytes' Linear4bit / Linear8bitLt hold
 * [out, in]. loadWeights + saveBnbCheckpoint on GPT-2 must write the quantized weights the way
 * transformers + bitsandbytes save them (issue 11: they were written untransposed, so
 * transformers crashed on int8 and computed wrong logits on nf4 + dq).
 *
 * Checked bit for bit against the sha256 of the tensors transformers itself saved for the GPT-2
 * parity fixture (test/fixtures/reference-logits/gpt2/reference.json, variants[v].tensor_sha256,
 * made by scripts/fixtures/make_reference_logits.py), then loaded back by lowbit and compared with
 * transformers' logits for the same variant.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, bnbQuantizationConfig, init, loadWeights, localSource, saveBnbCheckpoint, type LoadedWeight } from '../dist/index.js';
import { expectParity, REFERENCE_ROOT } from './helpers/parity.js';
import { readSafetensors } from './hostile/files.js';

const GPT2 = `${REFERENCE_ROOT}gpt2/`;
const reference = JSON.parse(readFileSync(`${GPT2}reference.json`, 'utf8')) as {
  input_ids: number[];
  variants: Record<string, { tensor_sha256: Record<string, { dtype: string; shape: number[]; sha256: string }> }>;
};
const DTYPES: Record<string, string> = { U8: 'uint8', I8: 'int8', F32: 'float32', F16: 'float16' };
const tmp = mkdtempSync(join(tmpdir(), 'lowbit-save-gpt2-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const VARIANTS = {
  'nf4-dq': { quantType: 'nf4', doubleQuant: true },
  nf4: { quantType: 'nf4', doubleQuant: false },
  int8: { quantType: 'int8', doubleQuant: false },
} as const;

describe('saveBnbCheckpoint on GPT-2 (Conv1D weights)', () => {
  for (const [variant, q] of Object.entries(VARIANTS)) {
    it(`${variant}: the saved quantized tensors are transformers' own, and load back to transformers' logits`, async () => {
      await init();
      const weights: LoadedWeight[] = [];
      for await (const w of loadWeights(localSource(GPT2), { quantization: { quantType: q.quantType, doubleQuant: q.doubleQuant } })) weights.push(w);
      const out = join(tmp, variant);
      const config = JSON.parse(readFileSync(`${GPT2}config.json`, 'utf8'));
      await saveBnbCheckpoint(out, weights, config, bnbQuantizationConfig({ quantType: q.quantType, doubleQuant: q.doubleQuant }));

      const saved = new Map(readSafetensors(join(out, 'model.safetensors')).map((t) => [t.name, t]));
      const theirs = reference.variants[variant]!.tensor_sha256;
      expect(Object.keys(theirs).length).toBeGreaterThan(0);
      const differing: string[] = [];
      for (const [name, t] of Object.entries(theirs)) {
        const ours = saved.get(name);
        const same = ours !== undefined && DTYPES[ours.dtype] === t.dtype && JSON.stringify(ours.shape) === JSON.stringify(t.shape) && createHash('sha256').update(ours.data).digest('hex') === t.sha256;
        if (!same) differing.push(`${name} (ours ${ours ? `${ours.dtype} [${ours.shape}]` : 'missing'}, theirs ${t.dtype} [${t.shape}])`);
      }
      // Double quantization: the offset is an f64 mean here, torch's f32 sum there (README,
      // test/checkpoints.test.ts), so the nested statistics may differ in the last bit. The packed
      // codes, SCB and int8 codes — what the layout decides — must be transformers' own.
      const allowed = q.doubleQuant ? /\.weight\.(absmax|nested_absmax|quant_state\.bitsandbytes__(nf4|fp4)) / : /^$/;
      expect(differing.filter((d) => !allowed.test(d))).toEqual([]);
      expect(differing.length).toBeLessThan(Object.keys(theirs).length / 4);

      const m = await AutoModelForCausalLM.fromPretrained(out, { tokenizer: false });
      try {
        expectParity('gpt2', variant, await m.forward(reference.input_ids, 0));
      } finally {
        m.dispose();
      }
    });
  }
});
