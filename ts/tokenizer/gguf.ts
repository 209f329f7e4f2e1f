/**
 * A GGUF file's `tokenizer.ggml.*` metadata -> an equivalent Hugging Face `tokenizer.json` object
 * (and the `tokenizer_config.json` fields lowbit uses), which @huggingface/tokenizers then runs.
 *
 * Supported: `tokenizer.ggml.model` = 'gpt2' (byte-level BPE), with the pre-tokenizers below.
 * The split regexes are llama.cpp's (src/llama-vocab.cpp, `llm_tokenizer_bpe`'s constructor, at
 * ggml-org/llama.cpp commit 00ad355e009e83abf98f96a6ded7193b95763681): llama.cpp applies its regex
 * list one after the other, each splitting the pieces of the one before and keeping the text
 * between matches as pieces too, which is what a `Split` pre-tokenizer with behavior 'Isolated'
 * does. The names that select each list are the `tokenizer_pre == "…"` tests in `llama_vocab::
 * impl::load` of the same file.
 */
import { LowbitError, type LowbitErrorCode } from '../errors.js';
import type { GgufValue } from '../loading/gguf.js';

/** The code of the error for a tokenizer lowbit cannot build (no dedicated code in errors.ts yet). */
const UNSUPPORTED: LowbitErrorCode = 'INVALID_ARGUMENT';

/** llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2 regex (also the first half of SMOLLM/STARCODER's). */
const GPT2_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
/** llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3 regex (its case-insensitive contractions spelled out). */
const LLAMA3_SPLIT =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2 regex. */
const QWEN2_SPLIT =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreTokenizerSpec {
  /** Applied in order, as llama.cpp's regex_exprs. */
  regexes: string[];
  /** llama.cpp's `ignore_merges`: a piece that is already a token is not merged further. */
  ignoreMerges?: boolean;
  /** llama.cpp's default for `add_bos` when the file has no tokenizer.ggml.add_bos_token. */
  addBos?: boolean;
}

const GPT2: PreTokenizerSpec = { regexes: [GPT2_SPLIT] };
const DIGITS_GPT2: PreTokenizerSpec = { regexes: ['\\p{N}', GPT2_SPLIT] };
const LLAMA3: PreTokenizerSpec = { regexes: [LLAMA3_SPLIT], ignoreMerges: true, addBos: true };
const QWEN2: PreTokenizerSpec = { regexes: [QWEN2_SPLIT] };

/** `tokenizer.ggml.pre` values lowbit builds, and llama.cpp's regexes for them. */
export const GGUF_PRE_TOKENIZERS: Readonly<Record<string, PreTokenizerSpec>> = {
  // LLAMA_VOCAB_PRE_TYPE_GPT2 / MPT / OLMO
  'gpt-2': GPT2,
  'phi-2': GPT2,
  mpt: GPT2,
  olmo: GPT2,
  // LLAMA_VOCAB_PRE_TYPE_SMOLLM / STARCODER / REFACT / COMMAND_R / CODESHELL / EXAONE / MINERVA:
  // every digit alone, then the GPT-2 regex.
  smollm: DIGITS_GPT2,
  starcoder: DIGITS_GPT2,
  refact: DIGITS_GPT2,
  'command-r': DIGITS_GPT2,
  codeshell: DIGITS_GPT2,
  exaone: DIGITS_GPT2,
  'minerva-7b': DIGITS_GPT2,
  // LLAMA_VOCAB_PRE_TYPE_LLAMA3 (ignore_merges, add_bos)
  llama3: LLAMA3,
  'llama-v3': LLAMA3,
  'llama-bpe': LLAMA3,
  falcon3: LLAMA3,
  'falcon-h1': LLAMA3,
  pixtral: LLAMA3,
  // LLAMA_VOCAB_PRE_TYPE_QWEN2
  qwen2: QWEN2,
  'deepseek-r1-qwen': QWEN2,
  megrez: QWEN2,
};

/** GGUF token types (llama.cpp's llama_token_type / gguf-py's TokenType). */
const TOKEN_TYPE_CONTROL = 3;
const TOKEN_TYPE_USER_DEFINED = 4;

/** GPT-2's byte -> printable character table (bytes_to_unicode). */
function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return table;
}

/** What `fromGguf` needs besides the tokenizer.json object. */
export interface GgufTokenizerParts {
  /** A Hugging Face tokenizer.json object (BPE model, byte-level pre-tokenizer and decoder). */
  tokenizerJson: Record<string, unknown>;
  /** tokenizer_config.json fields: bos/eos/unk/pad token strings, add_bos_token, add_eos_token, chat_template. */
  tokenizerConfig: Record<string, unknown>;
  /** tokenizer.ggml.eos_token_id, then eot_token_id and eom_token_id when present and different. */
  eosTokenIds: number[];
  /** The vocabulary as the file lists it (ids are indices; duplicates keep their own id). */
  tokens: string[];
}

function str(meta: ReadonlyMap<string, GgufValue>, key: string): string | undefined {
  const v = meta.get(key);
  return typeof v === 'string' ? v : undefined;
}

function int(meta: ReadonlyMap<string, GgufValue>, key: string): number | undefined {
  const v = meta.get(key);
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  return undefined;
}

function bool(meta: ReadonlyMap<string, GgufValue>, key: string): boolean | undefined {
  const v = meta.get(key);
  return typeof v === 'boolean' ? v : undefined;
}

function strings(meta: ReadonlyMap<string, GgufValue>, key: string, file: string): string[] | undefined {
  const v = meta.get(key);
  if (v === undefined) return undefined;
  if (typeof v === 'string' || typeof v !== 'object' || typeof (v as ArrayLike<unknown>).length !== 'number') {
    throw new LowbitError('MALFORMED_FILE', `${file}: ${key} is not an array of strings`, { file });
  }
  const arr = Array.from(v as ArrayLike<unknown>);
  if (!arr.every((x) => typeof x === 'string')) throw new LowbitError('MALFORMED_FILE', `${file}: ${key} is not an array of strings`, { file });
  return arr as string[];
}

/**
 * Builds the tokenizer.json equivalent of a GGUF's tokenizer metadata. `file` names the GGUF in
 * messages. Throws INVALID_ARGUMENT naming the value for a tokenizer model or pre-tokenizer lowbit
 * does not support, MALFORMED_FILE for missing or ill-typed keys.
 */
export function tokenizerJsonFromGguf(meta: ReadonlyMap<string, GgufValue>, file = 'GGUF'): GgufTokenizerParts {
  const model = str(meta, 'tokenizer.ggml.model');
  if (model === undefined) throw new LowbitError('MALFORMED_FILE', `${file} has no tokenizer (no tokenizer.ggml.model key)`, { file });
  if (model !== 'gpt2') {
    throw new LowbitError(
      UNSUPPORTED,
      `UNSUPPORTED tokenizer: ${file} has tokenizer.ggml.model = '${model}'; lowbit builds only byte-level BPE ('gpt2') tokenizers from GGUF metadata. Load the model's tokenizer.json instead (AutoTokenizer.fromPretrained on a folder or hub id that has one)`,
      { file },
    );
  }
  const pre = str(meta, 'tokenizer.ggml.pre');
  const spec = pre === undefined ? undefined : Object.hasOwn(GGUF_PRE_TOKENIZERS, pre) ? GGUF_PRE_TOKENIZERS[pre] : undefined;
  if (spec === undefined) {
    throw new LowbitError(
      UNSUPPORTED,
      `UNSUPPORTED pre-tokenizer: ${file} has tokenizer.ggml.pre = ${pre === undefined ? '(missing)' : `'${pre}'`}; lowbit supports ${Object.keys(GGUF_PRE_TOKENIZERS).map((k) => `'${k}'`).join(', ')}. Load the model's tokenizer.json instead`,
      { file },
    );
  }
  const tokens = strings(meta, 'tokenizer.ggml.tokens', file);
  if (!tokens || tokens.length === 0) throw new LowbitError('MALFORMED_FILE', `${file}: tokenizer.ggml.tokens is missing or empty`, { file });
  const merges = strings(meta, 'tokenizer.ggml.merges', file);
  if (!merges) throw new LowbitError('MALFORMED_FILE', `${file}: a 'gpt2' tokenizer needs tokenizer.ggml.merges`, { file });
  const typesRaw = meta.get('tokenizer.ggml.token_type');
  const types = typesRaw !== undefined && typeof typesRaw === 'object' ? Array.from(typesRaw as ArrayLike<unknown>, Number) : [];

  // In a byte-level vocabulary every token is spelled in GPT-2's byte alphabet. A token with any
  // other character is re-spelled from its UTF-8 bytes, as transformers' GGUF converter does.
  const b2u = bytesToUnicode();
  const alphabet = new Set(b2u);
  const encoder = new TextEncoder();
  const inAlphabet = (t: string) => [...t].every((c) => alphabet.has(c));
  const spelled = tokens.map((t) => (inAlphabet(t) ? t : Array.from(encoder.encode(t), (b) => b2u[b]!).join('')));
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  spelled.forEach((t, i) => (vocab[t] = i));

  const tokenAt = (key: string): string | undefined => {
    const id = int(meta, key);
    return id !== undefined && id >= 0 && id < tokens.length ? tokens[id] : undefined;
  };
  const specialIds = new Set<number>();
  for (const k of ['bos_token_id', 'eos_token_id', 'unknown_token_id', 'padding_token_id', 'eot_token_id', 'eom_token_id']) {
    const id = int(meta, `tokenizer.ggml.${k}`);
    if (id !== undefined && id >= 0 && id < tokens.length) specialIds.add(id);
  }
  // Control tokens are special added tokens, matched whole in text; user-defined ones are plain
  // added tokens. A control token outside the byte alphabet is a converter mislabel: skipped.
  const addedTokens: Array<Record<string, unknown>> = [];
  tokens.forEach((t, id) => {
    const type = types[id];
    const special = type === TOKEN_TYPE_CONTROL || specialIds.has(id);
    if ((special && inAlphabet(t)) || type === TOKEN_TYPE_USER_DEFINED) {
      addedTokens.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
    }
  });

  const addBos = bool(meta, 'tokenizer.ggml.add_bos_token') ?? spec.addBos ?? false;
  const addEos = bool(meta, 'tokenizer.ggml.add_eos_token') ?? false;
  const bosToken = tokenAt('tokenizer.ggml.bos_token_id');
  const eosToken = tokenAt('tokenizer.ggml.eos_token_id');
  if (addBos && bosToken === undefined) throw new LowbitError('MALFORMED_FILE', `${file}: tokenizer.ggml.add_bos_token is true but there is no valid bos_token_id`, { file });
  if (addEos && eosToken === undefined) throw new LowbitError('MALFORMED_FILE', `${file}: tokenizer.ggml.add_eos_token is true but there is no valid eos_token_id`, { file });

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        ...spec.regexes.map((r) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false })),
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: templateProcessing(addBos ? bosToken : undefined, addEos ? eosToken : undefined, vocab),
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: spec.ignoreMerges ?? false,
      vocab,
      merges,
    },
  };
  const eosTokenIds: number[] = [];
  for (const k of ['eos_token_id', 'eot_token_id', 'eom_token_id']) {
    const id = int(meta, `tokenizer.ggml.${k}`);
    if (id !== undefined && id >= 0 && id < tokens.length && !eosTokenIds.includes(id)) eosTokenIds.push(id);
  }
  const tokenizerConfig: Record<string, unknown> = {
    bos_token: bosToken ?? null,
    eos_token: eosToken ?? null,
    unk_token: tokenAt('tokenizer.ggml.unknown_token_id') ?? null,
    pad_token: tokenAt('tokenizer.ggml.padding_token_id') ?? null,
    add_bos_token: addBos,
    add_eos_token: addEos,
    clean_up_tokenization_spaces: false,
  };
  const template = str(meta, 'tokenizer.chat_template');
  if (template !== undefined) tokenizerConfig.chat_template = template;
  return { tokenizerJson, tokenizerConfig, eosTokenIds, tokens: spelled };
}

/**
 * A TemplateProcessing post-processor adding `bos` before and `eos` after a sequence (or a
 * ByteLevel no-op one when neither is added).
 */
export function templateProcessing(bos: string | undefined, eos: string | undefined, vocab: Record<string, number>): Record<string, unknown> {
  if (bos === undefined && eos === undefined) return { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const sp = (t: string, typeId: number) => ({ SpecialToken: { id: t, type_id: typeId } });
  const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const around = (id: 'A' | 'B', typeId: number) => [...(bos !== undefined ? [sp(bos, typeId)] : []), seq(id, typeId), ...(eos !== undefined ? [sp(eos, typeId)] : [])];
  const special: Record<string, unknown> = {};
  for (const t of [bos, eos]) if (t !== undefined) special[t] = { id: t, ids: vocab[t] === undefined ? [] : [vocab[t]], tokens: [t] };
  return { type: 'TemplateProcessing', single: around('A', 0), pair: [...around('A', 0), ...around('B', 1)], special_tokens: special };
}
