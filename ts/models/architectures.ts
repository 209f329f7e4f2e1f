/**
 * The architecture registry: every architecture lowbit runs, by DecoderConfig family. Adding one
 * is its own file (an Architecture and its CausalLM) plus its line here.
 */
import { LowbitError } from '../errors.js';
import type { Architecture } from './architecture.js';
import type { DecoderConfig } from './config.js';
import { GPT2 } from './gpt2.js';
import { LLAMA } from './llama.js';
import { QWEN3 } from './qwen3.js';

export const ARCHITECTURES: readonly Architecture[] = [LLAMA, GPT2, QWEN3];

/** The architecture of a parsed config. */
export function architectureOf(config: Pick<DecoderConfig, 'family' | 'modelType'>): Architecture {
  const a = ARCHITECTURES.find((x) => x.family === config.family);
  if (a === undefined) throw new LowbitError('UNSUPPORTED_DTYPE', `model_type '${config.modelType}' (family '${config.family}') has no architecture registered (have: ${ARCHITECTURES.map((x) => x.family).join(', ')})`);
  return a;
}
