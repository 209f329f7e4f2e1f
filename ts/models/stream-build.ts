/** Building a model module by module while its checkpoint streams in (fromPretrained, GGUF too). */
import type { LoadedWeight } from '../loading/load-weights.js';
import type { CausalLM, ModelWeights } from './causal-lm.js';
import type { DecoderConfig } from './config.js';
import { moduleNames, moduleOfTensor } from './device-map.js';

/**
 * Builds a model while its tensors stream in: the model is made once the headers name every
 * tensor, each module is built (and its host copies dropped) as soon as its last tensor has
 * arrived, and tensors are read module by module whatever the file order. So a load holds about
 * the built model plus one module's tensors, not the whole checkpoint twice. On an error (a bad
 * tensor, an abort) the modules built so far are freed before it propagates.
 */
export async function streamInto<M extends CausalLM>(
  config: DecoderConfig,
  make: (weights: ModelWeights) => M,
  load: (o: { onTensors: (names: string[]) => void; orderBy: (name: string) => number; skip: (name: string) => boolean }) => AsyncIterable<LoadedWeight>,
  rename: (w: LoadedWeight) => LoadedWeight | undefined = (w) => w,
  renameName: (name: string) => string | undefined = (n) => n,
): Promise<M> {
  const modules = moduleNames(config);
  const index = new Map(modules.map((n, i) => [n, i]));
  let model: M | undefined;
  try {
    const orderBy = (name: string) => {
      const hf = renameName(name);
      const m = hf === undefined ? undefined : moduleOfTensor(config, hf);
      return (m === undefined ? undefined : index.get(m)) ?? modules.length;
    };
    const onTensors = (names: string[]) => {
      model = make({ streamed: names.flatMap((n) => renameName(n) ?? []) });
    };
    // Tensors named for no module of the model are not read at all (rename-less ones, such as a
    // GGUF's rope_freqs, are handled by `rename`).
    const skip = (name: string) => {
      const hf = renameName(name);
      return hf !== undefined && moduleOfTensor(config, hf) === undefined;
    };
    for await (const w of load({ onTensors, orderBy, skip })) {
      const out = rename(w);
      if (out !== undefined) model!.addWeight(out);
    }
    model ??= make({ streamed: [] });
    model.finishBuild();
    return model;
  } catch (e) {
    model?.dispose();
    throw e;
  }
}
