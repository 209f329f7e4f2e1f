/**
 * What the environment says about the Hugging Face cache, read as Python's huggingface_hub reads
 * it (huggingface_hub/constants.py and utils/_auth.py, v2.4):
 *
 *   HF_HOME       = $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
 *   hub cache     = $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (legacy), else HF_HOME/hub
 *   offline       = HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is "1", "ON", "YES" or "TRUE" (any case)
 *   token         = $HF_TOKEN, else $HUGGING_FACE_HUB_TOKEN (legacy), else the file at
 *                   $HF_TOKEN_PATH (default HF_HOME/token, which `hf auth login` writes);
 *                   newlines and surrounding spaces removed, empty means none
 *
 * Paths get '~' expanded (huggingface_hub also expands $VARS in them; lowbit does not).
 * Nothing is read in a browser; in Deno a variable is read only when --allow-env already grants
 * it (an unasked read would prompt or throw).
 */
import { LowbitError } from '../../errors.js';
import { nodeFs, nodePath } from '../sources/local.js';
import { isServerRuntime } from '../sources/types.js';

type EnvRuntime = {
  Deno?: {
    env?: { get(k: string): string | undefined };
    permissions?: { querySync?(d: { name: 'env'; variable: string }): { state: string } };
  };
  process?: { env?: Record<string, string | undefined> };
};

/** An environment variable when the runtime lets us read it without asking; undefined otherwise. */
export function readEnv(name: string): string | undefined {
  const g = globalThis as EnvRuntime;
  try {
    if (g.Deno !== undefined) {
      const state = g.Deno.permissions?.querySync?.({ name: 'env', variable: name })?.state;
      if (state !== 'granted') return undefined;
      return g.Deno.env?.get(name) || undefined;
    }
    return g.process?.env?.[name] || undefined;
  } catch {
    return undefined;
  }
}

/** huggingface_hub's _is_true: "1", "ON", "YES", "TRUE" in any case. */
export function envFlag(value: string | undefined): boolean {
  return value !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(value.trim().toUpperCase());
}

/** HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set. */
export function hubOfflineFromEnv(): boolean {
  return envFlag(readEnv('HF_HUB_OFFLINE') ?? readEnv('TRANSFORMERS_OFFLINE'));
}

function cleanToken(token: string | undefined): string | undefined {
  if (token === undefined) return undefined;
  return token.replace(/[\r\n]/g, '').trim() || undefined;
}

async function homeDir(): Promise<string | undefined> {
  const name = 'node:os';
  const deno = (globalThis as EnvRuntime).Deno;
  // Deno's os.homedir() reads HOME: without --allow-env it would prompt or throw.
  if (deno !== undefined && deno.permissions?.querySync?.({ name: 'env', variable: 'HOME' })?.state !== 'granted') return undefined;
  try {
    return ((await import(/* @vite-ignore */ name)) as { homedir(): string }).homedir();
  } catch {
    return undefined;
  }
}

async function expandHome(p: string): Promise<string> {
  if (p !== '~' && !p.startsWith('~/')) return p;
  const home = await homeDir();
  return home === undefined ? p : home + p.slice(1);
}

/** HF_HOME as huggingface_hub computes it (Node and Deno). */
export async function hfHome(): Promise<string> {
  const path = await nodePath();
  const given = readEnv('HF_HOME');
  if (given !== undefined) return expandHome(given);
  const xdg = readEnv('XDG_CACHE_HOME');
  if (xdg !== undefined) return path.join(await expandHome(xdg), 'huggingface');
  const home = await homeDir();
  if (home === undefined) {
    throw new LowbitError('INVALID_ARGUMENT', 'cannot tell where the Hugging Face cache is: no home folder (in Deno, run with --allow-env); set HF_HOME or HF_HUB_CACHE, or pass cache: { dir }');
  }
  return path.join(home, '.cache', 'huggingface');
}

/** The hub cache folder (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, else HF_HOME/hub). */
export async function hubCacheDirFromEnv(): Promise<string> {
  const given = readEnv('HF_HUB_CACHE') ?? readEnv('HUGGINGFACE_HUB_CACHE');
  if (given !== undefined) return expandHome(given);
  return (await nodePath()).join(await hfHome(), 'hub');
}

/** The token huggingface_hub would send: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file. */
export async function hubTokenFromEnv(): Promise<string | undefined> {
  const fromEnv = cleanToken(readEnv('HF_TOKEN') ?? readEnv('HUGGING_FACE_HUB_TOKEN'));
  if (fromEnv !== undefined) return fromEnv;
  if (!isServerRuntime()) return undefined;
  try {
    const file = readEnv('HF_TOKEN_PATH') ?? (await nodePath()).join(await hfHome(), 'token');
    const bytes = await (await nodeFs()).readFile(await expandHome(file));
    return cleanToken(new TextDecoder().decode(bytes));
  } catch {
    return undefined; // no token file (or no permission to read it): anonymous, as huggingface_hub is
  }
}
