/**
 * The architecture registry: every architecture lowbit runs, the one list of them. Adding one is
 * its own file (an Architecture and its CausalLM) plus its line here; config.json model_types and
 * GGUF `general.architecture` values are dispatched from the architectures' own declarations.
 */
import { LowbitError } from '../errors.js';
import type { Architecture, GgufArchitecture } from './architecture.js';
import type { ConfigJson, DecoderConfig } from './config.js';
import { GEMMA2 } from './gemma2.js';
import { GEMMA3 } from './gemma3.js';
import { GPT2 } from './gpt2.js';
import { LLAMA } from './llama.js';
import { QWEN3 } from './qwen3.js';

export const ARCHITECTURES: readonly Architecture[] = [LLAMA, GPT2, QWEN3, GEMMA2, GEMMA3];

/** Every config.json model_type some architecture reads. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = ARCHITECTURES.flatMap((a) => a.modelTypes);

/** Every GGUF `general.architecture` some architecture reads. */
export const SUPPORTED_GGUF_ARCHITECTURES: readonly string[] = ARCHITECTURES.flatMap((a) => a.gguf?.names ?? []);

/** The architecture of a parsed config. */
export function architectureOf(config: Pick<DecoderConfig, 'family' | 'modelType'>): Architecture {
  const a = ARCHITECTURES.find((x) => x.family === config.family);
  if (a === undefined) throw new LowbitError('UNSUPPORTED_DTYPE', `model_type '${config.modelType}' (family '${config.family}') has no architecture registered (have: ${ARCHITECTURES.map((x) => x.family).join(', ')})`);
  return a;
}

/** config.json -> the typed config of the architecture that reads its model_type. */
export function parseConfig(c: ConfigJson): DecoderConfig {
  const modelType = String(c.model_type ?? '');
  const a = ARCHITECTURES.find((x) => x.modelTypes.includes(modelType));
  if (a === undefined) throw new LowbitError('UNSUPPORTED_DTYPE', `config.json: model_type '${modelType}' is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`, { file: 'config.json' });
  return a.parseConfig(c);
}

/** The GGUF side of the architecture that reads `general.architecture` = `name`. */
export function ggufArchitecture(name: string): GgufArchitecture {
  const g = ARCHITECTURES.find((x) => x.gguf?.names.includes(name) === true)?.gguf;
  if (g === undefined) throw new LowbitError('UNSUPPORTED_DTYPE', `GGUF: architecture '${name}' is not supported (supported: ${SUPPORTED_GGUF_ARCHITECTURES.join(', ')})`);
  return g;
}
