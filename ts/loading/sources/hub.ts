/**
 * A Hugging Face hub repository: `org/name` at a revision, read through
 * `${endpoint}/${id}/resolve/${revision}/${file}` (which the hub redirects to its CDN for large
 * files) with the URL source's Range reads, retries and abort support.
 *
 * The endpoint is `options.endpoint`, else the HF_ENDPOINT environment variable when this runtime
 * lets us read it (Node's process.env; Deno's env when permission is already granted; never in a
 * browser), else https://huggingface.co. The token is only ever taken from `options.token`.
 */
import { LowbitError } from '../../errors.js';
import { UrlSource, type UrlSourceOptions } from './url.js';

/** The Hugging Face hub, when neither the `endpoint` option nor HF_ENDPOINT names another. */
export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';

/** Options of `hubSource`. */
export interface HubSourceOptions extends Omit<UrlSourceOptions, 'description' | 'files'> {
  /** The hub's base URL (default: HF_ENDPOINT from the environment, else https://huggingface.co). */
  endpoint?: string;
  /** A branch, tag or commit (default 'main'); 'refs/pr/1' works too. */
  revision?: string;
}

/** Hub ids: 'org/name' (or a legacy bare 'name'); letters, digits, '_', '-', '.'; no '--' or '..'. */
const HUB_ID = /^(?:[A-Za-z0-9][\w.-]{0,95}\/)?[A-Za-z0-9][\w.-]{0,95}$/;

/** Whether `id` is a well-formed hub id; `requireOrg` demands the 'org/name' form. */
export function isHubId(id: string, requireOrg = false): boolean {
  if (!HUB_ID.test(id) || id.includes('--') || id.includes('..') || id.endsWith('.git')) return false;
  return !requireOrg || id.includes('/');
}

/** HF_ENDPOINT when the runtime lets us read it without asking; undefined otherwise. */
export function hubEndpointFromEnv(): string | undefined {
  const g = globalThis as {
    Deno?: {
      env?: { get(k: string): string | undefined };
      permissions?: { querySync?(d: { name: 'env'; variable: string }): { state: string } };
    };
    process?: { env?: Record<string, string | undefined> };
  };
  try {
    if (g.Deno !== undefined) {
      // Deno would prompt (or throw) for an env read without --allow-env: ask first.
      const state = g.Deno.permissions?.querySync?.({ name: 'env', variable: 'HF_ENDPOINT' })?.state;
      if (state !== 'granted') return undefined;
      return g.Deno.env?.get('HF_ENDPOINT') || undefined;
    }
    return g.process?.env?.HF_ENDPOINT || undefined;
  } catch {
    return undefined;
  }
}

/** A hub repository at one revision. */
export class HubSource extends UrlSource {
  readonly id: string;
  readonly revision: string;
  readonly endpoint: string;

  constructor(id: string, options: HubSourceOptions = {}) {
    if (typeof id !== 'string' || !isHubId(id)) {
      throw new LowbitError('INVALID_ARGUMENT', `${JSON.stringify(id)} is not a Hugging Face hub id (they look like 'org/name')`);
    }
    const revision = options.revision ?? 'main';
    if (typeof revision !== 'string' || revision.length === 0) throw new LowbitError('INVALID_ARGUMENT', 'revision must be a non-empty string');
    const endpoint = (options.endpoint ?? hubEndpointFromEnv() ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
    let base: URL;
    try {
      base = new URL(`${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/`);
    } catch (e) {
      throw new LowbitError('INVALID_ARGUMENT', `hub endpoint ${JSON.stringify(endpoint)} is not a URL`, { cause: e });
    }
    const { endpoint: _e, revision: _r, ...rest } = options;
    super(base, { ...rest, description: `hub:${id}@${revision} (${endpoint})` });
    this.id = id;
    this.revision = revision;
    this.endpoint = endpoint;
  }
}

/** A Hugging Face hub repository ('org/name') as a model source. */
export function hubSource(id: string, options?: HubSourceOptions): HubSource {
  return new HubSource(id, options);
}
