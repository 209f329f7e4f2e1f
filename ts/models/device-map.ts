/**
 * deviceMap → where each module of a model runs, as in transformers / accelerate:
 *
 * - 'cpu' | 'gpu' | { '': 'cpu' | 'gpu' }: the whole model on one device.
 * - a per-module map { 'model.embed_tokens': 'cpu', 'model.layers.0': 'gpu', …, 'lm_head': 'gpu' }:
 *   each module takes the value of the longest key that is its name or a dotted prefix of it
 *   ('' covers everything); every module must be covered, and every key must name a module.
 * - 'auto': modules in order (embeddings, decoder layers, final norm, lm_head) go on the GPU
 *   while they fit in its budget; from the first one that does not, the rest go on the CPU
 *   (accelerate's infer_auto_device_map fills devices in order the same way and never goes
 *   back). A tied lm_head shares the embedding's weight, so it goes with the embedding
 *   (accelerate keeps tied parameters together). Without a WebGPU adapter, 'auto' is all CPU.
 *
 * Sizes come from tensor metadata and the quantization choice before any weight is read
 * (moduleSizes); a model that does not fit within the budgets is refused with OUT_OF_MEMORY
 * before anything is allocated, and each module's weight formats are checked against the device
 * it is placed on (checkModuleFormats: converted or refused, formats/capabilities.ts). The
 * backends themselves are made in make-backends.ts.
 */
import { LowbitError } from '../errors.js';
import { checkPlacement } from '../formats/capabilities.js';
import type { FormatKind } from '../formats/index.js';
import { architectureOf } from './architectures.js';
import type { DecoderConfig } from './config.js';

/** Where a module runs: the CPU (wasm) or the GPU (WebGPU). */
export type Device = 'cpu' | 'gpu';
/** Where the modules go: 'auto' (the GPU within its budget, then the CPU), one device for all, or per module by transformers' names (the longest matching key wins, '' for everything). */
export type DeviceMap = 'auto' | Device | Record<string, Device>;

/** Byte budgets per device: a number of bytes or a string such as '2GiB', '512MB', '300 KiB'. */
export interface MaxMemory {
  gpu?: number | string;
  cpu?: number | string;
}

const bad = (m: string): never => {
  throw new LowbitError('INVALID_ARGUMENT', m);
};

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

/** 1024, '2GiB', '1.5 GB', '300KiB' → bytes (decimal KB/MB/GB, binary KiB/MiB/GiB, as accelerate). */
export function parseBytes(v: number | string, what: string): number {
  if (typeof v === 'number') {
    if (!(Number.isFinite(v) && v >= 0)) bad(`${what} must be a non-negative number of bytes, got ${v}`);
    return Math.floor(v);
  }
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(v) : null;
  if (!m) return bad(`${what} must be bytes or a size like '2GiB' / '512MB', got ${JSON.stringify(v)}`);
  return Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'B').toUpperCase()]!);
}

/** Checks a deviceMap's shape (values 'cpu' / 'gpu'); modules are checked by planDevices. */
export function checkDeviceMap(d: DeviceMap | undefined): void {
  if (d === undefined || d === 'auto' || d === 'cpu' || d === 'gpu') return;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) bad(`deviceMap must be 'auto', 'cpu', 'gpu' or { module: 'cpu' | 'gpu' }, got ${JSON.stringify(d)}`);
  for (const [k, v] of Object.entries(d)) if (v !== 'cpu' && v !== 'gpu') bad(`deviceMap['${k}'] must be 'cpu' or 'gpu', got ${JSON.stringify(v)}`);
  if (Object.keys(d).length === 0) bad('deviceMap is an empty object: name a device for every module (or { "": "cpu" })');
}

/** Whether a deviceMap may put something on the GPU. */
export function wantsGpu(d: DeviceMap | undefined): boolean {
  if (d === undefined || d === 'cpu') return false;
  if (d === 'auto' || d === 'gpu') return true;
  return Object.values(d).includes('gpu');
}

/** A module of a model: its name (transformers'), its estimated bytes, and for a tied lm_head the table it shares. */
export interface ModuleSize {
  name: string;
  bytes: number;
  /** Bytes on the GPU where they differ from `bytes` (a format the GPU converts, see formats/capabilities.ts). */
  gpuBytes?: number;
  /** A tied lm_head: the module whose weight it uses (it needs a copy of that weight elsewhere). */
  tiedTo?: string;
  /** The weight formats its tensors load as (checked against the device it is placed on). */
  formats?: { kind: FormatKind; label: string }[];
}

/** A module's bytes on a device. */
function bytesOn(m: ModuleSize, d: Device): number {
  return d === 'gpu' ? m.gpuBytes ?? m.bytes : m.bytes;
}

/**
 * Consults the format × backend table for every module as placed, before any weight is read:
 * UNSUPPORTED_QUANT_TYPE for a format its device refuses; otherwise one line per conversion.
 */
export function checkModuleFormats(plan: ReadonlyMap<string, Device>, modules: readonly ModuleSize[]): string[] {
  return checkPlacement(
    modules.flatMap((m) => {
      const d = plan.get(m.name);
      return d === undefined ? [] : (m.formats ?? []).map((f) => ({ module: m.name, device: d === 'gpu' ? ('webgpu' as const) : ('cpu' as const), kind: f.kind, label: f.label }));
    }),
  );
}

/** Module names in the order a forward pass runs them (the architecture's). */
export function moduleNames(config: DecoderConfig): string[] {
  return architectureOf(config).moduleNames(config);
}

/** The module a (transformers-named) tensor belongs to (the architecture's naming). */
export function moduleOfTensor(config: DecoderConfig, tensor: string): string | undefined {
  return architectureOf(config).moduleOfTensor(config, tensor);
}

function covering(map: Record<string, Device>, module: string): Device | undefined {
  let best: string | undefined;
  for (const k of Object.keys(map)) {
    if (k === '' || module === k || module.startsWith(k + '.')) if (best === undefined || k.length > best.length) best = k;
  }
  return best === undefined ? undefined : map[best];
}

export interface Budgets {
  gpu: number;
  cpu: number;
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(3)} GiB (${n} bytes)`;

/**
 * Places each module. `budgets` bound 'auto'; for other maps only `explicit` budgets (given
 * maxMemory) are checked. Throws INVALID_ARGUMENT for maps that do not cover the model and
 * OUT_OF_MEMORY when the modules do not fit.
 */
export function planDevices(map: DeviceMap, modules: readonly ModuleSize[], budgets: Budgets, explicit: Partial<Budgets> = {}): Map<string, Device> {
  const out = new Map<string, Device>();
  const size = new Map(modules.map((m) => [m.name, m]));
  if (map === 'auto') {
    let gpuLeft = budgets.gpu;
    let full = false;
    for (const m of modules) {
      if (m.tiedTo !== undefined && out.has(m.tiedTo)) {
        out.set(m.name, out.get(m.tiedTo)!);
        continue;
      }
      if (!full && bytesOn(m, 'gpu') <= gpuLeft) {
        out.set(m.name, 'gpu');
        gpuLeft -= bytesOn(m, 'gpu');
      } else {
        full = true;
        out.set(m.name, 'cpu');
      }
    }
  } else if (map === 'cpu' || map === 'gpu') {
    for (const m of modules) out.set(m.name, map);
  } else {
    const names = modules.map((m) => m.name);
    for (const k of Object.keys(map)) {
      if (k !== '' && !names.some((n) => n === k || n.startsWith(k + '.'))) bad(`deviceMap key '${k}' names no module of this model (modules: ${names.join(', ')})`);
    }
    for (const n of names) {
      const d = covering(map, n);
      if (d === undefined) bad(`deviceMap does not place module '${n}': add it (or a prefix of it, or "") to the map`);
      out.set(n, d!);
    }
  }
  // What each device holds; a tied lm_head away from its table holds a copy of it.
  const used: Budgets = { gpu: 0, cpu: 0 };
  for (const m of modules) {
    const d = out.get(m.name)!;
    const table = m.tiedTo === undefined ? undefined : size.get(m.tiedTo);
    const bytes = m.tiedTo !== undefined ? (out.get(m.tiedTo) === d || table === undefined ? 0 : bytesOn(table, d)) : bytesOn(m, d);
    used[d] += bytes;
  }
  const limit: Partial<Budgets> = map === 'auto' ? budgets : explicit;
  for (const d of ['gpu', 'cpu'] as const) {
    const l = limit[d];
    if (l !== undefined && used[d] > l) {
      const what = map === 'auto' ? `the model needs ${gib(used.gpu + used.cpu)}; after ${gib(used.gpu)} on the GPU, ${gib(used.cpu)} remain for the CPU` : `the modules placed on the ${d} need ${gib(used[d])}`;
      throw new LowbitError('OUT_OF_MEMORY', `deviceMap ${typeof map === 'string' ? `'${map}'` : '(per module)'}: ${what}, over the ${d} budget of ${gib(l)} (raise maxMemory.${d})`);
    }
  }
  return out;
}

/** The one device a whole-model deviceMap names, or undefined for per-module maps / 'auto'. */
export function singleDevice(d: DeviceMap | undefined): Device | undefined {
  if (d === undefined) return 'cpu';
  if (d === 'cpu' || d === 'gpu') return d;
  if (d === 'auto') return undefined;
  const keys = Object.keys(d);
  return keys.length === 1 && keys[0] === '' ? d['']! : undefined;
}

/** Kept for callers of the whole-model API: the single device of a map; INVALID_ARGUMENT otherwise. */
export function deviceOf(d: DeviceMap | undefined): Device {
  checkDeviceMap(d);
  const s = singleDevice(d);
  if (s === undefined) bad(`deviceMap ${JSON.stringify(d)} places modules on several devices; this call needs one device`);
  return s!;
}
