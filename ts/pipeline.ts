/**
 * `pipeline('text-generation', model, options)`: load and generate in one line, the way
 * transformers' and transformers.js' pipelines are called. The pipeline takes a prompt (text)
 * or a chat (an array of { role, content }) and returns `[{ generated_text }]`: for text, the
 * prompt followed by the continuation (`returnFullText: false` for the continuation alone); for
 * a chat, the messages with the assistant's reply appended, as transformers does.
 */
import { LowbitError } from './errors.js';
import { AutoModelForCausalLM, type FromPretrainedOptions } from './models/auto.js';
import type { CausalLM, GenerateOptions } from './models/causal-lm.js';
import type { SourceInput } from './loading/sources/resolve.js';
import type { ChatMessage, Tokenizer } from './tokenizer/index.js';

export type TextGenerationInput = string | readonly ChatMessage[];

export interface TextGenerationCallOptions extends Omit<GenerateOptions, 'inputIds' | 'prompt' | 'messages'> {
  /** Text input: return the prompt followed by the new text (default true, as transformers). */
  returnFullText?: boolean;
  /** transformers' spellings, for code moved from Python / transformers.js (the camelCase one wins when both are given). */
  max_new_tokens?: number;
  do_sample?: boolean;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  return_full_text?: boolean;
}

/** transformers' option name -> lowbit's. */
const SNAKE_CASE = { max_new_tokens: 'maxNewTokens', do_sample: 'doSample', top_k: 'topK', top_p: 'topP', repetition_penalty: 'repetitionPenalty', return_full_text: 'returnFullText' } as const;

function camelCased(o: TextGenerationCallOptions): Omit<TextGenerationCallOptions, keyof typeof SNAKE_CASE> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const to = (SNAKE_CASE as Record<string, string>)[k];
    if (to === undefined) out[k] = v;
    else if (!(to in o)) out[to] = v;
  }
  return out;
}

export type TextGenerationOutput<I> = I extends string ? [{ generated_text: string }] : [{ generated_text: ChatMessage[] }];

/** A loaded text-generation pipeline: call it; `dispose()` frees the model. */
export interface TextGenerationPipeline {
  <I extends TextGenerationInput>(input: I, options?: TextGenerationCallOptions): Promise<TextGenerationOutput<I>>;
  readonly task: 'text-generation';
  readonly model: CausalLM;
  readonly tokenizer: Tokenizer;
  dispose(): void;
}

export type PipelineTask = 'text-generation';

/**
 * Loads `model` (a hub id, folder, .gguf file, URL, or Files — whatever fromPretrained takes)
 * with `options` (quantizationConfig, deviceMap, maxPositions, onProgress, …) and returns a
 * function that generates. Generation options per call: maxNewTokens (default 20), doSample,
 * temperature, topK, topP, seed, stop, streamer, signal, … (max_new_tokens, do_sample, top_k,
 * top_p, repetition_penalty and return_full_text are read too, as transformers spells them).
 */
export async function pipeline(task: PipelineTask, model: SourceInput, options: FromPretrainedOptions = {}): Promise<TextGenerationPipeline> {
  if (task !== 'text-generation') throw new LowbitError('INVALID_ARGUMENT', `pipeline() supports the task 'text-generation', got ${JSON.stringify(task)}`);
  const lm = await AutoModelForCausalLM.fromPretrained(model, options);
  const tokenizer = lm.tokenizer;
  if (tokenizer === undefined) {
    lm.dispose();
    throw new LowbitError('NOT_FOUND', `pipeline('text-generation') needs the model's tokenizer: ${lm.tokenizerUnavailable ?? 'none was found'}`);
  }
  const run = async (input: TextGenerationInput, o: TextGenerationCallOptions = {}) => {
    if (typeof o !== 'object' || o === null) throw new LowbitError('INVALID_ARGUMENT', 'the pipeline\'s options must be an object ({ maxNewTokens, doSample, … })');
    const { returnFullText, ...generateOptions } = camelCased(o);
    if (typeof input === 'string') {
      const ids = await lm.generate({ ...generateOptions, prompt: input });
      const text = tokenizer.decode(ids, { skipSpecialTokens: true });
      return [{ generated_text: returnFullText === false ? text : input + text }];
    }
    if (!Array.isArray(input)) throw new LowbitError('INVALID_ARGUMENT', 'a text-generation pipeline takes a string or an array of { role, content } messages');
    const ids = await lm.generate({ ...generateOptions, messages: input });
    return [{ generated_text: [...input.map((m) => ({ ...m })), { role: 'assistant', content: tokenizer.decode(ids, { skipSpecialTokens: true }) }] }];
  };
  return Object.assign(run, { task: 'text-generation' as const, model: lm, tokenizer, dispose: () => lm.dispose() }) as TextGenerationPipeline;
}
