/** The backend a model is built on: the caller's, or a CPU backend the model then owns. */
import type { Backend } from '../backends/backend.js';
import { CpuBackend } from '../backends/cpu/index.js';
import type { CausalLM } from './causal-lm.js';

export interface BackendChoice {
  backend?: Backend;
  /** Threads of the CPU backend fromPretrained makes: 'auto' (default) or a count; 1 = one thread. */
  threads?: number | 'auto';
}

/**
 * Runs `make` on `o.backend`, or on a new CpuBackend with `o.threads` that the model disposes
 * with itself (also when `make` throws, so that no worker thread is left behind).
 */
export async function buildOnBackend<M extends CausalLM>(o: BackendChoice, make: (b: Backend) => M): Promise<M> {
  if (o.backend !== undefined) return make(o.backend);
  const backend = await CpuBackend.create(o.threads === undefined ? {} : { threads: o.threads });
  try {
    const model = make(backend);
    model.disposeBackend = true;
    return model;
  } catch (e) {
    backend.dispose();
    throw e;
  }
}
