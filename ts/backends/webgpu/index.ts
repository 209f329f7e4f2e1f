/**
 * The WebGPU backend: the Backend interface on WGSL kernels (shaders/*.wgsl), f32 activations,
 * weights as loaded (bitsandbytes 4-bit, LLM.int8, f32 / f16 / bf16). Ops record into one command
 * encoder (context.ts) and nothing waits until `read` / `argmax`: a decode step is one submit.
 */
import { LowbitError } from '../../errors.js';
import { adaptWeight } from '../../formats/capabilities.js';
import { denseToFloat32 } from '../../formats/dense.js';
import { formatLabel, type DenseWeight, type LoadedWeight } from '../../formats/index.js';
import { quantMap } from '../../quant/codes.js';
import { init, type WasmSource } from '../../runtime/wasm.js';
import type {
  LinearOptions, TokenChoice,
  Activation, AttentionExtras, Backend, DeviceKind, EmbeddingHandle, KvCacheHandle, LinearHandle, RopeSpec, VectorHandle,
} from '../backend.js';
import { bad, checkAttention, checkFinitePositive, checkPositive, checkRope, isCount, shape2 } from '../checks.js';
import { GpuContext, type Binding, type Bindings, type GpuStats, type Kernel } from './context.js';
import type { KernelEntries, KernelFile } from './layout.js';
import { requestDevice, type AdapterDescription, type PowerPreference } from './device.js';
import { quantize4bitGpu, type GpuQuantize4Options } from './quantize.js';
import { chooseVariant, type KernelVariant } from './variants.js';
import { attentionSpan, attentionSplits, splitShape } from './attention-split.js';
import type { FloatInput } from '../../tensor/dtypes.js';
import type { QuantState } from '../../quant/quant-state.js';
import { denseParts, destroyParts, fourBitParts, int8Parts, kernelCode, NESTED_BLOCK, storageDefine, type DenseStorage, type NestedAbsmax, type Part } from './weights.js';
import { blockwise8Parts } from './weights.js';
import { isInt8Code } from '../../formats/blockwise8.js';
import { BLOCKSIZES_8BIT } from '../../quant/blockwise8.js';

export { findGpu, describeAdapter, type AdapterDescription, type PowerPreference } from './device.js';
export type { GpuQuantize4Options } from './quantize.js';
export type { GpuStats } from './context.js';
export { VARIANT_TABLE, type KernelVariant, type VariantRow } from './variants.js';

/** What WebGpuBackend.onDeviceLost reports: GPUDeviceLostInfo's reason ('destroyed', 'unknown') or 'out-of-memory'. */
export interface DeviceLostInfo {
  reason: string;
  message: string;
}

/** Options of `WebGpuBackend.create`. */
export interface WebGpuBackendOptions {
  /** A navigator.gpu-like object (Node: `create([])` from the `webgpu` package). Default: navigator.gpu, else that package. */
  gpu?: GPU;
  powerPreference?: PowerPreference;
  /** Flags for the `webgpu` package's create() when it is loaded here. */
  dawnFlags?: string[];
  /**
   * Splits weights into parts of at most this many bytes (default and upper bound: the adapter's
   * maxStorageBufferBindingSize). Tests use a small value to exercise the split path.
   */
  maxBindingSize?: number;
  /**
   * Use dot4I8Packed for integer dot products (LLM.int8, and the 4-bit decode GEMV with
   * `intActivations`) when the WGSL implementation has it (default: as the adapter's row of the
   * variant table says, variants.ts); false sums the same integers unpacked.
   */
  packedDot?: boolean;
  /**
   * Run the 4-bit decode GEMV (and its q / k / v, gate / up and residual fusions) and the Q8_0
   * decode GEMV on integer activations: 14 bits per block of 32 (and a 13-bit 4-bit code table),
   * as the CPU's fast kernels (matmul4.wgsl / matmul_blockwise8.wgsl INT_ACT). Default: as the
   * variant table says (off in every row until a GPU times it); false keeps f32 activations.
   */
  intActivations?: boolean;
  /**
   * The 4-bit decode GEMV takes its activations in f16 and forms x · code in f16 where the device
   * has `shader-f16` (matmul4.wgsl F16_COMPUTE; default: as the variant table says); integer
   * activations win where both are on.
   */
  f16Activations?: boolean;
  /**
   * Reduce the 4-bit decode GEMV with subgroup shuffles when the device has the `subgroups`
   * feature (default: as the variant table says); false takes the workgroup-tree reduction
   * (tests run both).
   */
  subgroups?: boolean;
  /**
   * Half (f16) weights' decode GEMV computes in f16 where the device has `shader-f16` (default:
   * as the variant table says; products of x rounded to f16, so results differ from the f32
   * path by f16 rounding); false keeps f32.
   */
  f16?: boolean;
  /** Take this row of the variant table (variants.ts VARIANT_TABLE) instead of the adapter's (tests, comparisons). */
  variant?: string;
  /**
   * Use matmul4.wgsl's gemv4 (and the gate / up and residual fusions built on it) where shapes
   * allow (default true); false keeps the generic GEMV and separate ops (bench comparisons).
   */
  gemv4?: boolean;
  /**
   * Keep a double-quantized 4-bit absmax compressed on the device and decode it in the kernels
   * (default true), as the CPU backend does; false widens it to f32 at upload (the same values).
   */
  nestedAbsmax?: boolean;
  /**
   * Offer Backend.sampleToken (default true); false leaves sampling other than greedy / top-k
   * to the host, which then reads the logits back (bench comparisons).
   */
  deviceSampling?: boolean;
  /** Where init() loads the wasm module from (the models use it for RoPE tables and quantization). */
  wasm?: WasmSource;
  /**
   * Cut every attention call's context into this many splits (1: never split; tests and bench
   * comparisons) instead of the rule of attention-split.ts (decode against a long context splits).
   */
  attentionSplits?: number;
}

/** The most splits `attentionSplits` may force (workgroups in z; the combine walks them serially). */
const MAX_FORCED_SPLITS = 4096;


/** An f32 [rows, cols] activation in a pooled GPU buffer. */
export class GpuActivation implements Activation {
  readonly device = 'webgpu' as const;
  private buf: GPUBuffer | undefined;
  constructor(
    readonly owner: WebGpuBackend,
    buffer: GPUBuffer,
    readonly rows: number,
    readonly cols: number,
  ) {
    this.buf = buffer;
  }
  get bytes(): number {
    return this.rows * this.cols * 4;
  }
  get released(): boolean {
    return this.buf === undefined;
  }
  /** The buffer, bound to exactly this activation's bytes. */
  binding(what: string): Required<Binding> {
    const buffer = this.buf ?? bad(`${what} was released`);
    return { buffer, offset: 0, size: this.bytes };
  }
  get buffer(): GPUBuffer {
    return this.buf ?? bad('the activation was released');
  }
  /** Gives the buffer up (to the pool); later use throws. */
  take(): GPUBuffer | undefined {
    const b = this.buf;
    this.buf = undefined;
    return b;
  }
}

abstract class GpuHandle {
  readonly device = 'webgpu' as const;
  protected disposed = false;
  constructor(protected readonly ctx: GpuContext) {}
  protected alive(what: string): void {
    if (this.disposed) bad(`${what} was disposed`);
  }
}

export class GpuLinear extends GpuHandle implements LinearHandle {
  constructor(
    ctx: GpuContext,
    readonly kind: '4bit' | 'int8' | 'dense' | 'blockwise8',
    readonly parts: Part[],
    readonly outFeatures: number,
    readonly inFeatures: number,
    readonly format: string,
    readonly bytes: number,
    /** dense: storage; 4-bit: code values, blocksize, whether the absmax is double-quantized on the device; int8: threshold; block-wise 8-bit: blocksize, whether the code is the int8 code. */
    readonly extra: { storage?: DenseStorage; code?: Float32Array; blocksize?: number; nested?: boolean; threshold?: number; int8Code?: boolean; hasBias: boolean },
  ) {
    super(ctx);
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    destroyParts(this.ctx, this.parts);
  }
  check(): void {
    this.alive(`the ${this.format} linear weight`);
  }
}

export class GpuEmbedding extends GpuHandle implements EmbeddingHandle {
  constructor(ctx: GpuContext, readonly parts: Part[], readonly storage: DenseStorage, readonly vocab: number, readonly dim: number, readonly bytes: number) {
    super(ctx);
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    destroyParts(this.ctx, this.parts);
  }
  check(): void {
    this.alive('the embedding table');
  }
}

export class GpuVector extends GpuHandle implements VectorHandle {
  constructor(ctx: GpuContext, readonly buffer: GPUBuffer, readonly length: number) {
    super(ctx);
  }
  get bytes(): number {
    return this.length * 4;
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ctx.destroyLater(this.buffer);
  }
  binding(what: string): Required<Binding> {
    this.alive(what);
    return { buffer: this.buffer, offset: 0, size: this.length * 4 };
  }
}

export class GpuKvCache extends GpuHandle implements KvCacheHandle {
  constructor(ctx: GpuContext, readonly k: GPUBuffer, readonly v: GPUBuffer, readonly maxPositions: number, readonly nKvHeads: number, readonly headDim: number) {
    super(ctx);
  }
  get bytes(): number {
    return 2 * this.maxPositions * this.nKvHeads * this.headDim * 4;
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ctx.destroyLater(this.k);
    this.ctx.destroyLater(this.v);
  }
  check(): void {
    this.alive('the kv cache');
  }
}

function handle<T>(h: unknown, cls: abstract new (...a: never[]) => T, what: string): T {
  if (h instanceof cls) return h;
  return bad(`${what} is not a WebGPU backend handle (make it with this backend)`);
}

interface RopeTable {
  buffer: GPUBuffer;
  /** positions covered */
  capacity: number;
  /** the factor cos and sin carry (LongRoPE's attention factor; 1 for plain rope) */
  scaling: number;
}

/** matmul4.wgsl gemv4: output rows per row group (G4_OUT), without and with GATE_UP. */
const GEMV4_ROWS = 4;
const GEMV4_ROWS_GATE_UP = 2;

/**
 * gemv4's threads per row group for rows of k weights: the smallest power of two that covers
 * the row's 32-weight words, 8 to 64 (the workgroup), so short rows keep the threads busy.
 */
function gemv4Lanes(k: number): number {
  let lanes = 8;
  while (lanes < 64 && lanes < k / 32) lanes *= 2;
  return lanes;
}

/** matmul_dense.wgsl gemv_rows' threads per row group: the smallest power of two covering k / 4 steps, 8 to 64. */
function denseLanes(k: number): number {
  let lanes = 8;
  while (lanes < 64 && lanes < k / 4) lanes *= 2;
  return lanes;
}

/** Whether a 4-bit forward of m rows of k takes gemv4: one row of whole 32-weight words in blocks of >= 32. */
function usesGemv4(m: number, k: number, blocksize: number): boolean {
  return m === 1 && k % 32 === 0 && blocksize >= 32;
}

/** Whether linearSwiglu can take gemv4 GATE_UP: see its comment. */
function fusesGateUp(a: GpuActivation, g: GpuLinear, u: GpuLinear): boolean {
  if (g.kind !== '4bit' || u.kind !== '4bit' || g.extra.hasBias || u.extra.hasBias) return false;
  if (g.inFeatures !== a.cols || u.inFeatures !== a.cols || g.outFeatures !== u.outFeatures) return false;
  if (!usesGemv4(a.rows, a.cols, g.extra.blocksize!) || g.extra.blocksize !== u.extra.blocksize || g.extra.nested !== u.extra.nested) return false;
  if (!g.extra.code!.every((c, i) => Object.is(c, u.extra.code![i]))) return false;
  // same split (same shape and binding limit give the same parts; checked, not assumed)
  return g.parts.length === u.parts.length && g.parts.every((p, i) => p.n0 === u.parts[i]!.n0 && p.rows === u.parts[i]!.rows && p.flatBase === u.parts[i]!.flatBase && p.blockBase === u.parts[i]!.blockBase && p.codesAt === u.parts[i]!.codesAt);
}

/**
 * Whether linearForwardMany can take gemv4 QKV: one row of x through three 4-bit weights gemv4
 * takes, each in one part, without bias, with the same k, blocksize, code and absmax form, and
 * q's and k's rows multiples of the row group (4) so that no row group spans two weights.
 */
function fusesQkv(a: GpuActivation, ls: readonly GpuLinear[]): boolean {
  const [q] = ls as [GpuLinear];
  if (!ls.every((l) => l.kind === '4bit' && !l.extra.hasBias && l.parts.length === 1 && l.inFeatures === a.cols)) return false;
  if (!usesGemv4(a.rows, a.cols, q.extra.blocksize!)) return false;
  if (!ls.every((l) => l.extra.blocksize === q.extra.blocksize && l.extra.nested === q.extra.nested && l.extra.code!.every((c, i) => Object.is(c, q.extra.code![i])))) return false;
  return ls[0]!.outFeatures % GEMV4_ROWS === 0 && ls[1]!.outFeatures % GEMV4_ROWS === 0;
}

const MAX_HEAD_DIM = 256; // attention.wgsl: 64 invocations x 4 outputs
/** topK on the device: k passes over the row (sample.wgsl), meant for small k. */
export const MAX_TOP_K = 1024;

/** The WebGPU backend: WGSL kernels on a GPUDevice (`WebGpuBackend.create({ gpu, ... })`). Browsers and Deno use navigator.gpu; Node the optional `webgpu` package or an injected GPU object. */
export class WebGpuBackend implements Backend {
  readonly device: DeviceKind = 'webgpu';
  readonly name: string;
  private readonly codes = new Map<string, Float32Array>();
  private readonly ropeTables = new WeakMap<Float32Array, RopeTable>();
  private readonly scopes: Set<GpuActivation>[] = [];

  private constructor(
    readonly ctx: GpuContext,
    /** What the adapter says it is (for bench labels and messages). */
    readonly adapter: AdapterDescription,
    /** Whether integer dot products (LLM.int8, the 4-bit GEMV on integer activations) use dot4I8Packed. */
    readonly packedDot: boolean,
    /** Whether the 4-bit decode GEMV reduces with subgroup shuffles (device feature `subgroups`). */
    readonly subgroups: boolean,
    /** Whether 4-bit decode takes gemv4 and its fusions (option `gemv4`). */
    readonly gemv4: boolean,
    /** Whether double-quantized absmax stays compressed on the device (option `nestedAbsmax`). */
    readonly nestedAbsmax: boolean,
    /** The kernel variants the adapter's row of the variant table chose (variants.ts). */
    readonly variant: KernelVariant,
  ) {
    this.name = `webgpu (${[adapter.vendor, adapter.architecture, adapter.description].filter((s) => s).join(' / ') || 'unknown adapter'})`;
  }

  /**
   * Requests an adapter and device (throws LowbitError WEBGPU_UNAVAILABLE when there is none)
   * and loads the wasm module the models also need.
   */
  static async create(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    const forced = options.attentionSplits;
    if (forced !== undefined && !(Number.isInteger(forced) && forced >= 1 && forced <= MAX_FORCED_SPLITS)) bad(`attentionSplits must be an integer in [1, ${MAX_FORCED_SPLITS}], got ${forced}`);
    await init(options.wasm);
    const { gpu, adapter, device, info } = await requestDevice({
      ...(options.gpu ? { gpu: options.gpu } : {}),
      ...(options.powerPreference ? { powerPreference: options.powerPreference } : {}),
      ...(options.dawnFlags ? { dawnFlags: options.dawnFlags } : {}),
    });
    const l = device.limits;
    let maxBinding = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
    maxBinding -= maxBinding % 4;
    let weightBinding = maxBinding;
    if (options.maxBindingSize !== undefined) {
      if (!(Number.isInteger(options.maxBindingSize) && options.maxBindingSize >= 256)) bad(`maxBindingSize must be an integer >= 256, got ${options.maxBindingSize}`);
      weightBinding = Math.min(maxBinding, options.maxBindingSize - (options.maxBindingSize % 4));
    }
    const has = { packedDot: info.wgslLanguageFeatures.includes('packed_4x8_integer_dot_product'), subgroups: device.features.has('subgroups'), storageBuffersPerStage: l.maxStorageBuffersPerShaderStage, f16: device.features.has('shader-f16') };
    const variant = chooseVariant(info, has, options.variant);
    const packedDot = options.packedDot === undefined ? variant.packedDot : options.packedDot && has.packedDot;
    const ctx = new GpuContext(
      device,
      { maxBinding, weightBinding, maxBufferSize: l.maxBufferSize, uniformAlign: l.minUniformBufferOffsetAlignment, storageAlign: l.minStorageBufferOffsetAlignment },
      packedDot ? ['DOT4'] : [],
    );
    const subgroups = options.subgroups === undefined ? variant.subgroups : options.subgroups && has.subgroups;
    const intActivations = options.intActivations ?? variant.intActivations;
    const b = new WebGpuBackend(ctx, info, packedDot, subgroups, options.gemv4 !== false, options.nestedAbsmax !== false, { ...variant, packedDot, intActivations, subgroups, f16: options.f16 === undefined ? variant.f16 : options.f16 && has.f16, f16Activations: options.f16Activations === undefined ? variant.f16Activations : options.f16Activations && has.f16 });
    ctx.onLost = (lost) => {
      b.lostInfo = lost;
      for (const l of [...b.lostListeners]) l(lost);
    };
    // an own property that shadows the method: models see no sampleToken and sample on the host
    if (options.deviceSampling === false) Object.defineProperty(b, 'sampleToken', { value: undefined });
    // Dawn (Node's `webgpu` package) tears its instance down when the GPU object is collected,
    // under the live device: keep both referenced for the backend's lifetime.
    b.keepAlive = [gpu, adapter];
    b.attentionSplits = forced;
    return b;
  }

  private keepAlive: unknown[] = [];
  /** Splits forced on every attention call (option `attentionSplits`); undefined: attention-split.ts decides. */
  attentionSplits: number | undefined;
  private readonly lostListeners = new Set<(info: DeviceLostInfo) => void>();
  private lostInfo: DeviceLostInfo | undefined;

  /**
   * Calls `listener` once when the device is lost (GPUDevice.lost resolves: driver reset,
   * destroyed elsewhere) or reports out-of-memory; not after this backend's own dispose().
   * Returns a function that unsubscribes. Every later op throws DEVICE_LOST.
   */
  onDeviceLost(listener: (info: DeviceLostInfo) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** Why the device was lost, once it was (undefined while it works). */
  get deviceLost(): DeviceLostInfo | undefined {
    return this.lostInfo;
  }

  /** Tests: the budget 'auto' device maps assume (see device-map.ts defaultGpuBudget). */
  get maxBufferSize(): number {
    return this.ctx.limits.maxBufferSize;
  }

  /** Destroys the device; every handle and activation of this backend becomes unusable. */
  dispose(): void {
    this.ctx.destroy();
    this.keepAlive = [];
  }

  // --- activations

  private newActivation(rows: number, cols: number): GpuActivation {
    const a = new GpuActivation(this, this.ctx.acquire(Math.max(rows * cols, 1) * 4), rows, cols);
    this.scopes.at(-1)?.add(a);
    return a;
  }

  private act(x: Activation, what: string): GpuActivation {
    if (x instanceof GpuActivation && x.owner === this) {
      if (x.released) bad(`${what} was released`);
      return x;
    }
    if (x instanceof GpuActivation) bad(`${what} belongs to another WebGPU backend: transfer it first`);
    return bad(`${what} is on device '${x.device}', not on this WebGPU backend: transfer it first`);
  }

  fromHost(data: Float32Array, rows: number, cols: number): Activation {
    if (!(data instanceof Float32Array)) bad('fromHost expects a Float32Array');
    if (!isCount(rows) || !isCount(cols)) bad(`activation shape must be non-negative integers, got [${rows}, ${cols}]`);
    if (data.length !== rows * cols) bad(`activation data has ${data.length} values but [${rows}, ${cols}] needs ${rows * cols}`);
    const a = this.newActivation(rows, cols);
    if (data.length > 0) {
      const src = this.ctx.stage(data, false);
      this.ctx.copy(src.buffer, src.offset, a.buffer, 0, data.byteLength);
    }
    return a;
  }

  async read(x: Activation): Promise<Float32Array> {
    const a = this.act(x, 'read: x');
    if (a.bytes === 0) return new Float32Array(0);
    return new Float32Array(await this.ctx.readBuffer(a.buffer, 0, a.bytes));
  }

  async transfer(x: Activation, from: Backend): Promise<Activation> {
    if (x instanceof GpuActivation && x.owner === this) return x;
    const data = await from.read(x);
    return this.fromHost(data, x.rows, x.cols);
  }

  release(x: Activation): void {
    if (!(x instanceof GpuActivation) || x.owner !== this) return;
    const b = x.take();
    if (b !== undefined) this.ctx.release(b);
    for (const s of this.scopes) s.delete(x);
  }

  tidy<T extends Activation>(fn: () => T): T {
    const scope = new Set<GpuActivation>();
    this.scopes.push(scope);
    let out: T;
    try {
      out = fn();
    } finally {
      this.scopes.pop();
    }
    for (const a of scope) if (a !== (out as Activation)) this.release(a);
    if (out instanceof GpuActivation) this.scopes.at(-1)?.add(out);
    return out;
  }

  /** Submits what is recorded so far without waiting. */
  flush(): void {
    this.ctx.flush();
  }

  /**
   * Host-side overhead since creation or the last resetStats(): dispatches, copies, submits,
   * bytes uploaded and read back, host milliseconds spent recording and submitting (a copy).
   */
  stats(): GpuStats {
    return { ...this.ctx.stats };
  }

  /** Zeroes the counters stats() reports. */
  resetStats(): void {
    this.ctx.resetStats();
  }

  /** Waits for the GPU to finish all submitted work (benchmarks). */
  async synchronize(): Promise<void> {
    await this.ctx.idle();
  }

  // --- weights

  linear(loaded: LoadedWeight, bias?: DenseWeight, options: LinearOptions = {}): LinearHandle {
    this.ctx.check();
    // Formats without a WGSL kernel are converted (or refused) as the capability table says
    // (today every format has one).
    const { weight, convertedFrom } = adaptWeight(loaded, 'webgpu');
    const label = formatLabel(weight) + (convertedFrom === undefined ? '' : ` (from ${convertedFrom})`);
    let b: Float32Array | undefined;
    if (bias !== undefined) b = denseToFloat32(bias);
    const checkBias = (n: number) => {
      if (b !== undefined && b.length !== n) bad(`${bias!.name}: bias has ${b.length} values but ${weight.name} has ${n} outputs`);
    };
    switch (weight.kind) {
      case '4bit': {
        const st = weight.quantState;
        const [n, k] = shape2(weight.name, st.shape);
        checkBias(n);
        // double-quantized absmax stays compressed (matmul4.wgsl NESTED_ABSMAX decodes it), as on
        // the CPU; the QuantState validated the nested fields' lengths against each other
        const nested: NestedAbsmax | undefined = this.nestedAbsmax && st.state2 !== undefined && st.state2.blocksize === NESTED_BLOCK && st.absmax instanceof Uint8Array
          ? { codes: st.absmax, nested: st.state2.absmax, code: st.state2.code, offset: st.offset ?? 0, dtype: st.state2.dtype }
          : undefined;
        const absmax = nested ?? st.absmaxF32();
        const blocks = nested ? nested.codes.length : (absmax as Float32Array).length;
        if (weight.packed.length !== Math.ceil((n * k) / 2)) throw new LowbitError('LENGTH_MISMATCH', `${weight.name}: packed weight has ${weight.packed.length} bytes but [${n}, ${k}] needs ${Math.ceil((n * k) / 2)}`);
        if (blocks !== Math.ceil((n * k) / st.blocksize)) throw new LowbitError('INCONSISTENT_STATE', `${weight.name}: ${blocks} absmax for ${Math.ceil((n * k) / st.blocksize)} blocks`);
        if (!Number.isInteger(Math.log2(st.blocksize))) throw new LowbitError('UNSUPPORTED_BLOCKSIZE', `${weight.name}: blocksize ${st.blocksize} is not a power of two`);
        const { parts, bytes } = fourBitParts(this.ctx, weight.name, weight.packed, absmax, st.blocksize, n, k, b);
        return new GpuLinear(this.ctx, '4bit', parts, n, k, label, bytes, { code: this.code(st.quantType), blocksize: st.blocksize, nested: nested !== undefined, hasBias: b !== undefined });
      }
      case 'int8': {
        const [n, k] = shape2(weight.name, weight.shape);
        checkBias(n);
        const threshold = options.int8Threshold ?? 6.0;
        if (!Number.isFinite(threshold) || threshold < 0) bad(`int8Threshold must be a finite number >= 0, got ${threshold}`);
        if (weight.CB.length !== n * k || weight.SCB.length !== n) throw new LowbitError('LENGTH_MISMATCH', `${weight.name}: CB has ${weight.CB.length} and SCB ${weight.SCB.length} values for [${n}, ${k}]`);
        if (k > Math.floor(0x7fffffff / (127 * 127))) bad(`${weight.name}: K = ${k} could overflow the i32 accumulator`);
        const { parts, bytes } = int8Parts(this.ctx, weight.name, weight.CB, weight.SCB, n, k, b);
        return new GpuLinear(this.ctx, 'int8', parts, n, k, label, bytes, { threshold: Math.fround(threshold), hasBias: b !== undefined });
      }
      case 'dense': {
        const [n, k] = shape2(weight.name, weight.shape);
        checkBias(n);
        const { parts, storage, bytes } = denseParts(this.ctx, weight, n, k, b);
        return new GpuLinear(this.ctx, 'dense', parts, n, k, label, bytes, { storage, hasBias: b !== undefined });
      }
      case 'blockwise8': {
        const [n, k] = shape2(weight.name, weight.shape);
        checkBias(n);
        const bs = weight.blocksize;
        if (!(BLOCKSIZES_8BIT as readonly number[]).includes(bs)) throw new LowbitError('UNSUPPORTED_BLOCKSIZE', `${weight.name}: blocksize ${bs} is not one of ${BLOCKSIZES_8BIT.join(', ')}`);
        if (weight.q.length !== n * k) throw new LowbitError('LENGTH_MISMATCH', `${weight.name}: ${weight.q.length} codes for a [${n}, ${k}] weight`);
        if (weight.absmax.length !== Math.ceil((n * k) / bs)) throw new LowbitError('INCONSISTENT_STATE', `${weight.name}: ${weight.absmax.length} absmax for ${Math.ceil((n * k) / bs)} blocks`);
        if (weight.code.length !== 256) bad(`${weight.name}: an 8-bit code must have 256 entries, got ${weight.code.length}`);
        // the int8 code (GGUF Q8_0) is converted in the kernel (INT8_CODE): no table on the device
        const int8 = isInt8Code(weight.code);
        const { parts, bytes } = blockwise8Parts(this.ctx, weight.name, weight.q, weight.absmax, int8 ? undefined : weight.code, bs, n, k, b);
        return new GpuLinear(this.ctx, 'blockwise8', parts, n, k, label, bytes, { blocksize: bs, int8Code: int8, hasBias: b !== undefined });
      }
      default:
        // CAPABILITIES says this format is native on WebGPU but no upload handles it here
        throw new LowbitError('INTERNAL', `the WebGPU backend has no upload for weight format '${(weight as LoadedWeight).kind}'`);
    }
  }

  private code(quantType: string): Float32Array {
    let c = this.codes.get(quantType);
    if (c === undefined) {
      c = kernelCode(quantMap(quantType as 'nf4'), quantType as 'nf4');
      this.codes.set(quantType, c);
    }
    return c;
  }

  embedding(table: DenseWeight): EmbeddingHandle {
    this.ctx.check();
    const [vocab, dim] = shape2(table.name, table.shape);
    const { parts, storage, bytes } = denseParts(this.ctx, table, vocab, dim);
    return new GpuEmbedding(this.ctx, parts, storage, vocab, dim, bytes);
  }

  vector(v: DenseWeight | Float32Array): VectorHandle {
    this.ctx.check();
    const data = v instanceof Float32Array ? v : denseToFloat32(v);
    if (data.length === 0) bad('a vector needs at least one value');
    return new GpuVector(this.ctx, this.ctx.upload(data, 'vector'), data.length);
  }

  kvCache(maxPositions: number, nKvHeads: number, headDim: number): KvCacheHandle {
    checkPositive('maxPositions', maxPositions);
    checkPositive('nKvHeads', nKvHeads);
    checkPositive('headDim', headDim);
    if (headDim > MAX_HEAD_DIM) bad(`headDim ${headDim} is above the WebGPU attention kernel's ${MAX_HEAD_DIM}`);
    const bytes = maxPositions * nKvHeads * headDim * 4;
    if (bytes > this.ctx.limits.maxBinding) bad(`a kv cache of ${maxPositions} positions x ${nKvHeads} x ${headDim} (${bytes} bytes) exceeds the storage binding limit (${this.ctx.limits.maxBinding}); lower maxPositions`);
    return new GpuKvCache(this.ctx, this.ctx.createBuffer(bytes, 'k cache'), this.ctx.createBuffer(bytes, 'v cache'), maxPositions, nKvHeads, headDim);
  }

  // --- ops

  embed(table: EmbeddingHandle, ids: Uint32Array): Activation {
    const t = handle(table, GpuEmbedding, 'embed: table');
    t.check();
    if (!(ids instanceof Uint32Array)) bad('embed: ids must be a Uint32Array');
    if (ids.length === 0) bad('embed: no token ids');
    const badAt = ids.findIndex((id) => id >= t.vocab);
    if (badAt >= 0) throw new LowbitError('INVALID_ARGUMENT', `token id ${ids[badAt]} at position ${badAt} is outside the vocabulary of ${t.vocab}`, { index: badAt });
    const out = this.newActivation(ids.length, t.dim);
    const idBuf = this.ctx.stage(ids, false);
    const pipe = this.ctx.pipeline('embedding.wgsl', 'gather', [storageDefine(t.storage)]);
    const [gx, gy] = this.ctx.grid(Math.ceil((ids.length * t.dim) / 256));
    for (const part of t.parts) {
      // only the parts some id falls into
      if (!ids.some((id) => id >= part.n0 && id < part.n0 + part.rows)) continue;
      this.ctx.dispatch(pipe, { p: this.ctx.uniform(this.ctx.params(pipe, { n: ids.length, dim: t.dim, row0: part.n0, rows: part.rows })), ids: idBuf, table: part.data, y: out.binding('embed output') }, gx, gy);
    }
    return out;
  }

  /**
   * Three 4-bit projections of one row (attention's q / k / v) that gemv4 takes, alike (see
   * fusesQkv), in one dispatch (matmul4.wgsl QKV); otherwise each layer in turn (the dispatches
   * go into the same command encoder anyway).
   */
  linearForwardMany(x: Activation, ws: readonly LinearHandle[]): Activation[] {
    const a = this.act(x, 'linearForwardMany: x');
    const ls = ws.map((w, i) => handle(w, GpuLinear, `linearForwardMany: weight ${i}`));
    if (!(this.gemv4 && this.variant.fuseQkv && ls.length === 3 && fusesQkv(a, ls))) return ws.map((w) => this.linearForward(x, w));
    for (const l of ls) l.check();
    const [q, k, v] = ls as [GpuLinear, GpuLinear, GpuLinear];
    const outs = ls.map((l) => this.newActivation(1, l.outFeatures));
    const [qp, kp, vp] = [q.parts[0]!, k.parts[0]!, v.parts[0]!];
    const lanes = gemv4Lanes(a.cols);
    const rows = q.outFeatures + k.outFeatures + v.outFeatures;
    const pipe = this.ctx.pipeline('matmul4.wgsl', 'gemv4', ['QKV', ...this.gemv4Defines(), ...(q.extra.nested ? ['NESTED_ABSMAX'] : [])]);
    const [gx, gy] = this.ctx.grid(Math.ceil(rows / ((GEMV4_ROWS * 64) / lanes)));
    const uni = this.ctx.params(pipe, {
      m: 1, k: a.cols, n_total: q.outFeatures, n0: 0, n_part: q.outFeatures, has_bias: false, flat_base: 0, block_base: 0,
      block_shift: Math.log2(q.extra.blocksize!), g4_lanes: lanes, q_at: qp.codesAt ?? 0, code: q.extra.code!,
      n_k: k.outFeatures, n_v: v.outFeatures, q_at_k: kp.codesAt ?? 0, q_at_v: vp.codesAt ?? 0,
    });
    this.ctx.dispatch(pipe, {
      p: this.ctx.constUniform(uni),
      x: a.binding('x'),
      packed: qp.data, absmax: qp.scales!, y: outs[0]!.binding('q output'),
      packed_k: kp.data, absmax_k: kp.scales!, y_k: outs[1]!.binding('k output'),
      packed_v: vp.data, absmax_v: vp.scales!, y_v: outs[2]!.binding('v output'),
    }, gx, gy);
    return outs;
  }

  linearForward(x: Activation, w: LinearHandle): Activation {
    const a = this.act(x, 'linearForward: x');
    const l = handle(w, GpuLinear, 'linearForward: weight');
    l.check();
    if (a.cols !== l.inFeatures) bad(`linearForward: x has ${a.cols} columns but the ${l.format} weight [${l.outFeatures}, ${l.inFeatures}] takes ${l.inFeatures}`);
    if (a.rows === 0) bad('linearForward: x has no rows');
    if (l.kind === 'int8') return this.int8Forward(a, l);
    if (l.kind === 'blockwise8') return this.blockwise8Forward(a, l);
    const out = this.newActivation(a.rows, l.outFeatures);
    this.matmul(a, l.parts, l.kind === '4bit' ? { code: l.extra.code!, blocksize: l.extra.blocksize!, nested: l.extra.nested === true } : { storage: l.extra.storage! }, l.outFeatures, l.inFeatures, out);
    return out;
  }

  /**
   * silu(x gateᵀ) * (x upᵀ). One dispatch per part (matmul4.wgsl gemv4 with GATE_UP) for one
   * row of x through two 4-bit weights gemv4 takes, of the same shape, blocksize and code and
   * without bias; otherwise the two linears and swiglu.
   */
  linearSwiglu(x: Activation, gate: LinearHandle, up: LinearHandle): Activation {
    const a = this.act(x, 'linearSwiglu: x');
    const g = handle(gate, GpuLinear, 'linearSwiglu: gate');
    const u = handle(up, GpuLinear, 'linearSwiglu: up');
    g.check();
    u.check();
    if (!this.gemv4 || !fusesGateUp(a, g, u)) {
      const [gy, uy] = this.linearForwardMany(a, [g, u]) as [GpuActivation, GpuActivation];
      try {
        return this.swiglu(gy, uy);
      } finally {
        this.release(gy);
        this.release(uy);
      }
    }
    const out = this.newActivation(1, g.outFeatures);
    const pipe = this.ctx.pipeline('matmul4.wgsl', 'gemv4', ['GATE_UP', ...this.gemv4Defines(), ...(g.extra.nested ? ['NESTED_ABSMAX'] : [])]);
    const shift = Math.log2(g.extra.blocksize!);
    const lanes = gemv4Lanes(g.inFeatures);
    g.parts.forEach((gp, i) => {
      const up = u.parts[i]!;
      const [gx, gy] = this.ctx.grid(Math.ceil(gp.rows / ((GEMV4_ROWS_GATE_UP * 64) / lanes)));
      const uni = this.ctx.params(pipe, {
        m: 1, k: g.inFeatures, n_total: g.outFeatures, n0: gp.n0, n_part: gp.rows, has_bias: false, flat_base: gp.flatBase, block_base: gp.blockBase,
        block_shift: shift, g4_lanes: lanes, q_at: gp.codesAt ?? 0, code: g.extra.code!,
      });
      this.ctx.dispatch(pipe, {
        p: this.ctx.constUniform(uni),
        x: a.binding('x'),
        packed: gp.data,
        absmax: gp.scales!,
        y: out.binding('output'),
        packed_up: up.data,
        absmax_up: up.scales!,
      }, gx, gy);
    });
    return out;
  }

  /**
   * residual + (x Wᵀ + bias). One dispatch per part (gemv4 with RESIDUAL) for one row of x
   * through a 4-bit weight gemv4 takes; otherwise linearForward and add.
   */
  linearResidual(x: Activation, w: LinearHandle, residual: Activation): Activation {
    const a = this.act(x, 'linearResidual: x');
    const l = handle(w, GpuLinear, 'linearResidual: weight');
    const r = this.act(residual, 'linearResidual: residual');
    l.check();
    const fused = this.gemv4 && l.kind === '4bit' && a.cols === l.inFeatures && usesGemv4(a.rows, a.cols, l.extra.blocksize!) && r.rows === 1 && r.cols === l.outFeatures;
    if (!fused) {
      const y = this.linearForward(a, l);
      try {
        return this.add(r, y);
      } finally {
        this.release(y);
      }
    }
    const out = this.newActivation(1, l.outFeatures);
    this.matmul(a, l.parts, { code: l.extra.code!, blocksize: l.extra.blocksize!, nested: l.extra.nested === true }, l.outFeatures, l.inFeatures, out, r);
    return out;
  }

  project(x: Activation, table: EmbeddingHandle): Activation {
    const a = this.act(x, 'project: x');
    const t = handle(table, GpuEmbedding, 'project: table');
    t.check();
    if (a.cols !== t.dim) bad(`project: x has ${a.cols} columns but the embedding dim is ${t.dim}`);
    if (a.rows === 0) bad('project: x has no rows');
    const out = this.newActivation(a.rows, t.vocab);
    this.matmul(a, t.parts, { storage: t.storage }, t.vocab, t.dim, out);
    return out;
  }

  /**
   * 4-bit or dense y = x Wᵀ (+ bias), one dispatch per part: GEMV for one row, tiled GEMM else.
   * 4-bit rows made of whole 32-weight words in blocks of >= 32 take gemv4 (row groups of
   * gemv4Lanes threads with 4 rows each, SUBGROUPS where the device has subgroups; RESIDUAL adds
   * `residual` in its epilogue), other shapes the generic GEMV.
   */
  private matmul(a: GpuActivation, parts: Part[], fmt: { code: Float32Array; blocksize: number; nested: boolean } | { storage: DenseStorage }, n: number, k: number, out: GpuActivation, residual?: GpuActivation): void {
    const m = a.rows;
    const gemv4 = this.gemv4 && 'code' in fmt && usesGemv4(m, k, fmt.blocksize);
    // dense decode: matmul_dense.wgsl gemv_rows (gemv4's layout, steps of 4 weights)
    const rowsGemv = this.gemv4 && !('code' in fmt) && m === 1 && k % 4 === 0;
    if (residual !== undefined && !gemv4) throw new LowbitError('INTERNAL', 'matmul: a residual needs gemv4');
    const sg = this.subgroups ? ['SUBGROUPS'] : [];
    const f16 = rowsGemv && !('code' in fmt) && fmt.storage === 'f16' && this.variant.f16;
    const defines = !('code' in fmt) ? [storageDefine(fmt.storage), ...(rowsGemv ? sg : []), ...(f16 ? ['F16_COMPUTE'] : [])] : [...(fmt.nested ? ['NESTED_ABSMAX'] : []), ...(gemv4 ? [...this.gemv4Defines(), ...(residual ? ['RESIDUAL'] : [])] : [])];
    const entry = gemv4 ? 'gemv4' : rowsGemv ? 'gemv_rows' : m === 1 ? 'gemv' : 'gemm';
    const lanes = gemv4 ? gemv4Lanes(k) : rowsGemv ? denseLanes(k) : 0;
    const rowsPerGroup = gemv4 || rowsGemv ? (GEMV4_ROWS * 64) / lanes : 8;
    for (const part of parts) {
      const head = { m, k, n_total: n, n0: part.n0, n_part: part.rows, has_bias: part.bias !== undefined };
      let pipe: Kernel<'matmul4.wgsl'> | Kernel<'matmul_dense.wgsl'>;
      let bindings: Bindings<'matmul4.wgsl'> | Bindings<'matmul_dense.wgsl'>;
      const common = { x: a.binding('x'), bias: part.bias ?? this.ctx.dummy, y: out.binding('output') };
      if ('code' in fmt) {
        const p4 = (pipe = this.ctx.pipeline('matmul4.wgsl', entry as 'gemv4' | 'gemv' | 'gemm', defines));
        const uni = this.ctx.params(p4, { ...head, flat_base: part.flatBase, block_base: part.blockBase, block_shift: Math.log2(fmt.blocksize), g4_lanes: lanes, q_at: part.codesAt ?? 0, code: fmt.code });
        bindings = { ...common, p: this.ctx.constUniform(uni), packed: part.data, absmax: part.scales!, ...(residual ? { residual: residual.binding('residual') } : {}) };
      } else {
        const pd = (pipe = this.ctx.pipeline('matmul_dense.wgsl', entry as 'gemv_rows' | 'gemv' | 'gemm', defines));
        bindings = { ...common, p: this.ctx.constUniform(this.ctx.params(pd, { ...head, lanes })), ...(f16 ? { wt_h: part.data } : { wt: part.data }) };
      }
      this.dispatchLinearPart(pipe, bindings, m, part.rows, rowsPerGroup);
    }
  }

  /** matmul4.wgsl gemv4's defines from the variant: subgroup reduction, integer or f16 activations. */
  private gemv4Defines(): string[] {
    const act = this.variant.intActivations ? ['INT_ACT'] : this.variant.f16Activations ? ['F16_COMPUTE'] : [];
    return [...(this.subgroups ? ['SUBGROUPS'] : []), ...act];
  }

  private int8Forward(a: GpuActivation, l: GpuLinear): Activation {
    const m = a.rows;
    const k = l.inFeatures;
    const n = l.outFeatures;
    const wordsPerRow = Math.ceil(k / 4);
    const threshold = l.extra.threshold!;
    const outliers = threshold > 0;
    // decode: int8_gemv (row groups of `lanes` threads, 4 rows each), as gemv4 for 4-bit
    const gemv = m === 1 && this.gemv4;
    let lanes = 8;
    while (gemv && lanes < 64 && lanes < wordsPerRow) lanes *= 2;
    const ctx = this.ctx;
    const head = (n0: number, nPart: number, hasBias: boolean) => ({ m, k, n_total: n, n0, n_part: nPart, has_bias: hasBias, words: wordsPerRow, has_outliers: outliers, threshold, lanes });
    const x = a.binding('x');
    let flags: GPUBuffer | undefined;
    let cols: GPUBuffer | undefined;
    if (outliers) {
      flags = ctx.acquire(k * 4);
      cols = ctx.acquire((k + 1) * 4);
      const flagsPipe = ctx.pipeline('matmul_int8.wgsl', 'int8_flags');
      const u = ctx.constUniform(ctx.params(flagsPipe, head(0, 0, false)));
      const [gx, gy] = ctx.grid(Math.ceil(k / 256));
      ctx.dispatch(flagsPipe, { p: u, x, flags: { buffer: flags, size: k * 4 } }, gx, gy);
      ctx.dispatch(ctx.pipeline('matmul_int8.wgsl', 'int8_compact'), { p: u, cols: { buffer: cols, size: (k + 1) * 4 }, flags_in: { buffer: flags, size: k * 4 } }, 1);
    }
    const ca = ctx.acquire(m * wordsPerRow * 4);
    const sca = ctx.acquire(m * 4);
    {
      const [gx, gy] = ctx.grid(m);
      const quantPipe = ctx.pipeline('matmul_int8.wgsl', 'int8_quant');
      ctx.dispatch(quantPipe, { p: ctx.constUniform(ctx.params(quantPipe, head(0, 0, false))), x, ca: { buffer: ca, size: m * wordsPerRow * 4 }, sca: { buffer: sca, size: m * 4 }, flags_in: flags ?? ctx.dummy }, gx, gy);
    }
    const out = this.newActivation(m, n);
    const pipe = gemv ? ctx.pipeline('matmul_int8.wgsl', 'int8_gemv', this.subgroups ? ['SUBGROUPS'] : []) : ctx.pipeline('matmul_int8.wgsl', 'int8_matmul');
    for (const part of l.parts) {
      const grid: [number, number] = gemv ? ctx.grid(Math.ceil(part.rows / ((4 * 64) / lanes))) : [Math.ceil(part.rows / 64), m];
      ctx.dispatch(pipe, {
        p: ctx.constUniform(ctx.params(pipe, head(part.n0, part.rows, part.bias !== undefined))),
        x,
        cols_in: cols ?? ctx.dummy,
        ca_in: { buffer: ca, size: m * wordsPerRow * 4 },
        sca_in: { buffer: sca, size: m * 4 },
        cb: part.data,
        scb: part.scales!,
        bias: part.bias ?? ctx.dummy,
        y: out.binding('output'),
      }, grid[0], grid[1]);
    }
    for (const b of [flags, cols, ca, sca]) if (b) ctx.release(b);
    return out;
  }

  /**
   * One part of a linear layer: a GEMV grid of row groups (`rowsPerGroup` output rows per
   * workgroup) for one row of x, the tiled GEMM's 64 x 64 tiles for several.
   */
  private dispatchLinearPart<F extends KernelFile>(pipe: Kernel<F>, bindings: Bindings<F>, m: number, rows: number, rowsPerGroup: number): void {
    if (m === 1) {
      const [gx, gy] = this.ctx.grid(Math.ceil(rows / rowsPerGroup));
      this.ctx.dispatch(pipe, bindings, gx, gy);
    } else {
      const gy = Math.ceil(m / 64);
      if (gy > 65535) bad(`linear: ${m} rows are too many for one dispatch`);
      this.ctx.dispatch(pipe, bindings, Math.ceil(rows / 64), gy);
    }
  }

  /**
   * Block-wise 8-bit y = x Wᵀ (+ bias), one dispatch per part (matmul_blockwise8.wgsl): gemv8 for
   * one row of k a multiple of 16 (row groups of `lanes` threads, 4 rows each, SUBGROUPS where the
   * device has subgroups; on integer activations for Q8_0 with `intActivations`), the generic GEMV
   * for other single rows, tiled GEMM for several.
   */
  private blockwise8Forward(a: GpuActivation, l: GpuLinear): Activation {
    const m = a.rows;
    const k = l.inFeatures;
    const n = l.outFeatures;
    const gemv8 = this.gemv4 && m === 1 && k % 16 === 0;
    // Q8_0 decode on 14-bit integer activations (the variant's intActivations): threads step whole
    // 32-activation blocks, so k must be whole blocks
    const intAct = gemv8 && this.variant.intActivations && l.extra.int8Code === true && k % 32 === 0;
    const step = intAct ? 32 : 16;
    let lanes = 8;
    while (gemv8 && lanes < 64 && lanes * step < k) lanes *= 2;
    const defines = [...(l.extra.int8Code ? ['INT8_CODE'] : []), ...(gemv8 && this.subgroups ? ['SUBGROUPS'] : []), ...(intAct ? ['INT_ACT'] : [])];
    const pipe = this.ctx.pipeline('matmul_blockwise8.wgsl', gemv8 ? 'gemv8' : m === 1 ? 'gemv' : 'gemm', defines);
    const rowsPerGroup = gemv8 ? (4 * 64) / lanes : 8;
    const out = this.newActivation(m, n);
    for (const part of l.parts) {
      const uni = this.ctx.params(pipe, {
        m, k, n_total: n, n0: part.n0, n_part: part.rows, has_bias: part.bias !== undefined,
        flat_base: part.flatBase, block_base: part.blockBase, block_shift: Math.log2(l.extra.blocksize!), absmax_at: l.extra.int8Code ? 0 : 256, lanes,
      });
      const bindings = { p: this.ctx.constUniform(uni), x: a.binding('x'), q: part.data, absmax: part.scales!, bias: part.bias ?? this.ctx.dummy, y: out.binding('output') };
      this.dispatchLinearPart(pipe, bindings, m, part.rows, rowsPerGroup);
    }
    return out;
  }

  private unaryOrBinary(entry: KernelEntries['elementwise.wgsl'], a: GpuActivation, b: GpuActivation | undefined, value = 0): Activation {
    const out = this.newActivation(a.rows, a.cols);
    const count = a.rows * a.cols;
    if (count === 0) return out;
    const [gx, gy] = this.ctx.grid(Math.ceil(count / 256));
    const pipe = this.ctx.pipeline('elementwise.wgsl', entry);
    this.ctx.dispatch(pipe, { p: this.ctx.constUniform(this.ctx.params(pipe, { count, value })), a: a.binding('input'), y: out.binding('output'), ...(b ? { b: b.binding('input') } : {}) }, gx, gy);
    return out;
  }

  private sameShape(a: GpuActivation, b: GpuActivation, op: string): void {
    if (a.rows !== b.rows || a.cols !== b.cols) bad(`${op}: shapes [${a.rows}, ${a.cols}] and [${b.rows}, ${b.cols}] differ`);
  }

  add(a: Activation, b: Activation): Activation {
    const x = this.act(a, 'add: a');
    const y = this.act(b, 'add: b');
    this.sameShape(x, y, 'add');
    return this.unaryOrBinary('add', x, y);
  }

  silu(x: Activation): Activation {
    return this.unaryOrBinary('silu_op', this.act(x, 'silu: x'), undefined);
  }

  gelu(x: Activation): Activation {
    return this.unaryOrBinary('gelu', this.act(x, 'gelu: x'), undefined);
  }

  geluTanh(x: Activation): Activation {
    return this.unaryOrBinary('gelu_tanh', this.act(x, 'geluTanh: x'), undefined);
  }

  geglu(gate: Activation, up: Activation): Activation {
    const g = this.act(gate, 'geglu: gate');
    const u = this.act(up, 'geglu: up');
    this.sameShape(g, u, 'geglu');
    return this.unaryOrBinary('geglu', g, u);
  }

  scale(x: Activation, s: number): Activation {
    checkFinitePositive('scale: s', s, false);
    return this.unaryOrBinary('scale_op', this.act(x, 'scale: x'), undefined, s);
  }

  softcap(x: Activation, cap: number): Activation {
    checkFinitePositive('softcap: cap', cap, true);
    return this.unaryOrBinary('softcap', this.act(x, 'softcap: x'), undefined, cap);
  }

  swiglu(gate: Activation, up: Activation): Activation {
    const g = this.act(gate, 'swiglu: gate');
    const u = this.act(up, 'swiglu: up');
    this.sameShape(g, u, 'swiglu');
    return this.unaryOrBinary('swiglu', g, u);
  }

  rmsNorm(x: Activation, weight: VectorHandle, eps: number): Activation {
    const a = this.act(x, 'rmsNorm: x');
    const w = handle(weight, GpuVector, 'rmsNorm: weight');
    if (w.length !== a.cols) bad(`rmsNorm: weight has ${w.length} values but x has ${a.cols} columns`);
    if (a.rows === 0) bad('rmsNorm: x has no rows');
    const out = this.newActivation(a.rows, a.cols);
    const [gx, gy] = this.ctx.grid(a.rows);
    const pipe = this.ctx.pipeline('norm.wgsl', 'rms_norm');
    this.ctx.dispatch(pipe, { p: this.ctx.constUniform(this.ctx.params(pipe, { rows: a.rows, hidden: a.cols, eps, has_bias: false })), x: a.binding('x'), w: w.binding('rmsNorm: weight'), y: out.binding('output') }, gx, gy);
    return out;
  }

  rmsNormHeads(x: Activation, weight: VectorHandle, eps: number): Activation {
    const a = this.act(x, 'rmsNormHeads: x');
    const w = handle(weight, GpuVector, 'rmsNormHeads: weight');
    if (w.length === 0 || a.cols % w.length !== 0) bad(`rmsNormHeads: weight has ${w.length} values, which do not divide x's ${a.cols} columns into heads`);
    if (a.rows === 0) bad('rmsNormHeads: x has no rows');
    // row-major: [rows, nHeads * headDim] is [rows * nHeads, headDim] for the same kernel
    const rows = a.rows * (a.cols / w.length);
    const out = this.newActivation(a.rows, a.cols);
    const [gx, gy] = this.ctx.grid(rows);
    const pipe = this.ctx.pipeline('norm.wgsl', 'rms_norm');
    this.ctx.dispatch(pipe, { p: this.ctx.constUniform(this.ctx.params(pipe, { rows, hidden: w.length, eps, has_bias: false })), x: a.binding('x'), w: w.binding('rmsNormHeads: weight'), y: out.binding('output') }, gx, gy);
    return out;
  }

  layerNorm(x: Activation, weight: VectorHandle, bias: VectorHandle | undefined, eps: number): Activation {
    const a = this.act(x, 'layerNorm: x');
    const w = handle(weight, GpuVector, 'layerNorm: weight');
    const b = bias === undefined ? undefined : handle(bias, GpuVector, 'layerNorm: bias');
    if (w.length !== a.cols) bad(`layerNorm: weight has ${w.length} values but x has ${a.cols} columns`);
    if (b !== undefined && b.length !== a.cols) bad(`layerNorm: bias has ${b.length} values but x has ${a.cols} columns`);
    if (a.rows === 0) bad('layerNorm: x has no rows');
    const out = this.newActivation(a.rows, a.cols);
    const [gx, gy] = this.ctx.grid(a.rows);
    const pipe = this.ctx.pipeline('norm.wgsl', 'layer_norm');
    this.ctx.dispatch(pipe, {
      p: this.ctx.constUniform(this.ctx.params(pipe, { rows: a.rows, hidden: a.cols, eps, has_bias: b !== undefined })),
      x: a.binding('x'),
      w: w.binding('layerNorm: weight'),
      b: b ? b.binding('layerNorm: bias') : this.ctx.dummy,
      y: out.binding('output'),
    }, gx, gy);
    return out;
  }

  /**
   * cos / sin of f32(position * inv_freq) for positions [0, capacity), as the CPU kernel computes
   * them, times `scaling` (rounded to f32) when it is not 1.
   */
  private ropeTable(invFreq: Float32Array, needed: number, scaling: number): RopeTable {
    const old = this.ropeTables.get(invFreq);
    if (old !== undefined && old.capacity >= needed && old.scaling === scaling) return old;
    const capacity = Math.max(needed, 256, old?.scaling === scaling ? old.capacity * 2 : 0);
    const half = invFreq.length;
    const cs = new Float32Array(capacity * half * 2);
    for (let p = 0; p < capacity; p++) {
      const pf = Math.fround(p);
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(pf * invFreq[i]!);
        cs[(p * half + i) * 2] = Math.cos(angle);
        cs[(p * half + i) * 2 + 1] = Math.sin(angle);
      }
    }
    if (scaling !== 1) for (let j = 0; j < cs.length; j++) cs[j] = cs[j]! * scaling;
    if (cs.byteLength > this.ctx.limits.maxBinding) bad(`rope: a table for ${capacity} positions exceeds the storage binding limit`);
    const t = { buffer: this.ctx.upload(cs, 'rope cos/sin'), capacity, scaling };
    if (old) this.ctx.destroyLater(old.buffer);
    this.ropeTables.set(invFreq, t);
    return t;
  }

  rope(x: Activation, nHeads: number, positions: Uint32Array, spec: RopeSpec): Activation {
    const a = this.act(x, 'rope: x');
    const { rotaryDim, scaling } = checkRope(a, nHeads, positions, spec);
    const out = this.newActivation(a.rows, a.cols);
    if (a.rows === 0) return out;
    let maxPos = 0;
    for (const p of positions) maxPos = Math.max(maxPos, p);
    const table = this.ropeTable(spec.invFreq, maxPos + 1, scaling);
    const half = rotaryDim / 2;
    // partial rotary: the values past rotaryDim pass through (the kernel writes only the rotated ones)
    if (rotaryDim < spec.headDim) this.ctx.copy(a.buffer, 0, out.buffer, 0, a.bytes);
    const [gx, gy] = this.ctx.grid(Math.ceil((a.rows * nHeads * half) / 256));
    const pipe = this.ctx.pipeline('rope.wgsl', 'rope');
    this.ctx.dispatch(pipe, {
      p: this.ctx.constUniform(this.ctx.params(pipe, { rows: a.rows, n_heads: nHeads, half, head_dim: spec.headDim })),
      x: a.binding('x'),
      positions: this.ctx.stage(positions, false),
      cs: table.buffer,
      y: out.binding('output'),
    }, gx, gy);
    return out;
  }

  attention(q: Activation, k: Activation, v: Activation, cache: KvCacheHandle, start: number, nHeads: number, scale?: number, extras?: AttentionExtras): Activation {
    const qa = this.act(q, 'attention: q');
    const ka = this.act(k, 'attention: k');
    const va = this.act(v, 'attention: v');
    const c = handle(cache, GpuKvCache, 'attention: cache');
    c.check();
    checkAttention(qa, ka, va, c, start, nHeads, scale, extras);
    const n = qa.rows;
    const kvCols = c.nKvHeads * c.headDim;
    if (nHeads > 65535 || n > 65535) bad(`attention: ${nHeads} heads x ${n} tokens exceed one dispatch`);
    // the CPU kernel's default: 1 / sqrt(head_dim) in f32
    const s = scale === undefined ? Math.fround(1 / Math.fround(Math.sqrt(c.headDim))) : Math.fround(scale);
    const rowBytes = kvCols * 4;
    this.ctx.copy(ka.buffer, 0, c.k, start * rowBytes, n * rowBytes);
    this.ctx.copy(va.buffer, 0, c.v, start * rowBytes, n * rowBytes);
    const out = this.newActivation(n, qa.cols);
    const span = attentionSpan(start, n, extras?.window);
    const { splitLen, nSplit } = splitShape(span, attentionSplits(span, nHeads, n, this.attentionSplits));
    const single = this.ctx.pipeline('attention.wgsl', 'attention');
    const uni = this.ctx.uniform(this.ctx.params(single, { n, start, n_heads: nHeads, group: nHeads / c.nKvHeads, head_dim: c.headDim, kv_row: kvCols, scale: s, window: extras?.window ?? 0, softcap: extras?.softcap ?? 0, split_len: splitLen, n_split: nSplit }));
    if (nSplit === 1) {
      this.ctx.dispatch(single, { p: uni, q: qa.binding('q'), k_cache: c.k, v_cache: c.v, y: out.binding('output') }, nHeads, n);
      return out;
    }
    // flash decoding: partial softmax per (head, token, split), then one combine per (head, token)
    const partBytes = n * nHeads * nSplit * (c.headDim + 2) * 4;
    const part = this.ctx.acquire(partBytes);
    this.ctx.dispatch(this.ctx.pipeline('attention.wgsl', 'attention_split'), { p: uni, q: qa.binding('q'), k_cache: c.k, v_cache: c.v, part: { buffer: part, size: partBytes } }, nHeads, n, nSplit);
    this.ctx.dispatch(this.ctx.pipeline('attention.wgsl', 'attention_combine'), { p: uni, y: out.binding('output'), part: { buffer: part, size: partBytes } }, nHeads, n);
    this.ctx.release(part);
    return out;
  }

  rows(x: Activation, from: number, to: number): Activation {
    const a = this.act(x, 'rows: x');
    if (!isCount(from) || !isCount(to) || from > to || to > a.rows) bad(`rows: [${from}, ${to}) is not a range of rows of a [${a.rows}, ${a.cols}] activation`);
    const out = this.newActivation(to - from, a.cols);
    if (to > from && a.cols > 0) this.ctx.copy(a.buffer, from * a.cols * 4, out.buffer, 0, (to - from) * a.cols * 4);
    return out;
  }

  /**
   * Block-wise 4-bit quantization on the GPU: the same packed codes and absmax as quantize4bit()
   * (see quantize.ts for the subnormal exception); no double quantization.
   */
  quantize4bit(input: FloatInput, options: GpuQuantize4Options = {}): Promise<{ packed: Uint8Array; quantState: QuantState }> {
    return quantize4bitGpu(this.ctx, input, options);
  }

  async topK(x: Activation, k: number): Promise<{ indices: Uint32Array; values: Float32Array }> {
    const a = this.act(x, 'topK: x');
    if (a.rows !== 1 || a.cols === 0) bad(`topK: x must be one row, got [${a.rows}, ${a.cols}]`);
    if (!Number.isInteger(k) || k < 1 || k > Math.min(a.cols, MAX_TOP_K)) bad(`topK: k must be an integer in [1, ${Math.min(a.cols, MAX_TOP_K)}], got ${k}`);
    const out = this.ctx.acquire(2 * k * 4);
    const pipe = this.ctx.pipeline('sample.wgsl', 'topk');
    this.ctx.dispatch(pipe, { p: this.ctx.uniform(this.ctx.params(pipe, { rows: k, cols: a.cols })), x: a.binding('x'), out: { buffer: out, size: 2 * k * 4 } }, 1);
    try {
      const r = await this.ctx.readBuffer(out, 0, 2 * k * 4);
      return { indices: new Uint32Array(r, 0, k).slice(), values: new Float32Array(r, 4 * k, k).slice() };
    } finally {
      this.ctx.release(out);
    }
  }

  /**
   * The next token chosen on the device (Backend.sampleToken): a copy of the logits with the
   * repetition penalty applied, then argmax, or top-k candidates (sample.wgsl topk) and
   * sample_draw.wgsl draw_sorted, or draw_full over the whole row; reads back 4 bytes.
   */
  async sampleToken(x: Activation, choice: TokenChoice): Promise<number> {
    const a = this.act(x, 'sampleToken: x');
    if (a.rows !== 1 || a.cols === 0) bad(`sampleToken: x must be one row, got [${a.rows}, ${a.cols}]`);
    const cols = a.cols;
    const t = choice.temperature ?? 1;
    const topP = choice.topP ?? 1;
    const penalty = choice.repetitionPenalty ?? 1;
    const u = choice.random ?? 0;
    if (!(Number.isFinite(t) && t > 0)) bad(`sampleToken: temperature must be a number > 0, got ${t}`);
    if (!(topP > 0 && topP <= 1)) bad(`sampleToken: topP must be in (0, 1], got ${topP}`);
    if (!(Number.isFinite(penalty) && penalty > 0)) bad(`sampleToken: repetitionPenalty must be a number > 0, got ${penalty}`);
    if (choice.doSample && !(u >= 0 && u < 1)) bad(`sampleToken: random must be in [0, 1), got ${u}`);
    const k = choice.topK ?? 0;
    if (!(Number.isInteger(k) && k >= 0)) bad(`sampleToken: topK must be an integer >= 0, got ${k}`);
    const topK = k >= cols ? 0 : k;
    if (choice.doSample && topK > MAX_TOP_K) bad(`sampleToken: topK ${k} is above the device's ${MAX_TOP_K} (and below the row's ${cols})`);
    const ctx = this.ctx;
    const temps: GPUBuffer[] = [];
    const temp = (bytes: number) => {
      const b = ctx.acquire(bytes);
      temps.push(b);
      return b;
    };
    const rowBytes = cols * 4;
    let logits: Required<Binding> = a.binding('sampleToken: x');
    if (penalty !== 1 && choice.seen !== undefined && choice.seen.length > 0) {
      const ids = new Set<number>();
      for (let i = 0; i < choice.seen.length; i++) {
        const id = choice.seen[i]!;
        if (!(Number.isInteger(id) && id >= 0 && id < cols)) bad(`sampleToken: seen id ${id} is outside the row of ${cols}`);
        ids.add(id);
      }
      const work = temp(rowBytes);
      ctx.copy(a.buffer, 0, work, 0, rowBytes);
      logits = { buffer: work, offset: 0, size: rowBytes };
      const [gx, gy] = ctx.grid(Math.ceil(ids.size / 256));
      const pipe = ctx.pipeline('sample_draw.wgsl', 'penalize');
      ctx.dispatch(pipe, { p: ctx.uniform(ctx.params(pipe, { n: ids.size, temperature: 1, top_p: 1, u: 0, penalty })), src: ctx.stage(Uint32Array.from(ids), false), logits }, gx, gy);
    }
    const out = temp(4);
    const outBinding = { buffer: out, offset: 0, size: 4 };
    const draw = (entry: 'draw_sorted' | 'draw_full') => ctx.pipeline('sample_draw.wgsl', entry);
    const params = (n: number) => ctx.uniform(ctx.params(draw('draw_full'), { n, temperature: t, top_p: topP, u, penalty }));
    if (!choice.doSample) {
      const pipe = ctx.pipeline('sample.wgsl', 'argmax');
      ctx.dispatch(pipe, { p: ctx.uniform(ctx.params(pipe, { rows: 1, cols })), x: logits, out: outBinding }, 1);
    } else if (topK > 0) {
      const cand = temp(2 * topK * 4);
      const candBinding = { buffer: cand, offset: 0, size: 2 * topK * 4 };
      const pipe = ctx.pipeline('sample.wgsl', 'topk');
      ctx.dispatch(pipe, { p: ctx.uniform(ctx.params(pipe, { rows: topK, cols })), x: logits, out: candBinding }, 1);
      ctx.dispatch(draw('draw_sorted'), { p: params(topK), src: candBinding, chosen: outBinding }, 1);
    } else {
      const probs = temp(rowBytes);
      ctx.dispatch(draw('draw_full'), { p: params(cols), logits, chosen: outBinding, probs: { buffer: probs, offset: 0, size: rowBytes } }, 1);
    }
    try {
      return new Uint32Array(await ctx.readBuffer(out, 0, 4))[0]!;
    } finally {
      for (const b of temps) ctx.release(b);
    }
  }

  async argmax(x: Activation): Promise<Uint32Array> {
    const a = this.act(x, 'argmax: x');
    if (a.rows === 0 || a.cols === 0) bad(`argmax: x is [${a.rows}, ${a.cols}]`);
    const ids = this.ctx.acquire(a.rows * 4);
    const [gx, gy] = this.ctx.grid(a.rows);
    const pipe = this.ctx.pipeline('sample.wgsl', 'argmax');
    this.ctx.dispatch(pipe, { p: this.ctx.constUniform(this.ctx.params(pipe, { rows: a.rows, cols: a.cols })), x: a.binding('x'), out: { buffer: ids, size: a.rows * 4 } }, gx, gy);
    try {
      return new Uint32Array(await this.ctx.readBuffer(ids, 0, a.rows * 4));
    } finally {
      this.ctx.release(ids);
    }
  }
}
