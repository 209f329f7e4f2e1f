// Browser side of test/webgpu-browser.test.ts: loads the tiny Llama of
// test/fixtures/reference-logits/llama over HTTP (as Blobs) onto the page's navigator.gpu with
// deviceMap 'gpu', quantized to NF4 while it loads, and generates 16 greedy tokens; then the
// same on the CPU backend (wasm) for comparison; and decode attention against a long context
// (the split path, test/runtimes/attention-split-check.js); and a Q8_0 GGUF of the model on both
// (the GPU's native block-wise 8-bit kernel); and the 4-bit decode GEMV on f16 activations where
// the adapter has shader-f16 (test/runtimes/f16-activation-check.js). The result lands on
// window.__lowbitResult.
import * as lowbit from '/dist/index.js';
import { splitAttentionCheck } from '/test/runtimes/attention-split-check.js';
import { f16ActivationCheck } from '/test/runtimes/f16-activation-check.js';

const status = document.getElementById('status');
const INPUT_IDS = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 84];
try {
  await lowbit.init();
  const base = '/test/fixtures/reference-logits/llama/';
  const files = new Map(await Promise.all(['config.json', 'model.safetensors'].map(async (f) => [f, await fetch(base + f).then((r) => r.blob())])));
  const reference = await fetch(base + 'reference.json').then((r) => r.json());
  const adapter = await navigator.gpu?.requestAdapter();
  const info = adapter?.info ?? {};
  const result = { adapter: adapter ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : null, reference: reference.fp32.greedy_tokens.slice(0, 16) };
  for (const [name, quantizationConfig] of Object.entries({ fp32: undefined, nf4: new lowbit.BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }) })) {
    for (const deviceMap of ['gpu', 'cpu']) {
      // the CPU reference on its exact f32 kernels: the WebGPU kernels compute in f32
      const model = await lowbit.AutoModelForCausalLM.fromPretrained(files, { deviceMap, cpuKernels: 'exact', maxPositions: 64, tokenizer: false, ...(quantizationConfig ? { quantizationConfig } : {}) });
      try {
        const logits = await model.forward(INPUT_IDS, 0);
        const tokens = await model.generate({ inputIds: INPUT_IDS, maxNewTokens: 16, eosTokenIds: [] });
        result[`${name}-${deviceMap}`] = { tokens, logits: Array.from(logits), device: Object.keys(model.getMemoryFootprint().byDevice) };
      } finally {
        model.dispose();
      }
    }
  }
  // a Q8_0 GGUF of the same model (one Blob): its linears run on the GPU's block-wise 8-bit kernel
  const q8 = await fetch('/test/fixtures/gguf-model/llama-q8_0.gguf').then((r) => r.blob());
  for (const deviceMap of ['gpu', 'cpu']) {
    const model = await lowbit.AutoModelForCausalLM.fromPretrained(q8, { deviceMap, cpuKernels: 'exact', maxPositions: 64, tokenizer: false });
    try {
      const logits = await model.forward(INPUT_IDS, 0);
      const tokens = await model.generate({ inputIds: INPUT_IDS, maxNewTokens: 16, eosTokenIds: [] });
      const fp = model.getMemoryFootprint();
      result[`q8_0-${deviceMap}`] = { tokens, logits: Array.from(logits), device: Object.keys(fp.byDevice), conversions: model.formatConversions, oProjBytes: fp.byModule['model.layers.0.self_attn.o_proj'] };
    } finally {
      model.dispose();
    }
  }
  // NF4 decode on integer activations (matmul4.wgsl INT_ACT) beside the CPU's integer kernels
  // (the same 14-bit scheme): 16 greedy tokens, and the logits of one more decode step
  for (const [deviceMap, options] of [['gpu', { webgpu: { intActivations: true } }], ['cpu', { cpuKernels: 'fast' }]]) {
    const model = await lowbit.AutoModelForCausalLM.fromPretrained(files, { deviceMap, maxPositions: 64, tokenizer: false, quantizationConfig: new lowbit.BitsAndBytesConfig({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }), ...options });
    try {
      const tokens = await model.generate({ inputIds: INPUT_IDS, maxNewTokens: 16, eosTokenIds: [] });
      await model.forward(INPUT_IDS, 0);
      const step = await model.forward([tokens[0]], INPUT_IDS.length);
      result[`nf4-int-${deviceMap}`] = { tokens, logits: Array.from(step), device: Object.keys(model.getMemoryFootprint().byDevice) };
    } finally {
      model.dispose();
    }
  }
  const gpu = await lowbit.WebGpuBackend.create();
  try {
    result.attention = await splitAttentionCheck(lowbit, gpu);
  } finally {
    gpu.dispose();
  }
  result.f16Activations = await f16ActivationCheck(lowbit);
  window.__lowbitResult = { ok: true, runtime: navigator.userAgent, result };
  status.textContent = 'done';
} catch (e) {
  window.__lowbitResult = { ok: false, error: `${e?.name}: ${e?.message}${e?.code ? ` (${e.code})` : ''}\n${e?.stack ?? ''}` };
  status.textContent = window.__lowbitResult.error;
}
