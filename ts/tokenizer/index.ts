/**
 * Tokenizers: Hugging Face tokenizer.json (run by @huggingface/tokenizers) and chat templates
 * (rendered by @huggingface/jinja), from a model folder / hub id / URL / Blobs, or from a GGUF
 * file's tokenizer metadata (converted to an equivalent tokenizer.json, ./gguf.ts).
 *
 *   const tok = await AutoTokenizer.fromPretrained('HuggingFaceTB/SmolLM2-135M-Instruct');
 *   const ids = tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
 *   const stream = tok.decodeStream();
 *   for (const id of generated) process.stdout.write(stream.push(id));
 *   process.stdout.write(stream.flush());
 *
 * Both libraries are imported lazily (dynamic import on the first load), so importing lowbit
 * itself needs neither of them: a browser page without an import map can still use the rest.
 */
import { init } from '../runtime/wasm.js';
import { DEFAULT_TEMPLATE_LIMITS, parseTemplate, renderWithLimits, type JinjaLibrary, type TemplateLimits } from './template-limits.js';
import { LowbitError } from '../errors.js';
import { GgufFile } from '../loading/gguf.js';
import { resolveSource, type ResolveSourceOptions, type SourceInput } from '../loading/sources/resolve.js';
import { listWeightFiles } from '../loading/sources/sharding.js';
import type { ModelSource } from '../loading/sources/types.js';
import { templateProcessing, tokenizerJsonFromGguf } from './gguf.js';

export { tokenizerJsonFromGguf, GGUF_PRE_TOKENIZERS, type GgufTokenizerParts } from './gguf.js';

/** One chat message; extra fields (tool_calls, name, …) are passed to the template as they are. */
export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

/** Options of `Tokenizer.encode`. */
export interface EncodeOptions {
  /** Add the special tokens the tokenizer's post-processor adds (BOS/EOS), default true. */
  addSpecialTokens?: boolean;
}

/** Options of `Tokenizer.decode`. */
export interface DecodeOptions {
  /** Leave out special tokens (BOS, EOS, <|im_start|>, …), default false. */
  skipSpecialTokens?: boolean;
}

/** Options of `Tokenizer.applyChatTemplate`. */
export interface ApplyChatTemplateOptions {
  /** End with the start of an assistant turn (the template's `add_generation_prompt`), default false. */
  addGenerationPrompt?: boolean;
  /** Return token ids (default, as transformers) rather than the rendered string. */
  tokenize?: boolean;
  /** A template to use instead of the tokenizer's own. */
  chatTemplate?: string;
  /** Passed to the template as `tools` / `documents` when given. */
  tools?: unknown[];
  documents?: unknown[];
  /** More template variables (they override the defaults). */
  templateKwargs?: Record<string, unknown>;
  /**
   * Bounds on rendering (templates come from model files): output / value size (default 1 MiB),
   * steps (2,000,000), wall time (2000 ms), range() length (100,000), source length (1 MiB).
   * Past one: LowbitError('LIMIT_EXCEEDED').
   */
  templateLimits?: Partial<TemplateLimits>;
}

/** Options of `AutoTokenizer.fromPretrained`. */
export interface AutoTokenizerOptions extends ResolveSourceOptions {
  /** The .gguf file in the source to read the tokenizer from, when the source has several. */
  ggufFile?: string;
  /** Read the tokenizer from the GGUF even when the source also has a tokenizer.json. */
  preferGguf?: boolean;
  /** A chat template to use instead of the model's. */
  chatTemplate?: string;
}

// The parts of the two libraries used here. (Their own .d.ts files use extensionless relative
// imports, which TypeScript's NodeNext resolution does not follow, so they would type as any.)
interface HfTokenizer {
  encode(text: string, options: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_added_tokens_decoder(): Map<number, { content: string; special?: boolean }>;
  model: unknown;
}
type JinjaTemplate = { parsed: unknown };
interface Libraries {
  Tokenizer: new (tokenizerJson: object, config: object) => HfTokenizer;
  jinja: JinjaLibrary;
}

let libraries: Promise<Libraries> | undefined;

/** Loads @huggingface/tokenizers and @huggingface/jinja once. */
function loadLibraries(): Promise<Libraries> {
  libraries ??= Promise.all([import('@huggingface/tokenizers'), import('@huggingface/jinja')]).then(
    ([t, j]) => ({ Tokenizer: (t as { Tokenizer: Libraries['Tokenizer'] }).Tokenizer, jinja: j as unknown as JinjaLibrary }),
    (e: unknown) => {
      libraries = undefined;
      throw new LowbitError(
        'NOT_FOUND',
        `lowbit's tokenizers need the packages @huggingface/tokenizers and @huggingface/jinja (npm dependencies of lowbit; in a browser without a bundler, map them in an import map): ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    },
  );
  return libraries;
}

/** A token string from tokenizer_config.json: a string or an AddedToken-like {content}. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** The default template from tokenizer_config.json's chat_template (a string or [{name, template}]). */
function defaultTemplate(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as Array<{ name?: unknown; template?: unknown }>;
    const t = named.find((x) => x?.name === 'default') ?? (named.length === 1 ? named[0] : undefined);
    return typeof t?.template === 'string' ? t.template : undefined;
  }
  return undefined;
}

/**
 * Turns token ids into text as they come, never splitting a UTF-8 character across pieces: a
 * piece is only given out once the text no longer ends in U+FFFD (an incomplete character).
 * The pieces concatenate to `decode(allIds)`. This is the algorithm of Hugging Face tokenizers'
 * `DecodeStream`: the ids since the last piece are decoded together with the ids of the piece
 * before (context for decoders that strip a leading space), and the new suffix is given out.
 */
export class DecodeStream {
  private ids: number[] = [];
  private prefix = '';
  private prefixIndex = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: DecodeOptions = {},
  ) {}

  /** Adds one token id; returns the text it completes ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids, this.options);
    if (text.length <= this.prefix.length || text.endsWith('\uFFFD')) return '';
    const piece = text.startsWith(this.prefix) ? text.slice(this.prefix.length) : text.slice(commonPrefixLength(text, this.prefix));
    const newPrefixIndex = this.ids.length - this.prefixIndex;
    this.ids = this.ids.slice(this.prefixIndex);
    this.prefix = this.tokenizer.decode(this.ids, this.options);
    this.prefixIndex = newPrefixIndex;
    return piece;
  }

  /** Adds several ids; returns the text they complete. */
  pushAll(ids: Iterable<number>): string {
    let out = '';
    for (const id of ids) out += this.push(id);
    return out;
  }

  /** Returns what is still held back (an incomplete character decodes to U+FFFD) and resets. */
  flush(): string {
    let rest = '';
    if (this.ids.length > this.prefixIndex) {
      const text = this.tokenizer.decode(this.ids, this.options);
      rest = text.startsWith(this.prefix) ? text.slice(this.prefix.length) : text.slice(commonPrefixLength(text, this.prefix));
    }
    this.ids = [];
    this.prefix = '';
    this.prefixIndex = 0;
    return rest;
  }
}

function commonPrefixLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** A loaded tokenizer: encode/decode, chat templates and special tokens. */
export class Tokenizer {
  /** BOS token string and id (undefined when the model has none). */
  readonly bosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  /** EOS token string (tokenizer_config's eos_token, or the GGUF's eos_token_id's). */
  readonly eosToken: string | undefined;
  /** Every id that ends generation: EOS, plus generation_config.json's eos_token_id or the GGUF's eot/eom ids. */
  readonly eosTokenIds: number[];
  readonly unkToken: string | undefined;
  readonly padToken: string | undefined;
  readonly padTokenId: number | undefined;
  /** The chat template (Jinja source), when the model has one. */
  readonly chatTemplate: string | undefined;
  /** Where it came from: 'tokenizer.json' or 'gguf'. */
  readonly kind: 'tokenizer.json' | 'gguf';
  private readonly specialIds: Set<number>;
  private readonly templates = new Map<string, JinjaTemplate>();

  /** @internal use AutoTokenizer */
  constructor(
    private readonly hf: HfTokenizer,
    private readonly libs: Libraries,
    config: Record<string, unknown>,
    extra: { eosTokenIds?: number[]; kind: 'tokenizer.json' | 'gguf'; chatTemplate?: string | undefined },
  ) {
    this.kind = extra.kind;
    this.bosToken = tokenString(config.bos_token);
    this.eosToken = tokenString(config.eos_token);
    this.unkToken = tokenString(config.unk_token);
    this.padToken = tokenString(config.pad_token);
    this.bosTokenId = this.bosToken === undefined ? undefined : this.tokenToId(this.bosToken);
    this.padTokenId = this.padToken === undefined ? undefined : this.tokenToId(this.padToken);
    const eos = this.eosToken === undefined ? undefined : this.tokenToId(this.eosToken);
    const ids = [...(eos === undefined ? [] : [eos]), ...(extra.eosTokenIds ?? [])];
    this.eosTokenIds = [...new Set(ids)];
    this.chatTemplate = extra.chatTemplate ?? defaultTemplate(config.chat_template);
    this.specialIds = new Set([...hf.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
  }

  /** Number of token ids (the vocabulary with added tokens). */
  get vocabSize(): number {
    return (this.hf.model as unknown as { vocab: unknown[] }).vocab.length;
  }

  /** Special token ids (BOS, EOS, control tokens). */
  get allSpecialIds(): number[] {
    return [...this.specialIds].sort((a, b) => a - b);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** Text -> token ids. Special tokens written in the text (`<|im_start|>`) are matched whole. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new LowbitError('INVALID_ARGUMENT', `encode() takes a string, got ${typeof text}`);
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Token ids -> text. Throws INVALID_ARGUMENT for an id outside the vocabulary. */
  decode(ids: ArrayLike<number> | Iterable<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids as ArrayLike<number>);
    if (list.length === 0) return '';
    const n = this.vocabSize;
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= n || this.hf.id_to_token(id) === undefined) {
        throw new LowbitError('INVALID_ARGUMENT', `decode(): ${id} is not a token id of this tokenizer (0 to ${n - 1})`);
      }
    }
    return this.hf.decode(list, { skip_special_tokens: options.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  /** A streaming decoder: `push(id)` gives the text each id completes, `flush()` the rest. */
  decodeStream(options: DecodeOptions = {}): DecodeStream {
    return new DecodeStream(this, options);
  }

  /**
   * Renders a conversation with the chat template (Jinja), as transformers' apply_chat_template:
   * the template sees `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `unk_token`,
   * `pad_token` (and `tools`, `documents`, `templateKwargs`). With `tokenize` (the default) the
   * text is encoded without adding special tokens; with `tokenize: false` the text is returned.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ApplyChatTemplateOptions & { tokenize: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], options?: ApplyChatTemplateOptions & { tokenize?: true }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options?: ApplyChatTemplateOptions): string | number[];
  applyChatTemplate(messages: readonly ChatMessage[], options: ApplyChatTemplateOptions = {}): string | number[] {
    if (!Array.isArray(messages)) throw new LowbitError('INVALID_ARGUMENT', 'applyChatTemplate() takes an array of {role, content} messages');
    const source = options.chatTemplate ?? this.chatTemplate;
    if (source === undefined) {
      throw new LowbitError('NOT_FOUND', 'this tokenizer has no chat template (tokenizer_config.json chat_template, chat_template.jinja or the GGUF tokenizer.chat_template): pass options.chatTemplate');
    }
    const limits: TemplateLimits = { ...DEFAULT_TEMPLATE_LIMITS, ...options.templateLimits };
    let template = this.templates.get(source);
    if (!template) {
      try {
        template = parseTemplate(this.libs.jinja, source, limits);
      } catch (e) {
        if (e instanceof LowbitError) throw e;
        throw new LowbitError('PARSE', `the chat template does not parse: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      this.templates.set(source, template);
    }
    const vars: Record<string, unknown> = {
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
      unk_token: this.unkToken ?? '',
      pad_token: this.padToken ?? '',
      ...(options.tools !== undefined ? { tools: options.tools } : {}),
      ...(options.documents !== undefined ? { documents: options.documents } : {}),
      ...options.templateKwargs,
    };
    let text: string;
    try {
      // Templates come from model files: rendered within output, step and time limits.
      text = renderWithLimits(this.libs.jinja, template, vars, limits);
    } catch (e) {
      if (e instanceof LowbitError) throw e;
      throw new LowbitError('INVALID_ARGUMENT', `the chat template failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    return options.tokenize === false ? text : this.encode(text, { addSpecialTokens: false });
  }
}

/** Builds a Tokenizer from a tokenizer.json object and tokenizer_config.json fields. */
async function build(
  tokenizerJson: Record<string, unknown>,
  config: Record<string, unknown>,
  extra: { eosTokenIds?: number[]; kind: 'tokenizer.json' | 'gguf'; chatTemplate?: string | undefined; tokens?: string[] },
): Promise<Tokenizer> {
  const libs = await loadLibraries();
  let hf: HfTokenizer;
  try {
    hf = new libs.Tokenizer(tokenizerJson, { ...config, clean_up_tokenization_spaces: false });
  } catch (e) {
    throw new LowbitError('MALFORMED_FILE', `the tokenizer could not be built: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (extra.tokens) {
    // A vocabulary with a token listed twice keeps its later id in the token -> id map; give
    // every id its own string back for decoding.
    const vocab = (hf.model as unknown as { vocab: Array<string | undefined> }).vocab;
    extra.tokens.forEach((t, i) => {
      if (vocab[i] === undefined) vocab[i] = t;
    });
  }
  return new Tokenizer(hf, libs, config, extra);
}

/** tokenizer_config.json's add_bos_token/add_eos_token, when tokenizer.json's post-processor adds nothing. */
function withBosEos(json: Record<string, unknown>, config: Record<string, unknown>): Record<string, unknown> {
  const pp = json.post_processor as { type?: string } | null | undefined;
  const addsNothing = pp === null || pp === undefined || pp.type === 'ByteLevel';
  if (!addsNothing || (config.add_bos_token !== true && config.add_eos_token !== true)) return json;
  const bos = config.add_bos_token === true ? tokenString(config.bos_token) : undefined;
  const eos = config.add_eos_token === true ? tokenString(config.eos_token) : undefined;
  const vocab = ((json.model as { vocab?: unknown } | undefined)?.vocab ?? {}) as Record<string, number>;
  return { ...json, post_processor: templateProcessing(bos, eos, Array.isArray(vocab) ? {} : vocab) };
}

/** A JSON file that must hold an object (null, an array or a number is MALFORMED_FILE, not a TypeError later). */
async function readObject(source: ModelSource, file: string): Promise<Record<string, unknown>> {
  const v = await source.readJson<unknown>(file);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new LowbitError('MALFORMED_FILE', `${file} must be a JSON object, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`, { file });
  return v as Record<string, unknown>;
}

async function fromFolder(source: ModelSource, options: AutoTokenizerOptions): Promise<Tokenizer> {
  const json = await readObject(source, 'tokenizer.json');
  const config = (await source.exists('tokenizer_config.json')) ? await readObject(source, 'tokenizer_config.json') : {};
  let chatTemplate = options.chatTemplate;
  if (chatTemplate === undefined && (await source.exists('chat_template.jinja'))) chatTemplate = await source.readText('chat_template.jinja');
  if (chatTemplate === undefined && config.chat_template === undefined && (await source.exists('chat_template.json'))) {
    chatTemplate = defaultTemplate((await readObject(source, 'chat_template.json')).chat_template);
  }
  const eosTokenIds: number[] = [];
  if (await source.exists('generation_config.json')) {
    const gen = await readObject(source, 'generation_config.json');
    const e = gen.eos_token_id;
    for (const id of Array.isArray(e) ? e : [e]) if (typeof id === 'number' && Number.isInteger(id)) eosTokenIds.push(id);
  }
  return build(withBosEos(json, config), config, { kind: 'tokenizer.json', eosTokenIds, chatTemplate });
}

/** Entry points, named after transformers' AutoTokenizer. */
export class AutoTokenizer {
  private constructor() {}

  /**
   * Loads a tokenizer from whatever resolveSource takes (a local folder or file, URL, hub id,
   * Blob(s), ModelSource). A source with tokenizer.json (+ tokenizer_config.json, chat_template.jinja,
   * generation_config.json when present) is read as transformers does; a .gguf file (the one the
   * input named, `options.ggufFile`, or the source's only one) is read from its tokenizer metadata
   * when there is no tokenizer.json or `options.preferGguf` is set. Initializes the wasm module
   * (for the GGUF parser) when needed.
   */
  static async fromPretrained(input: SourceInput, options: AutoTokenizerOptions = {}): Promise<Tokenizer> {
    const source = await resolveSource(input, options);
    const named = options.ggufFile ?? (source.weightFile?.toLowerCase().endsWith('.gguf') ? source.weightFile : undefined);
    if (named === undefined && !options.preferGguf && (await source.exists('tokenizer.json'))) return fromFolder(source, options);
    let gguf = named;
    if (gguf === undefined) {
      const weights = await listWeightFiles(source, { checkFiles: false }).catch(() => undefined);
      if (weights?.format === 'gguf') gguf = weights.files[0];
    }
    if (gguf === undefined) {
      if (await source.exists('tokenizer.json')) return fromFolder(source, options);
      throw new LowbitError('NOT_FOUND', `no tokenizer in ${source.description}: looked for tokenizer.json and for a single .gguf file`);
    }
    await init();
    const range = await source.open(gguf);
    try {
      const file = await GgufFile.open(range);
      return await AutoTokenizer.fromGguf(file, options);
    } finally {
      await range.close?.();
    }
  }

  /** A tokenizer from an open GGUF file's tokenizer.ggml.* metadata (see ./gguf.ts for what is supported). */
  static async fromGguf(file: GgufFile, options: { chatTemplate?: string } = {}): Promise<Tokenizer> {
    const parts = tokenizerJsonFromGguf(file.metadata, file.name);
    return build(parts.tokenizerJson, parts.tokenizerConfig, {
      kind: 'gguf',
      eosTokenIds: parts.eosTokenIds,
      chatTemplate: options.chatTemplate,
      tokens: parts.tokens,
    });
  }

  /** A tokenizer from tokenizer.json and tokenizer_config.json objects already in memory. */
  static async fromJson(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown> = {}, options: { chatTemplate?: string; eosTokenIds?: number[] } = {}): Promise<Tokenizer> {
    return build(withBosEos(tokenizerJson, tokenizerConfig), tokenizerConfig, {
      kind: 'tokenizer.json',
      chatTemplate: options.chatTemplate,
      ...(options.eosTokenIds ? { eosTokenIds: options.eosTokenIds } : {}),
    });
  }
}
