#!/usr/bin/env node
// Writes a safetensors checkpoint with random weights in the shape of a real model, for the load
// benchmark (no model hub is reachable here). Streams tensor by tensor: memory stays small.
//
//   node scripts/make-random-checkpoint.mjs --shape tinyllama --out .cache/models/tinyllama-shape-f16
//
// Shapes: tinyllama (TinyLlama-1.1B: hidden 2048, 22 layers, 32 heads / 4 KV heads, MLP 5632,
// vocab 32000), smollm2-135m (hidden 576, 30 layers, 9 / 3 heads, MLP 1536, vocab 49152).
// Values: N(0, 0.02)-like (sum of uniforms), fp16; norms are 1.0.
import { mkdirSync, openSync, writeSync, closeSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const SHAPES = {
  tinyllama: { hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000, tie_word_embeddings: false },
  'smollm2-135m': { hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, vocab_size: 49152, tie_word_embeddings: true },
};

export function llamaTensors(c) {
  const hd = c.hidden_size / c.num_attention_heads;
  const kv = c.num_key_value_heads * hd;
  const t = [['model.embed_tokens.weight', [c.vocab_size, c.hidden_size]]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    t.push(
      [p + 'input_layernorm.weight', [c.hidden_size]],
      [p + 'self_attn.q_proj.weight', [c.hidden_size, c.hidden_size]],
      [p + 'self_attn.k_proj.weight', [kv, c.hidden_size]],
      [p + 'self_attn.v_proj.weight', [kv, c.hidden_size]],
      [p + 'self_attn.o_proj.weight', [c.hidden_size, c.hidden_size]],
      [p + 'post_attention_layernorm.weight', [c.hidden_size]],
      [p + 'mlp.gate_proj.weight', [c.intermediate_size, c.hidden_size]],
      [p + 'mlp.up_proj.weight', [c.intermediate_size, c.hidden_size]],
      [p + 'mlp.down_proj.weight', [c.hidden_size, c.intermediate_size]],
    );
  }
  t.push(['model.norm.weight', [c.hidden_size]]);
  if (!c.tie_word_embeddings) t.push(['lm_head.weight', [c.vocab_size, c.hidden_size]]);
  return t;
}

function f16Bits(x) {
  // fp32 -> fp16 for |x| well inside the normal range (the values here are ~N(0, 0.02)).
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign;
  return sign | (exp << 10) | ((u >>> 13) & 0x3ff);
}

// A table of 65536 N(0, 0.02)-like fp16 values, indexed by a fast xorshift: random enough for
// timing and memory figures, and quick to write gigabytes of.
const TABLE = new Uint16Array(65536);
{
  let s = 0x12345678;
  const u = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32);
  for (let i = 0; i < TABLE.length; i++) TABLE[i] = f16Bits((u() + u() + u() + u() - 2) * 0.0346);
}

export function writeCheckpoint(dir, config) {
  mkdirSync(dir, { recursive: true });
  const tensors = llamaTensors(config);
  let offset = 0;
  const header = {};
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'F16', shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  header.__metadata__ = { format: 'pt', generator: 'lowbit scripts/make-random-checkpoint.mjs (random weights)' };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeSync(fd, len);
  writeSync(fd, Buffer.from(json, 'latin1'));
  const chunk = new Uint16Array(1 << 22); // 8 MiB
  let s = 0x9e3779b9;
  for (const [name, shape] of tensors) {
    let left = shape.reduce((a, b) => a * b, 1);
    const isNorm = shape.length === 1;
    while (left > 0) {
      const m = Math.min(left, chunk.length);
      for (let i = 0; i < m; i++) {
        s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
        chunk[i] = isNorm ? 0x3c00 : TABLE[s & 0xffff];
      }
      writeSync(fd, new Uint8Array(chunk.buffer, 0, m * 2));
      left -= m;
    }
    void name;
  }
  closeSync(fd);
  const hd = config.hidden_size / config.num_attention_heads;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', head_dim: hd, rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 2048, torch_dtype: 'float16', ...config }, null, 2));
  return { bytes: 8 + json.length + offset, tensors: tensors.length };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const get = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
  const shape = get('--shape', 'tinyllama');
  const out = get('--out', `.cache/models/${shape}-shape-f16`);
  const config = SHAPES[shape];
  if (!config) {
    console.error(`unknown --shape ${shape}; one of ${Object.keys(SHAPES).join(', ')}`);
    process.exit(2);
  }
  if (existsSync(join(out, 'model.safetensors')) && !args.includes('--force')) {
    console.log(`${out} exists (use --force to rewrite)`);
  } else {
    const t = performance.now();
    const r = writeCheckpoint(out, config);
    console.log(`wrote ${out}: ${r.tensors} tensors, ${(r.bytes / 1e9).toFixed(2)} GB in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
}
export { SHAPES };
