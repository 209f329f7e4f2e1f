/**
 * The hostile model corpus (issue 11): model folders built from the tiny fixtures with one thing
 * wrong each, and calls that misuse a model. Every case must end in a LowbitError with the
 * expected code, or in a correct result (checked against the fixtures' transformers reference).
 * Each case names its class; test/hostile-models.test.ts runs them in child processes.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { byteLevelAlphabet, byteLevelTokenizerJson, f32Bytes, readSafetensors, withF32, writeGguf, writeSafetensors, type GgufMeta, type GgufTensor, type RawTensor } from './files.js';

const FIX = fileURLToPath(new URL('../fixtures/', import.meta.url));
const LLAMA = `${FIX}reference-logits/llama/`;
const GPT2 = `${FIX}reference-logits/gpt2/`;
const BNB = `${FIX}bnb-checkpoints/`;

type Json = Record<string, unknown>;
const llamaRef = JSON.parse(readFileSync(`${LLAMA}reference.json`, 'utf8')) as { input_ids: number[]; fp32: { greedy_tokens: number[] } };
const gpt2Ref = JSON.parse(readFileSync(`${GPT2}reference.json`, 'utf8')) as { input_ids: number[]; fp32: { greedy_tokens: number[] } };
export const REF = { ids: llamaRef.input_ids, greedy: llamaRef.fp32.greedy_tokens, gpt2Ids: gpt2Ref.input_ids, gpt2Greedy: gpt2Ref.fp32.greedy_tokens };

/** What a case runs in the child (test/hostile/runner.mjs scenarios) besides its folder. */
export interface Job {
  scenario: 'compare' | 'load' | 'generate' | 'forward' | 'template' | 'chat' | 'concurrent' | 'abortTimeout' | 'abortWhileWaiting' | 'timers';
  [k: string]: unknown;
}

export interface Outcome {
  status: 'ok' | 'error' | 'crash';
  value?: any;
  lowbit?: boolean;
  code?: string;
  message?: string;
  cause?: string;
  ms?: number;
}

export interface Case {
  id: string;
  cls: 'config' | 'options' | 'tensors' | 'prequantized' | 'shards' | 'gguf' | 'tokenizer' | 'template' | 'generate-args' | 'concurrency' | 'abort';
  /** Writes the model folder into `dir`. */
  build: (dir: string) => void;
  job: Job;
  /** A LowbitError with one of these codes (and the message matching), or a check of the value. */
  expect: { code: string | string[]; message?: RegExp } | { ok: (value: any) => void };
}

// --- folders -------------------------------------------------------------------------------------

const llamaConfig = () => JSON.parse(readFileSync(`${LLAMA}config.json`, 'utf8')) as Json;
const llamaTensors = () => readSafetensors(`${LLAMA}model.safetensors`);
const gpt2Config = () => JSON.parse(readFileSync(`${GPT2}config.json`, 'utf8')) as Json;
const gpt2Tensors = () => readSafetensors(`${GPT2}model.safetensors`);

function llamaDir(o: { config?: (c: Json) => unknown; configText?: string; tensors?: (t: RawTensor[]) => RawTensor[]; files?: Record<string, string> } = {}) {
  return (dir: string) => {
    mkdirSync(dir, { recursive: true });
    const c = llamaConfig();
    const replaced = o.config?.(c);
    writeFileSync(join(dir, 'config.json'), o.configText ?? JSON.stringify(replaced === undefined ? c : replaced));
    writeSafetensors(join(dir, 'model.safetensors'), o.tensors ? o.tensors(llamaTensors()) : llamaTensors());
    for (const [name, text] of Object.entries(o.files ?? {})) writeFileSync(join(dir, name), text);
  };
}

function gpt2Dir(o: { config?: (c: Json) => void } = {}) {
  return (dir: string) => {
    mkdirSync(dir, { recursive: true });
    const c = gpt2Config();
    o.config?.(c);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
    writeSafetensors(join(dir, 'model.safetensors'), gpt2Tensors());
  };
}

/** The tiny GGUF fixture as metadata + tensors, filled by the test before cases are built. */
export const ggufBase: { meta: Map<string, GgufMeta>; tensors: GgufTensor[] } = { meta: new Map(), tensors: [] };

function ggufDir(o: { meta?: (m: Map<string, GgufMeta>) => void; tensors?: (t: GgufTensor[]) => GgufTensor[] } = {}) {
  return (dir: string) => {
    mkdirSync(dir, { recursive: true });
    const meta = new Map(ggufBase.meta);
    o.meta?.(meta);
    writeGguf(join(dir, 'model.gguf'), meta, o.tensors ? o.tensors(ggufBase.tensors.map((t) => ({ ...t }))) : ggufBase.tensors);
  };
}

/** GGUF metadata of a byte-level BPE tokenizer (256 tokens) with a chat template. */
function ggufChat(template: string) {
  return (m: Map<string, GgufMeta>) => {
    m.set('tokenizer.ggml.model', { type: 'str', value: 'gpt2' });
    m.set('tokenizer.ggml.pre', { type: 'str', value: 'gpt-2' });
    m.set('tokenizer.ggml.tokens', { type: 'arr', of: 'str', value: byteLevelAlphabet() });
    m.set('tokenizer.ggml.token_type', { type: 'arr', of: 'i32', value: Array(256).fill(1) });
    m.set('tokenizer.ggml.merges', { type: 'arr', of: 'str', value: [] });
    m.delete('tokenizer.ggml.scores');
    m.set('tokenizer.chat_template', { type: 'str', value: template });
  };
}

const u32 = (value: number): GgufMeta => ({ type: 'u32', value });
const f32 = (value: number): GgufMeta => ({ type: 'f32', value });
const tokenizerFiles = (config: Json = {}) => ({ 'tokenizer.json': JSON.stringify(byteLevelTokenizerJson()), 'tokenizer_config.json': JSON.stringify({ eos_token: '\u0002', ...config }) });

// --- expectations --------------------------------------------------------------------------------

const refused = (code: string | string[], message?: RegExp) => ({ code, ...(message ? { message } : {}) });
const greedy = { inputIds: REF.ids, maxNewTokens: 32, eosTokenIds: [] };
const equalsReference = { ok: (v: any) => expectEqual(v, REF.greedy) };
function expectEqual(a: unknown, b: unknown): void {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`);
}
function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

const load = (opts: Json = { tokenizer: false }): Job => ({ scenario: 'load', load: opts });
const gen = (generate: Json, loadOpts: Json = { tokenizer: false }): Job => ({ scenario: 'generate', load: loadOpts, generate });

const setConfig = (k: string, v: unknown) => llamaDir({ config: (c) => void (c[k] = v) });
const dropTensor = (name: string) => (t: RawTensor[]) => t.filter((x) => x.name !== name);
const byName = (t: RawTensor[], name: string) => t.find((x) => x.name === name)!;

/** Layer 0's tensors renamed to `layer`, added to the file. */
const extraLayer = (layer: number) => (t: RawTensor[]) => [...t, ...t.filter((x) => x.name.startsWith('model.layers.0.')).map((x) => ({ ...x, name: x.name.replace('model.layers.0.', `model.layers.${layer}.`) }))];

export function hostileCases(): Case[] {
  const cases: Case[] = [];
  const add = (cls: Case['cls'], id: string, build: Case['build'], job: Job, expect: Case['expect']) => cases.push({ cls, id, build, job, expect });

  // --- config.json ------------------------------------------------------------------------------
  add('config', 'config.json is null', llamaDir({ configText: 'null' }), load(), refused('MALFORMED_FILE', /config\.json/));
  add('config', 'config.json is an array', llamaDir({ configText: '[1, 2]' }), load(), refused('MALFORMED_FILE'));
  add('config', 'config.json is not JSON', llamaDir({ configText: '{"model_type": "llama",' }), load(), refused(['MALFORMED_FILE', 'PARSE']));
  add('config', 'num_hidden_layers 1e9', setConfig('num_hidden_layers', 1e9), load(), refused('MALFORMED_FILE', /num_hidden_layers/));
  add('config', 'num_hidden_layers 4e9', setConfig('num_hidden_layers', 4e9), load(), refused('MALFORMED_FILE', /num_hidden_layers/));
  add('config', 'num_hidden_layers 1.5', setConfig('num_hidden_layers', 1.5), load(), refused('MALFORMED_FILE', /num_hidden_layers/));
  add('config', 'num_hidden_layers -2', setConfig('num_hidden_layers', -2), load(), refused('MALFORMED_FILE', /num_hidden_layers/));
  add('config', 'num_hidden_layers 0', setConfig('num_hidden_layers', 0), load(), refused('MALFORMED_FILE', /num_hidden_layers/));
  add('config', 'num_hidden_layers "2" (a string)', setConfig('num_hidden_layers', '2'), load(), refused('MALFORMED_FILE', /num_hidden_layers/));
  add('config', 'num_hidden_layers 1 with 2 layers of tensors', setConfig('num_hidden_layers', 1), load(), refused('MALFORMED_FILE', /layer 1/));
  add('config', 'num_hidden_layers 3 with 2 layers of tensors', setConfig('num_hidden_layers', 3), load(), refused('MALFORMED_FILE', /model\.layers\.2\..*missing/));
  add('config', 'head_dim 1e9', setConfig('head_dim', 1e9), load(), refused('MALFORMED_FILE', /head_dim/));
  add('config', 'head_dim 15 (odd)', setConfig('head_dim', 15), load(), refused('MALFORMED_FILE', /head_dim/));
  add('config', 'head_dim 32 (disagrees with q_proj)', setConfig('head_dim', 32), load(), refused('MALFORMED_FILE', /model\.layers\.0\.self_attn/));
  add('config', 'num_attention_heads 3 (q_proj rows disagree)', setConfig('num_attention_heads', 3), load(), refused('MALFORMED_FILE'));
  add('config', 'num_key_value_heads 3 (does not divide 4 heads)', setConfig('num_key_value_heads', 3), load(), refused('MALFORMED_FILE', /num_key_value_heads/));
  add('config', 'num_key_value_heads 8 (more than heads)', setConfig('num_key_value_heads', 8), load(), refused('MALFORMED_FILE', /num_key_value_heads/));
  add('config', 'vocab_size 255 (embedding has 256 rows)', setConfig('vocab_size', 255), load(), refused('MALFORMED_FILE', /embed_tokens|lm_head/));
  add('config', 'vocab_size 2^23', setConfig('vocab_size', 2 ** 23), load(), refused('MALFORMED_FILE', /vocab_size/));
  add('config', 'hidden_size 1e6', setConfig('hidden_size', 1e6), load(), refused('MALFORMED_FILE', /hidden_size/));
  add('config', 'hidden_size 63.5', setConfig('hidden_size', 63.5), load(), refused('MALFORMED_FILE', /hidden_size/));
  add('config', 'intermediate_size 256 (MLP tensors are 128)', setConfig('intermediate_size', 256), load(), refused('MALFORMED_FILE', /mlp/));
  add('config', 'max_position_embeddings 2e9', setConfig('max_position_embeddings', 2e9), load(), refused('MALFORMED_FILE', /max_position_embeddings/));
  add('config', 'rms_norm_eps 0', setConfig('rms_norm_eps', 0), load(), refused('MALFORMED_FILE', /rms_norm_eps/));
  add('config', 'rms_norm_eps -1', setConfig('rms_norm_eps', -1), load(), refused('MALFORMED_FILE', /rms_norm_eps/));
  add('config', 'rms_norm_eps "1e-6" (a string)', setConfig('rms_norm_eps', '1e-6'), load(), refused('MALFORMED_FILE', /rms_norm_eps/));
  add('config', 'rope theta -5', llamaDir({ config: (c) => void (c.rope_parameters = { rope_theta: -5, rope_type: 'default' }) }), load(), refused('MALFORMED_FILE', /rope_theta/));
  add('config', 'llama3 rope factor -1', llamaDir({ config: (c) => void (delete c.rope_parameters, c.rope_scaling = { rope_type: 'llama3', factor: -1, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }) }), load(), refused('MALFORMED_FILE', /factor/));
  add('config', "model_type 'bert'", setConfig('model_type', 'bert'), load(), refused('UNSUPPORTED_DTYPE', /bert/));
  add('config', 'eos_token_id 1.5', setConfig('eos_token_id', 1.5), load(), refused('MALFORMED_FILE', /eos_token_id/));
  add('config', 'bnb compute dtype 5 in quantization_config', setConfig('quantization_config', { quant_method: 'bitsandbytes', bnb_4bit_compute_dtype: 5 }), load(), refused('MALFORMED_FILE', /compute_dtype/));
  add('config', 'gpt2 n_head 5 (does not divide n_embd 64)', gpt2Dir({ config: (c) => void (c.n_head = 5) }), load(), refused('MALFORMED_FILE', /n_head/));
  add('config', 'gpt2 n_positions 64 (wpe has 128 rows)', gpt2Dir({ config: (c) => void (c.n_positions = 64) }), load(), refused('MALFORMED_FILE', /wpe/));
  add('config', 'gpt2 n_layer 3 (2 layers of tensors)', gpt2Dir({ config: (c) => void (c.n_layer = 3) }), load(), refused('MALFORMED_FILE', /missing/));
  add('config', 'gpt2 unchanged: greedy tokens as transformers', gpt2Dir(), gen({ inputIds: REF.gpt2Ids, maxNewTokens: 32, eosTokenIds: [] }), { ok: (v) => expectEqual(v, REF.gpt2Greedy) });

  // --- fromPretrained options ---------------------------------------------------------------------
  const base = llamaDir();
  add('options', 'maxPositions 2e6 without maxMemory: does not fit wasm32', base, load({ tokenizer: false, maxPositions: 2e6 }), refused('OUT_OF_MEMORY', /wasm32/));
  add('options', 'maxPositions 1.5', base, load({ tokenizer: false, maxPositions: 1.5 }), refused('INVALID_ARGUMENT', /maxPositions/));
  add('options', 'maxPositions -1', base, load({ tokenizer: false, maxPositions: -1 }), refused('INVALID_ARGUMENT', /maxPositions/));
  add('options', 'maxPositions 4000 (within wasm32): loads', base, load({ tokenizer: false, maxPositions: 4000 }), { ok: (v) => check(v.maxPositions === 4000, 'maxPositions 4000') });
  add('options', 'gpt2 maxPositions 1000 > n_positions 128', gpt2Dir(), load({ tokenizer: false, maxPositions: 1000 }), refused('INVALID_ARGUMENT', /n_positions/));
  add('options', 'quantizationConfig as a plain object: loads nf4', base, gen(greedy, { tokenizer: false, quantizationConfig: { loadIn4bit: true, bnb4bitQuantType: 'nf4' } }), { ok: (v) => check(Array.isArray(v) && v.length === 32, '32 tokens') });
  add('options', 'quantizationConfig {} (neither 4 nor 8 bit)', base, load({ tokenizer: false, quantizationConfig: {} }), refused('INVALID_ARGUMENT', /loadIn4bit/));
  add('options', "quantizationConfig 'nf4' (a string)", base, load({ tokenizer: false, quantizationConfig: 'nf4' }), refused('INVALID_ARGUMENT', /quantizationConfig/));
  add('options', "signal 'x'", base, load({ tokenizer: false, signal: 'x' }), refused('INVALID_ARGUMENT', /signal/));
  add('options', 'an aborted signal', base, load({ tokenizer: false, signal: { $aborted: 'stop' } }), refused('ABORTED'));
  add('options', "maxMemory { cpu: '1KB' }", base, load({ tokenizer: false, maxMemory: { cpu: '1KB' } }), refused('OUT_OF_MEMORY', /maxMemory\.cpu/));
  add('options', 'backend {} (not a Backend)', base, load({ tokenizer: false, backend: {} }), refused('INVALID_ARGUMENT', /backend/));
  add('options', "llmInt8SkipModules 'lm_head' (not an array)", base, load({ tokenizer: false, quantizationConfig: { loadIn4bit: true, llmInt8SkipModules: 'lm_head' } }), refused('INVALID_ARGUMENT', /llmInt8SkipModules/));
  add('options', 'bnb4bitBlocksize 7', base, load({ tokenizer: false, quantizationConfig: { loadIn4bit: true, bnb4bitBlocksize: 7 } }), refused('UNSUPPORTED_BLOCKSIZE', /bnb4bitBlocksize/));
  add('options', "tokenizer: 'yes'", base, load({ tokenizer: 'yes' }), refused('INVALID_ARGUMENT', /tokenizer/));

  // --- tensors ------------------------------------------------------------------------------------
  add('tensors', 'a layer tensor is missing', llamaDir({ tensors: dropTensor('model.layers.1.mlp.down_proj.weight') }), load(), refused('MALFORMED_FILE', /model\.layers\.1\.mlp\.down_proj\.weight/));
  add('tensors', 'a third layer of tensors past num_hidden_layers 2', llamaDir({ tensors: extraLayer(2) }), load(), refused('MALFORMED_FILE', /layer 2/));
  add('tensors', 'layer 5000 tensors', llamaDir({ tensors: extraLayer(5000) }), load(), refused('MALFORMED_FILE', /layer 5000/));
  add('tensors', 'q_proj with 63 rows', llamaDir({ tensors: (t) => t.map((x) => (x.name === 'model.layers.0.self_attn.q_proj.weight' ? { ...x, shape: [63, 64], data: x.data.slice(0, 63 * 64 * 4) } : x)) }), load(), refused('MALFORMED_FILE', /q_proj/));
  add('tensors', 'embedding with 255 rows', llamaDir({ tensors: (t) => t.map((x) => (x.name === 'model.embed_tokens.weight' ? { ...x, shape: [255, 64], data: x.data.slice(0, 255 * 64 * 4) } : x)) }), load(), refused('MALFORMED_FILE', /embed_tokens/));
  add('tensors', 'a tensor with a zero dimension', llamaDir({ tensors: (t) => [...t, { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32', shape: [0], data: new Uint8Array(0) }] }), load(), refused('MALFORMED_FILE', /dimension/));
  add('tensors', 'NaN in a norm weight (kept dense)', llamaDir({ tensors: (t) => t.map((x) => (x.name === 'model.norm.weight' ? withF32(x, 3, NaN) : x)) }), load(), refused('NON_FINITE', /model\.norm\.weight/));
  add('tensors', 'Inf in lm_head (kept dense)', llamaDir({ tensors: (t) => t.map((x) => (x.name === 'lm_head.weight' ? withF32(x, 0, Infinity) : x)) }), load(), refused('NON_FINITE', /lm_head/));
  add('tensors', 'Inf in a linear quantized to nf4', llamaDir({ tensors: (t) => t.map((x) => (x.name === 'model.layers.0.mlp.up_proj.weight' ? withF32(x, 10, -Infinity) : x)) }), load({ tokenizer: false, quantizationConfig: { $bnb: { loadIn4bit: true, bnb4bitQuantType: 'nf4' } } }), refused('NON_FINITE', /up_proj/));
  add('tensors', 'NaN in a weight with allowNonFinite: loads', llamaDir({ tensors: (t) => t.map((x) => (x.name === 'model.norm.weight' ? withF32(x, 3, NaN) : x)) }), load({ tokenizer: false, allowNonFinite: true }), { ok: (v) => check(v.layers === 2, 'loaded') });
  add('tensors', '20,000 extra tensors outside any module: loads, same tokens', llamaDir({ tensors: (t) => [...t, ...Array.from({ length: 20000 }, (_, i) => ({ name: `extra.t${i}`, dtype: 'F32', shape: [1], data: f32Bytes([i]) }))] }), gen(greedy), equalsReference);

  // --- pre-quantized bitsandbytes checkpoints (saved by transformers: test/fixtures/bnb-checkpoints) ---
  const bnbDir = (variant: string, o: { config?: (c: Json) => void; tensors?: (t: RawTensor[]) => RawTensor[]; base?: string } = {}) => (dir: string) => {
    mkdirSync(dir, { recursive: true });
    const c = JSON.parse(readFileSync(`${BNB}${variant}/config.json`, 'utf8')) as Json;
    o.config?.(c);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
    const t = readSafetensors(`${BNB}${variant}/model.safetensors`);
    writeSafetensors(join(dir, 'model.safetensors'), o.tensors ? o.tensors(t) : t);
    if (o.base) {
      mkdirSync(join(dir, 'base'));
      for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(dir, 'base', f), readFileSync(`${BNB}${o.base}/${f}`));
    }
  };
  const sameAsQuantizeOnLoad = (bnb: Json) => ({ scenario: 'compare', load: { tokenizer: false }, other: { sub: 'base', load: { tokenizer: false, quantizationConfig: { $bnb: bnb } } }, generate: { inputIds: REF.ids, maxNewTokens: 16, eosTokenIds: [] } }) as Job;
  const sameTokens = { ok: (v: any) => (expectEqual(v.ours, v.other), check(v.ours.length === 16, '16 tokens')) };
  add('prequantized', 'llama nf4 saved by transformers: the tokens of quantize-on-load', bnbDir('llama-nf4', { base: 'base-llama' }), sameAsQuantizeOnLoad({ loadIn4bit: true, bnb4bitQuantType: 'nf4' }), sameTokens);
  add('prequantized', 'llama int8 saved by transformers: the tokens of quantize-on-load', bnbDir('llama-int8', { base: 'base-llama' }), sameAsQuantizeOnLoad({ loadIn8bit: true }), sameTokens);
  add('prequantized', 'gpt2 nf4 + dq saved by transformers: the tokens of quantize-on-load', bnbDir('gpt2-nf4-dq', { base: 'base-gpt2' }), sameAsQuantizeOnLoad({ loadIn4bit: true, bnb4bitQuantType: 'nf4', bnb4bitUseDoubleQuant: true }), sameTokens);
  add('prequantized', 'nf4 checkpoint with num_hidden_layers 1', bnbDir('llama-nf4', { config: (c) => void (c.num_hidden_layers = 1) }), load(), refused('MALFORMED_FILE', /layer 1/));
  add('prequantized', 'nf4 checkpoint with a packed weight cut short', bnbDir('llama-nf4', { tensors: (t) => t.map((x) => (x.name === 'model.layers.0.mlp.up_proj.weight' ? { ...x, shape: [x.shape[0]! - 8, 1], data: x.data.slice(0, x.data.length - 8) } : x)) }), load(), refused(['MALFORMED_FILE', 'INCONSISTENT_STATE'], /up_proj/));
  add('prequantized', 'int8 checkpoint with 63 rows of q_proj', bnbDir('llama-int8', { tensors: (t) => t.map((x) => (x.name === 'model.layers.0.self_attn.q_proj.weight' ? { ...x, shape: [63, 64], data: x.data.slice(0, 63 * 64) } : x)) }), load(), refused(['MALFORMED_FILE', 'INCONSISTENT_STATE'], /q_proj/));
  add('prequantized', 'nf4 checkpoint without the absmax of a weight', bnbDir('llama-nf4', { tensors: (t) => t.filter((x) => x.name !== 'model.layers.1.self_attn.v_proj.weight.absmax') }), load(), refused(['MALFORMED_FILE', 'INCONSISTENT_STATE', 'PARSE', 'NOT_FOUND']));

  // --- shards -------------------------------------------------------------------------------------
  const sharded = (o: { weightMap?: (names: string[]) => unknown; both?: boolean; missing?: boolean }) => (dir: string) => {
    llamaDir()(dir);
    const t = llamaTensors();
    const half = Math.ceil(t.length / 2);
    const shards = o.both ? [t, t] : [t.slice(0, half), t.slice(half)];
    const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    shards.forEach((s, i) => (o.missing && i === 1 ? undefined : writeSafetensors(join(dir, files[i]!), s)));
    const wm = o.weightMap ? o.weightMap(t.map((x) => x.name)) : Object.fromEntries(t.map((x, i) => [x.name, files[o.both ? 0 : i < half ? 0 : 1]]));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: wm }));
    // Only the shards: no single-file model next to them.
    rmSync(join(dir, 'model.safetensors'));
  };
  add('shards', 'two shards that both hold every tensor', (sharded({ both: true, weightMap: (names) => Object.fromEntries(names.map((n, i) => [n, i % 2 ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors'])) })), load(), refused('MALFORMED_FILE', /more than once/));
  add('shards', 'an index naming a missing shard', sharded({ missing: true }), load(), refused(['NOT_FOUND', 'MALFORMED_FILE']));
  add('shards', 'an index with an empty weight_map', (sharded({ weightMap: () => ({}) })), load(), refused('MALFORMED_FILE'));
  add('shards', 'two proper shards: same tokens', sharded({}), gen(greedy), equalsReference);

  // --- GGUF ---------------------------------------------------------------------------------------
  add('gguf', 'the fixture rewritten unchanged: same tokens', ggufDir(), gen(greedy), equalsReference);
  add('gguf', 'block_count one less than the blk.N tensors', ggufDir({ meta: (m) => void m.set('llama.block_count', u32(1)) }), load(), refused('MALFORMED_FILE', /block_count/));
  add('gguf', 'block_count 4e9 and no tensors', ggufDir({ meta: (m) => void m.set('llama.block_count', u32(4e9)), tensors: () => [] }), load(), refused('MALFORMED_FILE', /block_count/));
  add('gguf', 'block_count 3 (a layer missing)', ggufDir({ meta: (m) => void m.set('llama.block_count', u32(3)) }), load(), refused('MALFORMED_FILE', /missing/));
  add('gguf', 'head_count 0', ggufDir({ meta: (m) => void m.set('llama.attention.head_count', u32(0)) }), load(), refused('MALFORMED_FILE', /head_count/));
  add('gguf', 'head_count_kv 3', ggufDir({ meta: (m) => void m.set('llama.attention.head_count_kv', u32(3)) }), load(), refused('MALFORMED_FILE', /head_count/));
  add('gguf', 'key_length 1e9', ggufDir({ meta: (m) => (m.set('llama.attention.key_length', u32(1e9)), m.set('llama.attention.value_length', u32(1e9)), m.set('llama.rope.dimension_count', u32(1e9))) }), load(), refused('MALFORMED_FILE', /key_length/));
  add('gguf', 'layer_norm_rms_epsilon NaN', ggufDir({ meta: (m) => void m.set('llama.attention.layer_norm_rms_epsilon', f32(NaN)) }), load(), refused('MALFORMED_FILE', /layer_norm_rms_epsilon/));
  add('gguf', 'rope.freq_base -1', ggufDir({ meta: (m) => void m.set('llama.rope.freq_base', f32(-1)) }), load(), refused('MALFORMED_FILE', /freq_base/));
  add('gguf', 'context_length 0', ggufDir({ meta: (m) => void m.set('llama.context_length', u32(0)) }), load(), refused('MALFORMED_FILE', /context_length/));
  add('gguf', '255 tokens for a 256-row embedding', ggufDir({ meta: (m) => void m.set('tokenizer.ggml.tokens', { type: 'arr', of: 'str', value: Array.from({ length: 255 }, (_, i) => `t${i}`) }) }), load(), refused('MALFORMED_FILE', /token_embd|embed_tokens/));
  add('gguf', 'embedding_length as a string', ggufDir({ meta: (m) => void m.set('llama.embedding_length', { type: 'str', value: '64' }) }), load(), refused('MALFORMED_FILE', /embedding_length/));
  add('gguf', 'a GGUF tensor with a zero dimension', ggufDir({ tensors: (t) => [...t, { name: 'blk.0.ffn_norm.bias', shape: [0], data: new Uint8Array(0) }] }), load(), refused('MALFORMED_FILE', /dimension/));
  add('gguf', 'NaN in attn_norm', ggufDir({ tensors: (t) => t.map((x) => (x.name === 'blk.1.attn_norm.weight' ? { ...x, data: withF32({ name: x.name, dtype: 'F32', shape: x.shape, data: x.data }, 0, NaN).data } : x)) }), load(), refused('NON_FINITE', /blk\.1\.attn_norm/));
  add('gguf', 'chat template range(200000000)', ggufDir({ meta: ggufChat('{% for i in range(200000000) %}x{% endfor %}') }), gen({ messages: [{ role: 'user', content: 'hi' }], maxNewTokens: 2 }, {}), refused('LIMIT_EXCEEDED', /range/));
  add('gguf', 'chat template doubling a string 60 times', ggufDir({ meta: ggufChat("{% set s = namespace(v='ab') %}{% for i in range(60) %}{% set s.v = s.v + s.v %}{% endfor %}{{ s.v }}") }), gen({ messages: [{ role: 'user', content: 'hi' }], maxNewTokens: 2 }, {}), refused('LIMIT_EXCEEDED'));
  add('gguf', 'a proper chat template: messages and inputIds agree', ggufDir({ meta: ggufChat("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}") }), { scenario: 'chat', messages: [{ role: 'user', content: 'Hello' }], generate: { maxNewTokens: 6, eosTokenIds: [] } }, {
    ok: (v) => {
      expectEqual(v.viaMessages, v.viaIds);
      check(v.viaMessages.length === 6 && v.promptLength === '<user>Hello\n<assistant>'.length, 'six tokens after a byte-level prompt');
    },
  });

  // --- tokenizer files and templates (safetensors llama + tokenizer.json) -------------------------
  const tok = (config: Json = {}, extra: Record<string, string> = {}) => llamaDir({ files: { ...tokenizerFiles(config), ...extra } });
  const chatJob = (t: Json = {}): Job => gen({ messages: [{ role: 'user', content: 'hi' }], maxNewTokens: 2, eosTokenIds: [], ...t }, {});
  add('tokenizer', 'tokenizer.json is not JSON', llamaDir({ files: { 'tokenizer.json': '{"model": ' } }), load({}), refused(['MALFORMED_FILE', 'PARSE']));
  add('tokenizer', 'tokenizer.json is null', llamaDir({ files: { 'tokenizer.json': 'null' } }), load({}), refused(['MALFORMED_FILE', 'PARSE']));
  add('tokenizer', 'tokenizer_config.json is null', llamaDir({ files: { ...tokenizerFiles(), 'tokenizer_config.json': 'null' } }), load({}), refused('MALFORMED_FILE', /tokenizer_config\.json/));
  add('tokenizer', 'generation_config.json is an array', llamaDir({ files: { ...tokenizerFiles(), 'generation_config.json': '[2]' } }), load({}), refused('MALFORMED_FILE', /generation_config\.json/));
  add('tokenizer', 'tokenizer.json with an unknown model type', llamaDir({ files: { 'tokenizer.json': JSON.stringify({ model: { type: 'Nonsense' } }) } }), load({}), refused(['MALFORMED_FILE', 'PARSE']));
  add('tokenizer', 'an added token id past the model vocab, used in the prompt', llamaDir({ files: { 'tokenizer.json': JSON.stringify(byteLevelTokenizerJson([{ id: 300, content: '<big>' }])) } }), gen({ prompt: 'a<big>', maxNewTokens: 2 }, {}), refused('INVALID_ARGUMENT', /300/));
  add('template', 'chat_template nested range(100000) loops (time limit)', tok({ chat_template: '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}' }), chatJob(), refused('LIMIT_EXCEEDED'));
  add('template', 'chat_template range(200000000)', tok({ chat_template: '{% for i in range(200000000) %}x{% endfor %}' }), chatJob(), refused('LIMIT_EXCEEDED', /range/));
  add('template', 'chat_template of 2 MB', tok({ chat_template: 'x'.repeat(2 << 20) }), chatJob(), refused('LIMIT_EXCEEDED'));
  add('template', 'chat_template rendering 3 MB', tok({ chat_template: '{% for i in range(3000) %}' + 'z'.repeat(1000) + '{% endfor %}' }), chatJob(), refused('LIMIT_EXCEEDED'));
  add('template', 'chat_template rendering a 1 MB value 100000 times', tok({ chat_template: "{% set s = namespace(v='z') %}{% for i in range(20) %}{% set s.v = s.v + s.v %}{% endfor %}{% for i in range(100000) %}{{ s.v }}{% endfor %}" }), chatJob(), refused('LIMIT_EXCEEDED'));
  add('template', 'chat_template.jinja with a syntax error', tok({}, { 'chat_template.jinja': '{% for m in messages %}' }), chatJob(), refused('PARSE'));
  add('template', 'chat_template raise_exception', tok({ chat_template: "{{ raise_exception('no system role') }}" }), chatJob(), refused('INVALID_ARGUMENT', /no system role/));
  add('template', 'chat_template 5 (not a string): no template', tok({ chat_template: 5 }), chatJob(), refused('NOT_FOUND'));
  add('template', 'a proper chat_template: messages and inputIds agree', tok({ chat_template: '{% for m in messages %}{{ m.content }}{% endfor %}' }), { scenario: 'chat', load: {}, messages: [{ role: 'user', content: 'Hello, world' }], generate: { maxNewTokens: 5, eosTokenIds: [] } }, { ok: (v) => expectEqual(v.viaMessages, v.viaIds) });

  // --- generate() arguments -----------------------------------------------------------------------
  const bad = (id: string, g: Json, message?: RegExp) => add('generate-args', id, base, gen({ maxNewTokens: 2, ...g }), refused('INVALID_ARGUMENT', message));
  bad('inputIds [2**32+1, 2**32+2]', { inputIds: [{ $big: 32, plus: 1 }, { $big: 32, plus: 2 }] }, /inputIds\[0\]/);
  bad('inputIds [1.7, 2.2]', { inputIds: [1.7, 2.2] }, /1\.7/);
  bad("inputIds '12' (a string)", { inputIds: '12' }, /inputIds/);
  bad('inputIds [NaN]', { inputIds: [{ $nan: 1 }] }, /NaN/);
  bad("inputIds ['abc']", { inputIds: ['abc'] }, /abc/);
  bad('inputIds [256] (= vocab)', { inputIds: [256] }, /256/);
  bad('inputIds [-1]', { inputIds: [-1] }, /-1/);
  bad('inputIds []', { inputIds: [] });
  bad('inputIds null', { inputIds: null });
  bad('tokenizer {}', { prompt: 'hi', tokenizer: {} }, /tokenizer/);
  bad("generate signal 'x'", { inputIds: [1], signal: 'x' }, /signal/);
  bad('maxNewTokens -1', { inputIds: [1], maxNewTokens: -1 }, /maxNewTokens/);
  bad("maxNewTokens '5'", { inputIds: [1], maxNewTokens: '5' }, /maxNewTokens/);
  bad('temperature NaN', { inputIds: [1], doSample: true, temperature: { $nan: 1 } }, /temperature/);
  bad('a 200-token prompt for a 128-position cache', { inputIds: Array(200).fill(5) }, /positions/);
  bad('stop: 5', { inputIds: [1], stop: 5 }, /stop/);
  bad('streamer {}', { inputIds: [1], streamer: {} }, /streamer/);
  bad('messages without a tokenizer', { messages: [{ role: 'user', content: 'hi' }] }, /tokenizer/);
  bad('messages a string', { messages: 'hi' }, /messages/);
  add('generate-args', 'generate() with no options', base, { scenario: 'generate', load: { tokenizer: false }, generate: { $undefined: 1 } }, refused('INVALID_ARGUMENT'));
  add('generate-args', 'forward([1.5])', base, { scenario: 'forward', load: { tokenizer: false }, ids: [1.5] }, refused('INVALID_ARGUMENT', /1\.5/));
  add('generate-args', 'inputIds as a Uint32Array: same tokens', base, gen({ ...greedy, inputIds: { $u32: REF.ids } }), equalsReference);

  // --- concurrency and aborts ---------------------------------------------------------------------
  add('concurrency', 'two generate() at once: both as transformers', base, { scenario: 'concurrent', load: { tokenizer: false }, calls: [greedy, greedy] }, {
    ok: (v) => {
      expectEqual(v.together[0], REF.greedy);
      expectEqual(v.together[1], REF.greedy);
    },
  });
  const prompts = [REF.ids, REF.ids.slice(0, 8), [1, 50, 60, 70]];
  add('concurrency', 'three different prompts at once: each as when run alone', base, { scenario: 'concurrent', load: { tokenizer: false }, calls: prompts.map((p) => ({ inputIds: p, maxNewTokens: 12, eosTokenIds: [] })) }, { ok: (v) => expectEqual(v.together, v.alone) });
  const long = { inputIds: REF.ids, maxNewTokens: 3000, eosTokenIds: [] };
  add('abort', 'AbortSignal.timeout(40) stops a 3000-token generation within a token or so', llamaDir(), { scenario: 'abortTimeout', load: { tokenizer: false, maxPositions: 4096 }, generate: long, timeoutMs: 40, after: greedy }, {
    ok: (v) => {
      check(v.error?.code === 'ABORTED' && v.error.cause === 'TimeoutError', `ABORTED with a TimeoutError cause, got ${JSON.stringify(v.error)}`);
      check(v.stoppedAfterMs < 1000, `stopped after ${v.stoppedAfterMs} ms`);
      check(v.ticks > 0, 'timers ran during the generation');
      expectEqual(v.after, REF.greedy);
    },
  });
  add('abort', 'AbortSignal.timeout(50) during the load of 20,000 tensors', llamaDir({ tensors: (t) => [...t, ...Array.from({ length: 20000 }, (_, i) => ({ name: `extra.t${i}`, dtype: 'F32', shape: [1], data: f32Bytes([i]) }))] }), load({ tokenizer: false, signal: { $timeout: 50 } }), refused('ABORTED'));
  add('abort', 'an already aborted signal', base, gen({ ...greedy, signal: { $aborted: 'stop' } }), refused('ABORTED'));
  add('abort', 'aborted while waiting its turn; the running call is unaffected', llamaDir(), { scenario: 'abortWhileWaiting', load: { tokenizer: false }, first: greedy, second: greedy }, {
    ok: (v) => {
      expectEqual(v.first, REF.greedy);
      check(v.second.code === 'ABORTED' && v.second.cause === 'Error', `second: ${JSON.stringify(v.second)}`);
    },
  });
  add('abort', 'timers run during a 1500-token CPU generation', llamaDir(), { scenario: 'timers', load: { tokenizer: false, maxPositions: 2048 }, generate: { inputIds: REF.ids, maxNewTokens: 1500, eosTokenIds: [] } }, {
    ok: (v) => check(v.n === 1500 && v.ticks >= Math.min(20, v.ms / 20), `${v.ticks} ticks in ${v.ms} ms`),
  });
  return cases;
}
