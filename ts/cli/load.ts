/**
 * Loading a model for the commands that run one (generate, chat, bench): the options they share,
 * progress bars on a terminal, and the one-line summary of what was loaded.
 */
import { AutoModelForCausalLM } from '../models/auto.js';
import type { CausalLM } from '../models/causal-lm.js';
import { intOption, quantChoice, quantizationConfig, threadsOption, UsageError, type QuantChoice } from './common.js';
import { progressBars } from './progress.js';

/** parseArgs options every model-running command takes. */
export const MODEL_ARGS = {
  model: { type: 'string', short: 'm' },
  quant: { type: 'string', default: 'nf4-dq' },
  threads: { type: 'string' },
  device: { type: 'string', default: 'cpu' },
  'max-positions': { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

export const MODEL_USAGE = `  --model, -m M          a local folder or .gguf file, a Hugging Face hub id, or a URL (required)
  --quant Q              none | int8 | fp4 | nf4 | nf4-dq   (default nf4-dq)
  --threads auto | N     CPU threads (default auto)
  --device cpu | gpu | auto   (default cpu; gpu in Node needs \`npm install webgpu\`)
  --max-positions N      KV cache length (default: the model's, at most 4096)`;

export interface ModelArgs {
  model?: string;
  quant?: string;
  threads?: string;
  device?: string;
  'max-positions'?: string;
  json?: boolean;
}

export interface Loaded {
  model: CausalLM;
  quant: QuantChoice;
  loadSeconds: number;
  devices: string[];
  threads: number;
}

/** Checks the shared options (usage errors before anything loads). */
export function checkModelArgs(v: ModelArgs, command: string): { model: string; quant: QuantChoice; threads: number | 'auto' | undefined; maxPositions: number | undefined; device: 'cpu' | 'gpu' | 'auto' } {
  if (v.model === undefined) throw new UsageError(`${command} needs --model`);
  const quant = quantChoice(v.quant ?? 'nf4-dq');
  const threads = threadsOption(v.threads);
  const maxPositions = intOption('max-positions', v['max-positions'], 1);
  const device = v.device ?? 'cpu';
  if (!['cpu', 'gpu', 'auto'].includes(device)) throw new UsageError(`--device must be cpu, gpu or auto, got '${device}'`);
  return { model: v.model, quant, threads, maxPositions, device: device as 'cpu' | 'gpu' | 'auto' };
}

/** Loads the model, with progress bars when stderr is a terminal and there is no --json. */
export async function loadModel(v: ModelArgs, command: string, signal: AbortSignal): Promise<Loaded> {
  const a = checkModelArgs(v, command);
  const bars = process.stderr.isTTY === true && v.json !== true;
  const progress = progressBars(bars);
  const t0 = performance.now();
  const config = quantizationConfig(a.quant);
  let model: CausalLM;
  try {
    model = await AutoModelForCausalLM.fromPretrained(a.model, {
      ...(config ? { quantizationConfig: config } : {}),
      ...(a.threads !== undefined ? { threads: a.threads } : {}),
      ...(a.maxPositions !== undefined ? { maxPositions: a.maxPositions } : {}),
      deviceMap: a.device,
      signal,
      ...(bars ? { onProgress: (e) => progress.onLoad(e) } : {}),
    });
  } catch (e) {
    progress.stop(false);
    throw e;
  }
  progress.stop();
  const devices = [...new Set(Object.values(model.deviceMap))];
  return { model, quant: a.quant, loadSeconds: (performance.now() - t0) / 1000, devices, threads: model.backend.threads ?? 1 };
}

/** "loaded M (nf4-dq) in 1.2 s on cpu, 2 thread(s)" */
export function loadedLine(l: Loaded, source: string): string {
  const on = l.devices.join(' + ');
  return `loaded ${source} (${l.quant}) in ${l.loadSeconds.toFixed(1)} s on ${on}${l.devices.includes('cpu') ? `, ${l.threads} thread(s)` : ''}`;
}
