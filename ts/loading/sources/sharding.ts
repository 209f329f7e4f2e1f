/**
 * Which files hold a model's weights.
 *
 * In order: the file the caller names (`options.file`), the file the input pointed at
 * (`source.weightFile`), model.safetensors, model.safetensors.index.json (sharded checkpoints),
 * then, when the source can list its files (local directories, blobs): the only *.safetensors,
 * the only *.safetensors.index.json, or the only *.gguf. Hub and URL sources cannot list, so a
 * GGUF file there must be named. NOT_FOUND when nothing matches; INVALID_ARGUMENT when the
 * listing is ambiguous (several .gguf files: name one).
 *
 * A shard index must be a JSON object whose weight_map maps every tensor name to a shard file.
 * Shard names are relative to the index's own folder and must stay inside the source: absolute
 * names, '..' and the like are MALFORMED_FILE. Every referenced shard is checked to exist up front
 * (one exists() each, in parallel) unless `checkFiles: false`, so a missing shard fails before
 * any loading starts.
 */
import { LowbitError } from '../../errors.js';
import { checkFileName, type ModelSource } from './types.js';

/** The file format of a model's weights. */
export type WeightFormat = 'safetensors' | 'gguf';

/** The weight files `listWeightFiles` found: their format and names. */
export interface WeightFiles {
  format: WeightFormat;
  /** The weight files, relative to the source; sharded checkpoints list shards in sorted order. */
  files: string[];
  /** Tensor name -> file, for sharded safetensors. */
  weightMap?: Record<string, string>;
  /** The shard index, when there is one. */
  indexFile?: string;
  /** metadata.total_size of a shard index, when it has one (bytes of tensor data). */
  totalSize?: number;
}

/** Options of `listWeightFiles`. */
export interface ListWeightFilesOptions {
  /** The weights file to use ('x.Q4_K_M.gguf', 'model.safetensors', '….safetensors.index.json'). */
  file?: string;
  /** Check that every shard of an index exists (default true). */
  checkFiles?: boolean;
}

const INDEX = 'model.safetensors.index.json';

function dirOf(file: string): string {
  const i = file.lastIndexOf('/');
  return i < 0 ? '' : file.slice(0, i + 1);
}

/**
 * Validates a parsed model.safetensors.index.json. Shard names are resolved against the index's
 * folder (`indexFile`), so 'sub/model.safetensors.index.json' naming 'a.safetensors' means 'sub/a.safetensors'.
 */
export function parseShardIndex(json: unknown, indexFile = INDEX): { files: string[]; weightMap: Record<string, string>; totalSize?: number } {
  const bad = (why: string) => new LowbitError('MALFORMED_FILE', `'${indexFile}' is not a valid safetensors shard index: ${why}`, { file: indexFile });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('it is not a JSON object');
  const wm = (json as { weight_map?: unknown }).weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw bad('it has no "weight_map" object');
  const entries = Object.entries(wm as Record<string, unknown>);
  if (entries.length === 0) throw bad('"weight_map" is empty');
  const prefix = dirOf(indexFile);
  const weightMap: Record<string, string> = {};
  const files = new Set<string>();
  for (const [tensor, shard] of entries) {
    if (typeof shard !== 'string') throw bad(`the file of tensor '${tensor}' is not a string`);
    try {
      checkFileName(shard);
    } catch {
      throw bad(`tensor '${tensor}' names ${JSON.stringify(shard)}, which is not a relative file name inside the model (no '..', leading '/', '\\\\' or ':')`);
    }
    if (!shard.endsWith('.safetensors')) throw bad(`tensor '${tensor}' names ${JSON.stringify(shard)}, which is not a .safetensors file`);
    const path = prefix + shard;
    weightMap[tensor] = path;
    files.add(path);
  }
  const total = (json as { metadata?: { total_size?: unknown } }).metadata?.total_size;
  const totalSize = typeof total === 'number' && Number.isSafeInteger(total) && total >= 0 ? total : undefined;
  return { files: [...files].sort(), weightMap, ...(totalSize === undefined ? {} : { totalSize }) };
}

async function fromIndex(source: ModelSource, indexFile: string, checkFiles: boolean): Promise<WeightFiles> {
  const parsed = parseShardIndex(await source.readJson<unknown>(indexFile), indexFile);
  if (checkFiles) {
    const present = await Promise.all(parsed.files.map((f) => source.exists(f)));
    const missing = parsed.files.filter((_, i) => !present[i]);
    if (missing.length > 0) {
      throw new LowbitError(
        'NOT_FOUND',
        `${missing.length} of ${parsed.files.length} shards named by '${indexFile}' are missing from ${source.description}: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
        { file: missing[0]! },
      );
    }
  }
  return { format: 'safetensors', indexFile, ...parsed };
}

async function fromNamed(source: ModelSource, file: string, checkFiles: boolean): Promise<WeightFiles> {
  checkFileName(file);
  if (/\.safetensors\.index\.json$/i.test(file)) return fromIndex(source, file, checkFiles);
  let format: WeightFormat;
  if (/\.safetensors$/i.test(file)) format = 'safetensors';
  else if (/\.gguf$/i.test(file)) format = 'gguf';
  else throw new LowbitError('INVALID_ARGUMENT', `'${file}' is not a .safetensors, .safetensors.index.json or .gguf file`, { file });
  if (!(await source.exists(file))) throw new LowbitError('NOT_FOUND', `'${file}' not found in ${source.description}`, { file });
  return { format, files: [file] };
}

/** The files that hold a model's weights (see the module comment for the rules). */
export async function listWeightFiles(source: ModelSource, options: ListWeightFilesOptions = {}): Promise<WeightFiles> {
  const checkFiles = options.checkFiles ?? true;
  if (options.file !== undefined) return fromNamed(source, options.file, checkFiles);
  if (source.weightFile !== undefined) return fromNamed(source, source.weightFile, checkFiles);
  if (await source.exists('model.safetensors')) return { format: 'safetensors', files: ['model.safetensors'] };
  if (await source.exists(INDEX)) return fromIndex(source, INDEX, checkFiles);
  if (source.list) {
    const names = await source.list();
    const only = (re: RegExp) => names.filter((n) => re.test(n));
    const st = only(/\.safetensors$/i);
    if (st.length === 1) return { format: 'safetensors', files: st };
    const idx = only(/\.safetensors\.index\.json$/i);
    if (st.length > 1 && idx.length === 1) return fromIndex(source, idx[0]!, checkFiles);
    const gguf = only(/\.gguf$/i);
    if (st.length === 0 && gguf.length === 1) return { format: 'gguf', files: gguf };
    if (st.length > 1 || gguf.length > 1) {
      const all = [...st, ...gguf];
      throw new LowbitError(
        'INVALID_ARGUMENT',
        `${source.description} holds several weight files (${all.slice(0, 6).join(', ')}${all.length > 6 ? ', …' : ''}) and no model.safetensors or ${INDEX}: name the one to load`,
      );
    }
  }
  throw new LowbitError(
    'NOT_FOUND',
    `no model weights in ${source.description}: looked for model.safetensors and ${INDEX}${source.list ? ' and for a single .safetensors or .gguf file' : '; name a .gguf file explicitly, this source cannot list its files'}`,
  );
}
