// Model loading and generation, run the same way by every runtime (Node in
// test/runtimes.test.ts, Deno in deno-check.ts, Chromium in browser/main.js): the tiny random
// Llama of test/fixtures/reference-logits/llama (config.json + model.safetensors, given as Blobs
// so that no runtime needs a file system or a Range-capable server) in fp32 and quantized to NF4
// while it loads; one forward pass and 16 greedy tokens each. Plain JavaScript, no imports.

export const MODEL_FILES = ['config.json', 'model.safetensors'];
const INPUT_IDS = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 84];

function hex(f32) {
  const u8 = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  let s = '';
  for (let i = 0; i < u8.length; i++) s += (u8[i] < 16 ? '0' : '') + u8[i].toString(16);
  return s;
}

/**
 * @param lowbit the module namespace of dist/index.js, after `await init()`
 * @param files Map of MODEL_FILES names to Blobs
 */
export async function runGenerateCheck(lowbit, files) {
  const result = {};
  const variants = { fp32: undefined, nf4: new lowbit.BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }) };
  for (const [name, quantizationConfig] of Object.entries(variants)) {
    const model = await lowbit.AutoModelForCausalLM.fromPretrained(files, { maxPositions: 64, tokenizer: false, ...(quantizationConfig ? { quantizationConfig } : {}) });
    try {
      const logits = await model.forward(INPUT_IDS, 0);
      const tokens = await model.generate({ inputIds: INPUT_IDS, maxNewTokens: 16, eosTokenIds: [] });
      result[name] = { logits: hex(logits), tokens, footprint: model.getMemoryFootprint().total };
    } finally {
      model.dispose();
    }
  }
  return result;
}
