/**
 * How many pieces attention.wgsl's split (flash-decoding) path cuts the context into, for one
 * attention call. The ordinary kernel runs one workgroup per (query head, new token) and walks
 * the whole context serially; at decode (one token) a model with 9 or 32 heads gives a GPU with
 * 100+ compute units 9 or 32 workgroups. Splitting the context gives heads x tokens x splits
 * workgroups, at the price of a second small dispatch (attention_combine) and a partials buffer of
 * heads x tokens x splits x (head_dim + 2) floats.
 *
 * The rule (the same in crates/lowbit-gpu/src/kernels/attention.rs `attention_splits`):
 * - only calls of at most MAX_TOKENS new tokens split (decode, speculative or small chunks);
 *   prefill has heads x tokens workgroups already and keeps the ordinary kernel;
 * - enough splits for heads x tokens x splits >= TARGET_WORKGROUPS (a few workgroups per
 *   compute unit of a large GPU), but
 * - no split shorter than MIN_SPLIT positions (below that the partial's write and the combine cost
 *   more than the positions), so contexts under 2 x MIN_SPLIT never split, and
 * - at most MAX_SPLITS.
 * One split means the ordinary kernel. Nothing here depends on the adapter yet: no GPU has been
 * measured (lavapipe's timings say nothing about one); a per-adapter target would go in
 * variants.ts.
 */

export const ATTENTION_SPLIT = {
  MAX_TOKENS: 4,
  TARGET_WORKGROUPS: 256,
  MIN_SPLIT: 128,
  MAX_SPLITS: 64,
} as const;

/** The positions the tokens of one call see together: from the first position token 0 sees to the last token. */
export function attentionSpan(start: number, n: number, window: number | undefined): number {
  const base = window !== undefined ? Math.max(0, start + 1 - window) : 0;
  return start + n - base;
}

/**
 * Splits for a call of `n` new tokens over `span` positions with `nHeads` query heads; `force`
 * (WebGpuBackend's `attentionSplits`) overrides the rule, capped at one position per split.
 */
export function attentionSplits(span: number, nHeads: number, n: number, force?: number): number {
  if (force !== undefined) return Math.max(1, Math.min(force, span));
  if (n > ATTENTION_SPLIT.MAX_TOKENS) return 1;
  const forWork = Math.ceil(ATTENTION_SPLIT.TARGET_WORKGROUPS / (nHeads * n));
  const forLength = Math.floor(span / ATTENTION_SPLIT.MIN_SPLIT);
  return Math.max(1, Math.min(forWork, forLength, ATTENTION_SPLIT.MAX_SPLITS));
}

/** The dispatch shape for `splits` pieces of `span`: positions per split and the splits that are not empty. */
export function splitShape(span: number, splits: number): { splitLen: number; nSplit: number } {
  const splitLen = Math.ceil(span / splits);
  return { splitLen, nSplit: Math.ceil(span / splitLen) };
}
