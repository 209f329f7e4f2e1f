/**
 * The WebGPU plumbing under the backend: buffer pools, the pipeline cache, and recording.
 *
 * Recording: every op records its dispatches (and buffer copies) into one command encoder; the
 * batch is submitted only when something must come back (`read`), when it grows large, or on
 * `flush()`. Host data an op needs (uniform parameters, token ids, positions, fromHost values)
 * goes into upload chunks that are written with queue.writeBuffer right before the batch is
 * submitted. That ordering matters: queue.writeBuffer runs on the queue timeline at once, ahead
 * of any not-yet-submitted commands, so writing straight into a buffer that recorded commands
 * still read would corrupt them. Chunks are reused by the next batch: its writes are queued
 * after this batch's submit, and queue operations run in order.
 *
 * Buffers of released activations go back to a pool (size classes, 4 per octave) and may be
 * handed out again while commands that read them are recorded but not submitted: commands run
 * in recording order, so the old readers finish before the new writer starts.
 */
import { LowbitError } from '../../errors.js';
import { bindResolved, kernelLayout, packResolved, type KernelBindings, type KernelEntries, type KernelFile, type KernelParams, type ResolvedLayout } from './layout.js';
import { preprocess, WgslPreprocessError } from './preprocess.js';
import { SHADER_SOURCES } from './shaders.generated.js';

// GPUBufferUsage / GPUMapMode values (WebGPU spec), so no globals are needed (Node's `webgpu`
// package does not install them unless asked).
export const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ_MODE = 0x1;
const STORAGE_USAGE = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;
/** Upload chunk size; larger single uploads get a chunk of their own. */
const CHUNK_BYTES = 1 << 20;
/** Submit after this many recorded dispatches even without a read (bounds encoder memory). */
const MAX_BATCH_DISPATCHES = 4096;
/** Uniform blocks kept by constUniform (least recently used dropped first): 256 bytes each at most. */
const MAX_CONST_UNIFORMS = 4096;
/** At most this many workgroups in one grid dimension (WebGPU's default limit). */
export const MAX_GROUPS = 65535;

/**
 * Per-step overhead counters (what a decode token costs the host, whatever the adapter):
 * kept as plain number increments plus one performance.now() pair per recorded command.
 */
export interface GpuStats {
  /** Compute dispatches recorded. */
  dispatches: number;
  /** Buffer-to-buffer copies recorded (KV cache writes, row slices, readback staging). */
  copies: number;
  /** queue.submit() calls. */
  submits: number;
  /** Host-to-GPU bytes written at submits (uniforms, token ids, positions, fromHost). */
  bytesUploaded: number;
  /** Buffers mapped back to the host, and their bytes. */
  readbacks: number;
  bytesRead: number;
  /** Host milliseconds recording commands (bind groups, pass encoding, copies). */
  encodeMs: number;
  /** Host milliseconds submitting (upload writes, encoder finish, queue.submit). */
  submitMs: number;
}

function zeroStats(): GpuStats {
  return { dispatches: 0, copies: 0, submits: 0, bytesUploaded: 0, readbacks: 0, bytesRead: 0, encodeMs: 0, submitMs: 0 };
}

export interface ContextLimits {
  /** Largest storage binding in bytes (the adapter's). */
  maxBinding: number;
  /** Largest weight part in bytes: maxBinding, or lower when asked (tests force splitting). */
  weightBinding: number;
  maxBufferSize: number;
  uniformAlign: number;
  storageAlign: number;
}

export interface Binding {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

/** A compiled entry point of a kernel file under a define set: what `params` and `dispatch` take. */
export interface Kernel<F extends KernelFile = KernelFile> {
  readonly file: F;
  readonly entry: string;
  /** Every define of the module (the context's global ones included). */
  readonly defines: readonly string[];
  readonly pipeline: GPUComputePipeline;
  /** Its uniform fields and bindings, resolved once when compiled (params and dispatch use it). */
  readonly layout: ResolvedLayout;
}

/** A dispatch's buffers by the WGSL variable names of `F` (shaders.generated.ts KernelBindings). */
export type Bindings<F extends KernelFile> = Partial<Record<KernelBindings[F], Binding | GPUBuffer>>;

interface Chunk {
  buffer: GPUBuffer;
  host: Uint8Array;
  used: number;
  dedicated: boolean;
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Pool size class: at least 256 bytes, rounded up to a quarter octave. */
function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return roundUp(bytes, step);
}

export class GpuContext {
  /** The first uncaptured GPU error, reported at the next flush / read. */
  private error: string | undefined;
  /** Why the device was lost, once it was. */
  lost: string | undefined;
  private encoder: GPUCommandEncoder | undefined;
  private pass: GPUComputePassEncoder | undefined;
  private batchDispatches = 0;
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, Kernel>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private readonly readPool = new Map<number, GPUBuffer[]>();
  private readonly chunks: Chunk[] = [];
  private readonly freeChunks: Chunk[] = [];
  private readonly destroyAfterSubmit: GPUBuffer[] = [];
  private dummyBuffer: GPUBuffer | undefined;
  /** constUniform's buffers by content, in least-recently-used order. */
  private readonly constUniforms = new Map<string, GPUBuffer>();
  /** Overhead counters since creation or the last resetStats() (tests and the bench). */
  stats: GpuStats = zeroStats();
  /** Bytes of activation buffers waiting in the pool. */
  pooledBytes = 0;
  private destroyed = false;

  constructor(
    readonly device: GPUDevice,
    readonly limits: ContextLimits,
    /** WGSL defines every module gets (e.g. DOT4). */
    private readonly globalDefines: readonly string[],
  ) {
    device.addEventListener('uncapturederror', (e) => {
      const err = (e as GPUUncapturedErrorEvent).error;
      const kind = err.constructor?.name ?? 'GPUError';
      this.error ??= `${kind}: ${err.message}`;
      // Out of memory leaves the device usable in principle, but the work that hit it is lost:
      // treated like a lost device, so models fall back to the CPU (CausalLM.generate).
      if (kind === 'GPUOutOfMemoryError') this.markLost('out-of-memory', err.message);
    });
    void device.lost.then((info) => this.markLost(info.reason ?? 'unknown', info.message));
  }

  /** Called once when the device is lost or out of memory (not after our own destroy()). */
  onLost: ((info: { reason: string; message: string }) => void) | undefined;

  private markLost(reason: string, message: string): void {
    if (this.lost !== undefined || this.destroyed) return;
    this.lost = `${reason}: ${message}`;
    this.onLost?.({ reason, message });
  }

  /** Throws when the device is lost or reported an error. */
  check(): void {
    if (this.destroyed) throw new LowbitError('DEVICE_LOST', 'the WebGPU backend was disposed');
    if (this.lost !== undefined) throw new LowbitError('DEVICE_LOST', `the WebGPU device was lost (${this.lost})`);
    if (this.error !== undefined) {
      const e = this.error;
      this.error = undefined;
      throw new LowbitError('GPU_ERROR', `WebGPU reported: ${e}`);
    }
  }

  // --- pipelines

  /** The entry point `entry` of shaders/`file` with `defines` (and the global ones), compiled once. */
  pipeline<F extends KernelFile>(file: F, entry: KernelEntries[F], defines: readonly string[] = []): Kernel<F> {
    const all = [...new Set([...this.globalDefines, ...defines])].sort();
    const key = `${file}|${entry}|${all.join(',')}`;
    let p = this.pipelines.get(key) as Kernel<F> | undefined;
    if (p === undefined) {
      const mkey = `${file}|${all.join(',')}`;
      let module = this.modules.get(mkey);
      if (module === undefined) {
        // Tint (Dawn, Chrome) wants the enable directive for subgroup builtins; naga does not
        // (shaders/README.md), so the host adds it rather than the shader file.
        let code: string;
        try {
          code = (all.includes('SUBGROUPS') ? 'enable subgroups;\n' : '') + preprocess(file, SHADER_SOURCES, new Set(all));
        } catch (e) {
          if (e instanceof WgslPreprocessError) throw new LowbitError('INTERNAL', e.message);
          throw e;
        }
        module = this.device.createShaderModule({ label: `${file} [${all.join(' ')}]`, code });
        this.modules.set(mkey, module);
      }
      const pipeline = this.device.createComputePipeline({ label: `${file}:${entry}`, layout: 'auto', compute: { module, entryPoint: entry } });
      p = { file, entry, defines: all, pipeline, layout: kernelLayout(file, all) };
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Compiles every listed pipeline and throws GPU_ERROR with the compiler's messages if one fails. */
  async compileCheck(list: readonly [KernelFile, string, readonly string[]][]): Promise<void> {
    this.device.pushErrorScope('validation');
    for (const [f, e, d] of list) this.pipeline(f, e as KernelEntries[KernelFile], d);
    const err = await this.device.popErrorScope();
    if (err) throw new LowbitError('GPU_ERROR', `WGSL pipeline creation failed: ${err.message}`);
  }

  // --- buffers

  /** A device buffer of its own (weights, caches); zero-filled by WebGPU. */
  createBuffer(bytes: number, label: string, usage: number = STORAGE_USAGE): GPUBuffer {
    const size = roundUp(Math.max(bytes, 4), 4);
    if (size > this.limits.maxBufferSize) throw new LowbitError('INVALID_ARGUMENT', `${label}: ${size} bytes exceed the adapter's maxBufferSize (${this.limits.maxBufferSize})`);
    return this.device.createBuffer({ label, size, usage });
  }

  /** A new buffer holding `data` (written now: nothing recorded can reference a new buffer). */
  upload(data: ArrayBufferView, label: string): GPUBuffer {
    this.check();
    const buf = this.createBuffer(data.byteLength, label);
    writeAligned(this.device, buf, data);
    return buf;
  }

  /** A 16-byte buffer bound where a shader declares a binding the op does not use. */
  get dummy(): GPUBuffer {
    this.dummyBuffer ??= this.createBuffer(16, 'dummy');
    return this.dummyBuffer;
  }

  /** A pooled storage buffer of at least `bytes`. */
  acquire(bytes: number): GPUBuffer {
    this.check();
    if (bytes > this.limits.maxBinding) {
      throw new LowbitError('INVALID_ARGUMENT', `an activation of ${bytes} bytes exceeds this adapter's storage binding limit (${this.limits.maxBinding} bytes); use fewer tokens per call`);
    }
    const cls = sizeClass(bytes);
    const free = this.pool.get(cls);
    const b = free?.pop();
    if (b !== undefined) {
      this.pooledBytes -= cls;
      return b;
    }
    return this.device.createBuffer({ label: 'activation', size: cls, usage: STORAGE_USAGE });
  }

  /** Returns a buffer from acquire() to the pool (see the file comment on why this is safe). */
  release(buf: GPUBuffer): void {
    const cls = buf.size;
    let free = this.pool.get(cls);
    if (free === undefined) this.pool.set(cls, (free = []));
    free.push(buf);
    this.pooledBytes += cls;
  }

  /** Destroys a buffer once recorded work no longer needs it (after the next submit). */
  destroyLater(buf: GPUBuffer): void {
    if (this.encoder === undefined) buf.destroy();
    else this.destroyAfterSubmit.push(buf);
  }

  // --- host data for the current batch

  private chunkFor(bytes: number, align: number): { chunk: Chunk; offset: number } {
    const cur = this.chunks.at(-1);
    if (cur !== undefined && !cur.dedicated) {
      const offset = roundUp(cur.used, align);
      if (offset + bytes <= cur.host.byteLength) return { chunk: cur, offset };
    }
    let chunk: Chunk;
    if (bytes > CHUNK_BYTES) {
      const size = roundUp(bytes, 4);
      chunk = { buffer: this.createBuffer(size, 'upload', USAGE.UNIFORM | STORAGE_USAGE), host: new Uint8Array(size), used: 0, dedicated: true };
    } else {
      chunk = this.freeChunks.pop() ?? { buffer: this.createBuffer(CHUNK_BYTES, 'upload', USAGE.UNIFORM | STORAGE_USAGE), host: new Uint8Array(CHUNK_BYTES), used: 0, dedicated: false };
    }
    this.chunks.push(chunk);
    return { chunk, offset: 0 };
  }

  /** Host bytes for this batch, bindable as uniform or storage; written at submit. */
  stage(data: ArrayBufferView, uniform: boolean): Required<Binding> {
    const bytes = data.byteLength;
    const size = roundUp(Math.max(bytes, 4), 4);
    const { chunk, offset } = this.chunkFor(size, uniform ? this.limits.uniformAlign : this.limits.storageAlign);
    chunk.host.set(new Uint8Array(data.buffer, data.byteOffset, bytes), offset);
    chunk.host.fill(0, offset + bytes, offset + size);
    chunk.used = offset + size;
    this.ensureEncoder();
    return { buffer: chunk.buffer, offset, size };
  }

  /**
   * `k`'s uniform block from its fields by name (the WGSL struct's, read at build time:
   * layout.ts); a field missing or unknown is an INTERNAL error here. Bind it with `uniform`
   * (changes every call) or `constUniform` (recurs).
   */
  params<F extends KernelFile>(k: Kernel<F>, values: KernelParams[F]): ArrayBuffer {
    return packResolved(k.layout, values);
  }

  /** A uniform block (from `params`) staged for this batch. */
  uniform(words: ArrayBuffer): Required<Binding> {
    return this.stage(new Uint8Array(words), true);
  }

  /**
   * A uniform block whose content recurs from one decode step to the next (a layer's sizes and
   * code table, a norm's eps): one buffer per distinct content, written once when first asked
   * for (safe: nothing recorded can use a new buffer), so a decode step uploads only what changes
   * (positions, ids, the attention's start). Keeps the MAX_CONST_UNIFORMS most recently used.
   */
  constUniform(words: ArrayBuffer): Required<Binding> {
    this.check();
    const key = new Uint32Array(words).join(',');
    let buf = this.constUniforms.get(key);
    if (buf === undefined) {
      if (this.constUniforms.size >= MAX_CONST_UNIFORMS) {
        const [oldest, old] = this.constUniforms.entries().next().value as [string, GPUBuffer];
        this.constUniforms.delete(oldest);
        this.destroyLater(old);
      }
      buf = this.createBuffer(words.byteLength, 'uniform', USAGE.UNIFORM | USAGE.COPY_DST);
      writeAligned(this.device, buf, new Uint8Array(words));
      this.stats.bytesUploaded += words.byteLength;
    } else {
      this.constUniforms.delete(key); // re-inserted last: most recently used
    }
    this.constUniforms.set(key, buf);
    return { buffer: buf, offset: 0, size: words.byteLength };
  }

  // --- recording

  private ensureEncoder(): GPUCommandEncoder {
    this.check();
    this.encoder ??= this.device.createCommandEncoder({ label: 'lowbit batch' });
    return this.encoder;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = undefined;
  }

  /** Zeroes the overhead counters (returns the ones it replaced). */
  resetStats(): GpuStats {
    const old = this.stats;
    this.stats = zeroStats();
    return old;
  }

  /**
   * Records one dispatch of `k`; `bindings` maps its WGSL variable names (group 0) to buffers:
   * exactly those the entry point uses, else an INTERNAL error here (layout.ts).
   */
  dispatch<F extends KernelFile>(k: Kernel<F>, bindings: Bindings<F>, x: number, y = 1, z = 1): void {
    const t0 = performance.now();
    const entries: GPUBindGroupEntry[] = bindResolved(k.layout, k.entry, bindings as Record<string, Binding | GPUBuffer | undefined>).map(({ binding, resource: b }) => ({
      binding,
      resource: 'buffer' in b ? b : { buffer: b },
    }));
    const enc = this.ensureEncoder();
    const pipeline = k.pipeline;
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    this.pass ??= enc.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(x, y, z);
    this.stats.dispatches++;
    this.stats.encodeMs += performance.now() - t0;
    if (++this.batchDispatches >= MAX_BATCH_DISPATCHES) this.flush();
  }

  /** Workgroup grid for `groups` workgroups along one logical axis (x, then y). */
  grid(groups: number): [number, number] {
    if (groups <= MAX_GROUPS) return [Math.max(groups, 1), 1];
    const y = Math.ceil(groups / MAX_GROUPS);
    if (y > MAX_GROUPS) throw new LowbitError('INVALID_ARGUMENT', `${groups} workgroups exceed the dispatch limit`);
    return [Math.ceil(groups / y), y];
  }

  /** Records a buffer-to-buffer copy (sizes and offsets multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    const t0 = performance.now();
    const enc = this.ensureEncoder();
    this.endPass();
    enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
    this.stats.copies++;
    this.stats.encodeMs += performance.now() - t0;
  }

  /** Submits the recorded batch (uploads first). */
  flush(): void {
    this.check();
    const enc = this.encoder;
    if (enc === undefined) return;
    const t0 = performance.now();
    this.endPass();
    for (const c of this.chunks) {
      if (c.used === 0) continue;
      this.device.queue.writeBuffer(c.buffer, 0, c.host.buffer, c.host.byteOffset, roundUp(c.used, 4));
      this.stats.bytesUploaded += roundUp(c.used, 4);
    }
    this.device.queue.submit([enc.finish()]);
    this.stats.submits++;
    this.stats.submitMs += performance.now() - t0;
    this.encoder = undefined;
    this.batchDispatches = 0;
    for (const c of this.chunks.splice(0)) {
      c.used = 0;
      if (c.dedicated) c.buffer.destroy();
      else this.freeChunks.push(c);
    }
    for (const b of this.destroyAfterSubmit.splice(0)) b.destroy();
  }

  /** Copies `size` bytes of `src` back to the host (submits the batch). */
  async readBuffer(src: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    const cls = sizeClass(size);
    const staging = this.readPool.get(cls)?.pop() ?? this.device.createBuffer({ label: 'readback', size: cls, usage: USAGE.MAP_READ | USAGE.COPY_DST });
    this.copy(src, offset, staging, 0, roundUp(size, 4));
    this.flush();
    try {
      await staging.mapAsync(MAP_READ_MODE, 0, roundUp(size, 4));
    } catch (e) {
      this.check();
      throw new LowbitError('GPU_ERROR', `reading back from the GPU failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const out = staging.getMappedRange(0, roundUp(size, 4)).slice(0, size);
    staging.unmap();
    this.stats.readbacks++;
    this.stats.bytesRead += size;
    let free = this.readPool.get(cls);
    if (free === undefined) this.readPool.set(cls, (free = []));
    free.push(staging);
    this.check();
    return out;
  }

  /** Waits until the GPU has finished everything submitted so far. */
  async idle(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.encoder = undefined;
    this.pass = undefined;
    this.device.destroy();
  }
}

/** queue.writeBuffer of any byte length (the API wants multiples of 4: pad a copy). */
export function writeAligned(device: GPUDevice, buf: GPUBuffer, data: ArrayBufferView, offset = 0): void {
  const bytes = data.byteLength;
  if (bytes === 0) return;
  if (bytes % 4 === 0 && data.byteOffset % 4 === 0) {
    device.queue.writeBuffer(buf, offset, data.buffer, data.byteOffset, bytes);
    return;
  }
  const padded = new Uint8Array(roundUp(bytes, 4));
  padded.set(new Uint8Array(data.buffer, data.byteOffset, bytes));
  device.queue.writeBuffer(buf, offset, padded.buffer, 0, padded.byteLength);
}
