/**
 * lowbit/worker: run a model in a Web Worker (browsers, Deno) with the same API and streaming.
 *
 *   import { fromPretrainedInWorker } from 'lowbit/worker';
 *   const model = await fromPretrainedInWorker('HuggingFaceTB/SmolLM2-135M-Instruct', { quantizationConfig: { loadIn4bit: true } });
 *   for await (const text of model.stream({ messages: [{ role: 'user', content: 'Hi' }] })) out.append(text);
 *   model.dispose();
 */
export { fromPretrainedInWorker, LowbitWorker, WorkerModel, type WorkerLoadOptions, type WorkerGenerateOptions, type LowbitWorkerOptions } from './worker/client.js';
export type { GenerationStats, MemoryPlan, MemoryPlanRow, PlanQuant, WorkerModelInfo, WorkerSourceInput } from './worker/protocol.js';
