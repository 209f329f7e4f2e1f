/**
 * Which kernel variants an adapter gets: a small table keyed on what the adapter says it is
 * (vendor / architecture / software) and what it has (features, WGSL language features, limits),
 * instead of guesses spread over the backend. The first row whose `match` holds gives the
 * preferences; a variant is used only where the adapter has what it needs, and options given to
 * WebGpuBackend.create override the table.
 */
import { LowbitError } from '../../errors.js';
import type { AdapterDescription } from './device.js';

export interface KernelVariant {
  /** The table row that chose it (bench labels, tests). */
  name: string;
  /** Integer dot products with dot4I8Packed (WGSL packed_4x8_integer_dot_product): LLM.int8, and the 4-bit decode GEMV when `intActivations`. */
  packedDot: boolean;
  /**
   * The 4-bit decode GEMV runs on integer activations (matmul4.wgsl INT_ACT: 14-bit activations
   * per block of 32 and a 13-bit code table, as the CPU's fast kernels; dot4I8Packed on int8
   * limbs where `packedDot`, the same integer sums unpacked otherwise).
   */
  intActivations: boolean;
  /** The 4-bit decode GEMV reduces with subgroup shuffles (device feature `subgroups`). */
  subgroups: boolean;
  /** q / k / v in one dispatch (matmul4.wgsl QKV, 10 storage buffers per stage). */
  fuseQkv: boolean;
  /** Half weights' decode GEMV computes in f16 (matmul_dense.wgsl F16_COMPUTE; device feature `shader-f16`). */
  f16: boolean;
  /**
   * The 4-bit decode GEMV takes its activations in f16 and forms x · code in f16 (matmul4.wgsl
   * F16_COMPUTE; device feature `shader-f16`); integer activations win where both are on.
   */
  f16Activations: boolean;
}

/** What an adapter has, whatever the table prefers. */
export interface AdapterAbilities {
  packedDot: boolean;
  subgroups: boolean;
  storageBuffersPerStage: number;
  f16: boolean;
}

/** A row of VARIANT_TABLE: which adapters it matches and the kernel variant it prefers there. */
export interface VariantRow {
  name: string;
  match: (a: AdapterDescription) => boolean;
  /** Preferences; each still needs the ability (see chooseVariant). */
  prefer: Omit<KernelVariant, 'name'>;
  /** Why, with the source of the fact. */
  why: string;
}

const vendor = (a: AdapterDescription, re: RegExp) => re.test(`${a.vendor} ${a.architecture} ${a.description}`);

export const VARIANT_TABLE: readonly VariantRow[] = [
  {
    name: 'apple',
    match: (a) => vendor(a, /apple/i),
    prefer: { packedDot: false, intActivations: false, subgroups: true, fuseQkv: true, f16: true, f16Activations: false },
    why: 'llama.cpp measured dot4I8Packed decode slower than f32 dot products on Apple GPUs',
  },
  {
    name: 'nvidia',
    match: (a) => vendor(a, /nvidia/i),
    prefer: { packedDot: true, intActivations: false, subgroups: true, fuseQkv: true, f16: true, f16Activations: false },
    why: 'dot4I8Packed gave +4-13 % decode on an NVIDIA V100 in llama.cpp (LLM.int8 uses it); that was 8-bit activations at one dot4I8Packed per 4 weights — our 14-bit integer activations take four, so they stay off until a GPU times them; subgroups are native',
  },
  {
    name: 'software',
    match: (a) => a.software,
    prefer: { packedDot: true, intActivations: false, subgroups: true, fuseQkv: true, f16: false, f16Activations: false },
    why: 'lavapipe / SwiftShader: speed says nothing; the f32 variants, whose results are the CPU reference up to summation order (tests force f16 and integer activations on)',
  },
  {
    name: 'default',
    match: () => true,
    prefer: { packedDot: true, intActivations: false, subgroups: true, fuseQkv: true, f16: true, f16Activations: false },
    why: 'no measurement says otherwise: use what the adapter has; integer activations only where dot4I8Packed was measured faster',
  },
];

/** The variant for an adapter: the first matching row's preferences, where the adapter has them. `force` names a row (tests). */
export function chooseVariant(a: AdapterDescription, has: AdapterAbilities, force?: string): KernelVariant {
  const row = force !== undefined ? VARIANT_TABLE.find((r) => r.name === force) : VARIANT_TABLE.find((r) => r.match(a));
  if (row === undefined) throw new LowbitError('INVALID_ARGUMENT', `no kernel variant named '${force}' (${VARIANT_TABLE.map((r) => r.name).join(', ')})`);
  return {
    name: row.name,
    packedDot: row.prefer.packedDot && has.packedDot,
    intActivations: row.prefer.intActivations,
    subgroups: row.prefer.subgroups && has.subgroups,
    fuseQkv: row.prefer.fuseQkv && has.storageBuffersPerStage >= QKV_STORAGE_BUFFERS,
    f16: row.prefer.f16 && has.f16,
    f16Activations: row.prefer.f16Activations && has.f16,
  };
}

/** matmul4.wgsl QKV binds x, three weights with their absmax and three outputs. */
export const QKV_STORAGE_BUFFERS = 10;
