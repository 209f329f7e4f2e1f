/**
 * A chat that keeps the model's KV cache between turns (`model.chat()`): each turn renders the
 * whole conversation with the chat template, as a fresh generate({ messages }) would, but only
 * the tokens after the longest common prefix with what the cache holds are run through the model
 * (generate's `reuseCache`). Editing the history (setMessages) costs only the edited tail, and a
 * conversation that differs from the cache anywhere is simply re-run from that point — so the
 * answer is always the one a fresh generate over the same conversation gives.
 */
import { LowbitError } from '../errors.js';
import type { ApplyChatTemplateOptions, ChatMessage, Tokenizer } from '../tokenizer/index.js';
import type { CausalLM, GenerateOptions, PrefillInfo } from './causal-lm.js';

/** Generation settings a session uses for every turn (a turn may override them). */
export type ChatGenerationOptions = Omit<GenerateOptions, 'inputIds' | 'prompt' | 'messages' | 'reuseCache' | 'onPrefill' | 'tokenizer'>;

export interface ChatSessionOptions extends ChatGenerationOptions {
  /** A system message the conversation starts with (kept by reset()). */
  system?: string;
  /** The conversation so far (after `system`), e.g. a saved chat to continue. */
  messages?: readonly ChatMessage[];
  /** The tokenizer with the chat template (default: the model's own). */
  tokenizer?: Tokenizer;
  /** Passed to applyChatTemplate each turn (a template of your own, tools, template variables). */
  templateOptions?: Omit<ApplyChatTemplateOptions, 'tokenize' | 'addGenerationPrompt'>;
}

/** Why a turn ended. */
export type FinishReason = 'eos' | 'stop' | 'length' | 'cache-full';

/** What one turn did. */
export interface ChatTurn extends PrefillInfo {
  /** The reply as added to the history (decoded without special tokens). */
  text: string;
  /** The new token ids (including an end-of-turn token the model produced). */
  tokens: number[];
  finishReason: FinishReason;
}

/** Totals over the session's turns. */
export interface ChatStats {
  turns: number;
  promptTokens: number;
  reusedTokens: number;
  prefilledTokens: number;
  newTokens: number;
}

export class ChatSession {
  readonly tokenizer: Tokenizer;
  private history: ChatMessage[];
  private readonly initial: ChatMessage[];
  private readonly defaults: ChatGenerationOptions;
  private readonly templateOptions: ChatSessionOptions['templateOptions'];
  private queue: Promise<unknown> = Promise.resolve();
  /** The last completed turn. */
  lastTurn: ChatTurn | undefined;
  readonly stats: ChatStats = { turns: 0, promptTokens: 0, reusedTokens: 0, prefilledTokens: 0, newTokens: 0 };

  constructor(
    readonly model: CausalLM,
    options: ChatSessionOptions = {},
  ) {
    const { system, messages, tokenizer, templateOptions, ...defaults } = options;
    const tok = tokenizer ?? model.tokenizer;
    if (tok === undefined) throw new LowbitError('INVALID_ARGUMENT', `a chat session needs a tokenizer with a chat template: the model has none (${model.tokenizerUnavailable ?? 'none was loaded'}); pass chat({ tokenizer })`);
    if (tok.chatTemplate === undefined && templateOptions?.chatTemplate === undefined) {
      throw new LowbitError('NOT_FOUND', 'this tokenizer has no chat template (tokenizer_config.json chat_template, chat_template.jinja or the GGUF tokenizer.chat_template): pass chat({ templateOptions: { chatTemplate } })');
    }
    if (system !== undefined && typeof system !== 'string') throw new LowbitError('INVALID_ARGUMENT', `system must be a string, got ${typeof system}`);
    this.tokenizer = tok;
    this.initial = system !== undefined ? [{ role: 'system', content: system }] : [];
    this.history = [...this.initial, ...checkMessages(messages ?? [], 'messages')];
    this.defaults = defaults;
    this.templateOptions = templateOptions;
  }

  /** The conversation so far (a copy). */
  get messages(): ChatMessage[] {
    return this.history.map((m) => ({ ...m }));
  }

  /**
   * Replaces the conversation (edit a message, drop the last exchange, …). Nothing runs now: the
   * next turn re-uses the cache up to the first token that differs.
   */
  setMessages(messages: readonly ChatMessage[]): void {
    this.history = checkMessages(messages, 'messages').map((m) => ({ ...m }));
  }

  /** Back to the start (the system message only) and an empty KV cache. */
  reset(): void {
    this.history = this.initial.map((m) => ({ ...m }));
    this.model.reset();
  }

  /**
   * Adds a user message (a string, or a message with its own role), generates the reply, adds
   * it to the history and returns its text. Turns of one session run one after another. If the
   * turn fails or is aborted (options.signal), the history is left as it was before the call
   * (the session stays usable; the cache keeps what it can re-use).
   */
  send(message: string | ChatMessage, options: ChatGenerationOptions = {}): Promise<string> {
    const m = typeof message === 'string' ? { role: 'user', content: message } : checkMessages([message], 'message')[0]!;
    return this.enqueue(async () => {
      const turn = await this.run([...this.history, m], options);
      this.history.push({ ...m }, { role: 'assistant', content: turn.text });
      return turn.text;
    });
  }

  /** Generates the assistant's reply to the history as it is (e.g. after setMessages ending with a user message). */
  respond(options: ChatGenerationOptions = {}): Promise<string> {
    return this.enqueue(async () => {
      const turn = await this.run(this.history, options);
      this.history.push({ role: 'assistant', content: turn.text });
      return turn.text;
    });
  }

  private enqueue<T>(f: () => Promise<T>): Promise<T> {
    const next = this.queue.then(f, f);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async run(messages: ChatMessage[], options: ChatGenerationOptions): Promise<ChatTurn> {
    const o = { ...this.defaults, ...options };
    const inputIds = this.tokenizer.applyChatTemplate(messages, { ...this.templateOptions, addGenerationPrompt: true, tokenize: true });
    const room = this.model.maxPositions - inputIds.length + 1; // the last new token is never run
    if (room < 1 || inputIds.length === 0) {
      throw new LowbitError('LIMIT_EXCEEDED', `the conversation is ${inputIds.length} tokens and the KV cache holds ${this.model.maxPositions}: drop or shorten old messages (setMessages), reset(), or load the model with a larger maxPositions`);
    }
    const wanted = o.maxNewTokens ?? 20;
    const maxNewTokens = Number.isInteger(wanted) && wanted > room ? room : wanted;
    let prefill: PrefillInfo | undefined;
    const tokens = await this.model.generate({ ...o, inputIds, maxNewTokens, tokenizer: this.tokenizer, reuseCache: true, onPrefill: (p) => (prefill = p) });
    const eos = new Set(o.eosTokenIds ?? [...this.model.config.eosTokenIds, ...this.tokenizer.eosTokenIds]);
    const last = tokens[tokens.length - 1];
    const finishReason: FinishReason = last !== undefined && eos.has(last) ? 'eos' : tokens.length < maxNewTokens ? 'stop' : maxNewTokens < wanted ? 'cache-full' : 'length';
    const p = prefill ?? { promptTokens: inputIds.length, reusedTokens: 0, prefilledTokens: 0 };
    const turn: ChatTurn = { ...p, text: this.tokenizer.decode(tokens, { skipSpecialTokens: true }), tokens, finishReason };
    this.lastTurn = turn;
    this.stats.turns++;
    this.stats.promptTokens += p.promptTokens;
    this.stats.reusedTokens += p.reusedTokens;
    this.stats.prefilledTokens += p.prefilledTokens;
    this.stats.newTokens += tokens.length;
    return turn;
  }
}

function checkMessages(messages: readonly ChatMessage[], what: string): ChatMessage[] {
  if (!Array.isArray(messages)) throw new LowbitError('INVALID_ARGUMENT', `${what} must be an array of { role, content }`);
  for (const [i, m] of messages.entries()) {
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new LowbitError('INVALID_ARGUMENT', `${what}[${i}] must be { role: string, content: string }`);
    }
  }
  return [...messages];
}
