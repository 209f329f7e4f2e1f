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
 * temperature, topK, topP, seed, stop, streamer, signal, …
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
    const { returnFullText, ...generateOptions } = o;
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
