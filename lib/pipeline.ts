/**
 * The public pipelines: {@link StableDiffusionPipeline} (text → image) and
 * {@link StableDiffusionImg2ImgPipeline} (image + text → image), modelled on diffusers'
 * `StableDiffusionPipeline.__call__` / `StableDiffusionImg2ImgPipeline.__call__`
 * (pipeline_stable_diffusion.py, pipeline_stable_diffusion_img2img.py, v0.30.3).
 *
 * Division of work: this file validates options, tokenizes prompts (CLIPTokenizer in TS),
 * decodes input images, queues calls and turns results into {@link GeneratedImage}s; the native
 * pipeline encodes prompts, draws the latents from the seed, denoises and decodes.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { addon } from './native.js';
import {
  AbortError, BadCheckpointError, BadConfigError, DeviceUnavailableError, DisposedError, InternalError, InvalidArgumentError, ModelNotFoundError, NativeLoadError,
  UnsupportedModelError, native, nativeSync, toSdError,
} from './errors.js';
import {
  SUPPORTED_SCHEDULERS, describeValue, finishGenerateOptions, parseGenerateOptions, parseLoadOptions,
  type GenerateOptions, type Img2ImgOptions, type LatentsInput, type LoadOptions, type ResolvedGenerateOptions,
  type SchedulerName, type StepProgress, type ImageInput,
} from './options.js';
import { GeneratedImage, loadInputImage, samplerName, type DecodedImage, type GenerationParameters } from './image.js';
import { CLIPTokenizer } from './tokenizer.js';
import {
  adapterState, checkLoraArgs, loadLora, loadTextualInversion, maybeConvertPrompt, recordSetAdapters, withLoraTags,
  type TextEncoderName,
  type LoadTextualInversionOptions, type LoadLoraOptions, type LoraLoadResult,
} from './lora.js';
import { weightedTokens } from './prompt-weighting.js';
import type {
  NativeGenerateRequest, NativeGenerateResult, NativeHandle, NativeOptimizations, NativePipelineInfo, TensorData,
} from '../types/native.js';

// =============================================================================================
// Public types
// =============================================================================================

/** What a loaded pipeline is made of (from the native loader). */
export interface PipelineInfo extends NativePipelineInfo {
  /** Default image width in pixels: `sampleSize × vaeScaleFactor` (512 for SD 1.5, 768 for SD 2.1-v, 1024 for SDXL). */
  defaultWidth: number;
  /** Default image height in pixels (as `defaultWidth`). */
  defaultHeight: number;
}

/** The scheduler a pipeline runs with. */
export interface SchedulerInfo {
  /** diffusers class name, e.g. 'EulerAncestralDiscreteScheduler'. */
  name: string;
  /** The model's scheduler_config.json merged with every override given since load (snake_case keys). */
  config: Record<string, unknown>;
  /** AUTOMATIC1111's name for it, e.g. 'Euler a', 'DPM++ 2M Karras'. */
  samplerName: string;
}

/** Milliseconds spent in each phase of a call. */
export interface GenerateTimings {
  /** Waiting for earlier calls on the same pipeline. */
  queueMs: number;
  /** Tokenizing the prompts (JS). */
  tokenizeMs: number;
  /** Text encoders (native). */
  encodeMs: number;
  /** Denoising loop (native; img2img includes the VAE encode). */
  denoiseMs: number;
  /** VAE decode (native). */
  decodeMs: number;
  /** Native total. */
  totalMs: number;
  /** From the `generate()` call to its result, measured in JS. */
  wallMs: number;
}

/** What `generate` resolves to. */
export interface GenerateResult {
  /** `numPrompts × numImagesPerPrompt` images in diffusers' order (p0, p0, p1, p1, …); empty when `outputType` is 'latent'. */
  images: GeneratedImage[];
  /** outputType 'latent': the final latents `[batch, 4, height/8, width/8]` float32 (not yet divided by the VAE scaling factor). */
  latents?: LatentsInput;
  /** The initial latents the seed produced, `[batch, 4, height/8, width/8]` float32 (before `init_noise_sigma` scaling; txt2img). */
  initialLatents?: LatentsInput;
  /** The generator seed of the call (random when not given). */
  seed: number;
  /**
   * The seed behind each image (`seeds[i]` for `images[i]`): all equal to `seed`, since one CPU
   * generator draws the whole batch as in diffusers — image i is reproduced by re-running the
   * same call with that seed.
   */
  seeds: number[];
  /** The scheduler timesteps that were run. */
  timesteps: number[];
  timings: GenerateTimings;
}

/** A scheduler class name and its config. */
interface Scheduler { name: string; config: Record<string, unknown> }

// =============================================================================================
// Shared native model: one handle, one call queue, reference-counted (fromPipeline shares it)
// =============================================================================================

/** @internal One native pipeline handle (SD or SDXL), its call queue and references. */
export class NativeModel {
  private refs = 1;
  private tail: Promise<unknown> = Promise.resolve();
  private released = false;
  /** Calls accepted and not finished. */
  pending = 0;
  /** The speed/memory toggles (shared by pipelines sharing this model); snapshotted per call. */
  optimizations: NativeOptimizations = {
    sliceSize: 0, sdpa: 'auto', vaeSlicing: false, vaeTiling: false, channelsLast: false, fp8: '', offload: '',
  };

  constructor(
    readonly handle: NativeHandle,
    readonly info: PipelineInfo,
    readonly tokenizers: CLIPTokenizer[],
    /** A StableDiffusionXLPipeline handle (pipeline_xl.cc bindings). */
    readonly xl = false,
  ) {}

  /** Runs `job` after every call queued before it; a failed call does not break the queue. */
  enqueue<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    const run = this.tail.then(job).finally(() => { this.pending--; });
    this.tail = run.catch(() => undefined);
    return run;
  }

  acquire(): this {
    this.refs++;
    return this;
  }

  /** Drops one reference; the last one frees the native pipeline once queued calls finished. */
  release(): Promise<void> {
    if (--this.refs > 0 || this.released) return Promise.resolve();
    this.released = true;
    const done = this.tail.then(() => nativeSync(() => (this.xl ? addon().disposePipelineXl(this.handle) : addon().disposePipeline(this.handle))));
    this.tail = done.catch(() => undefined);
    return done;
  }
}

const PICKLE_EXTENSIONS = new Set(['.ckpt', '.bin', '.pt', '.pth', '.pkl']);

/** @internal Loads a pipeline handle and its tokenizers; `xl` picks the SDXL native pipeline. */
export async function loadModel(
  location: string, options: LoadOptions | undefined, singleFile: boolean, xl = false,
): Promise<NativeModel> {
  // 1. arguments
  const what = singleFile ? 'file' : 'dir';
  if (typeof location !== 'string' || location.length === 0) {
    throw new InvalidArgumentError(`${what} must be a non-empty path; received ${describeValue(location)}`);
  }
  const o = parseLoadOptions(options);
  if (!singleFile && o.configDir !== undefined) {
    throw new InvalidArgumentError(`configDir is for single-file checkpoints (fromSingleFile); received ${describeValue(o.configDir)}`);
  }

  // 2. cheap checks that give clearer errors than the native loader could
  const st = await stat(location).catch(() => undefined);
  if (!st) throw new ModelNotFoundError(`model ${singleFile ? 'file' : 'folder'} not found: ${location}`);
  if (singleFile) {
    if (st.isDirectory()) {
      throw new InvalidArgumentError(`${location} is a folder; use StableDiffusionPipeline.fromPretrained for diffusers folders`);
    }
    if (PICKLE_EXTENSIONS.has(path.extname(location).toLowerCase())) {
      throw new BadCheckpointError(
        `${location}: pickle checkpoints (.ckpt/.bin/.pt) are refused because loading them can run code; convert it to .safetensors`);
    }
  } else if (!st.isDirectory()) {
    throw new InvalidArgumentError(`${location} is a file; use fromSingleFile for single-file checkpoints`);
  }

  // 3. native load, then tokenizers
  const a = addon();
  if (typeof (xl ? a.loadPipelineXl : a.loadPipeline) !== 'function') {
    throw new NativeLoadError('this build of the sd-native addon has no pipelines (loadPipeline is missing); rebuild it with `npx cmake-js compile`');
  }
  const handle = await native(() => (xl ? a.loadPipelineXl : a.loadPipeline)(path.resolve(location), {
    device: o.device, dtype: o.dtype, variant: o.variant, singleFile,
    configDir: o.configDir === undefined ? undefined : path.resolve(o.configDir), threads: o.threads,
  }));
  try {
    const raw = nativeSync(() => (xl ? a.pipelineXlInfo(handle) : a.pipelineInfo(handle)));
    const info: PipelineInfo = {
      ...raw,
      defaultWidth: raw.sampleSize * raw.vaeScaleFactor,
      defaultHeight: raw.sampleSize * raw.vaeScaleFactor,
    };
    if (info.tokenizerDirs.length === 0) {
      throw new BadConfigError(`${location}: the model has no tokenizer folder${singleFile ? ' (pass configDir: a diffusers folder of the same family)' : ''}`);
    }
    if (info.family === 'sdxl' && info.tokenizerDirs.length < 1) {
      throw new BadConfigError(`${location}: an SDXL model needs tokenizer_2 (and tokenizer with text_encoder)`);
    }
    const tokenizers = await Promise.all(info.tokenizerDirs.map((d) => CLIPTokenizer.fromPretrained(d)));
    return new NativeModel(handle, info, tokenizers, xl);
  } catch (e) {
    try { if (xl) a.disposePipelineXl(handle); else a.disposePipeline(handle); } catch { /* already failing */ }
    throw toSdError(e);
  }
}

// =============================================================================================
// Helpers
// =============================================================================================

function tokenize(tok: CLIPTokenizer, texts: string[], field: string): TensorData<BigInt64Array> {
  let rows: number[][];
  try {
    rows = texts.map((t) => tok.encode(t));
  } catch (e) {
    throw toSdError(e);
  }
  const len = rows[0].length;
  const data = new BigInt64Array(texts.length * len);
  rows.forEach((ids, i) => {
    if (ids.length !== len) throw new InvalidArgumentError(`${field}[${i}] tokenized to ${ids.length} ids, not ${len}`);
    for (let j = 0; j < len; j++) data[i * len + j] = BigInt(ids[j]);
    // diffusers warns when CLIP truncates a prompt; so do we (once per prompt).
    const full = tok.encode(texts[i], { padding: false, truncation: false }).length;
    if (full > len) {
      process.emitWarning(`${field}${texts.length > 1 ? `[${i}]` : ''} has ${full} tokens; CLIP keeps the first ${len} (the rest is ignored)`,
        { code: 'SD_PROMPT_TRUNCATED' });
    }
  });
  return { data, shape: [texts.length, len] };
}

/** @internal */
export function abortError(signal: AbortSignal): AbortError {
  const r: unknown = signal.reason;
  const why = r instanceof Error ? `: ${r.message}` : typeof r === 'string' ? `: ${r}` : '';
  return new AbortError(`generate was aborted${why}`, r === undefined ? undefined : { cause: r });
}

function toLatents(t: TensorData | undefined): LatentsInput | undefined {
  return t ? { data: t.data, shape: [...t.shape] } : undefined;
}

function modelName(modelPath: string): string {
  const base = path.basename(modelPath.replace(/[\\/]+$/, ''));
  return base.replace(/\.(safetensors|ckpt)$/i, '');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
}

// =============================================================================================
// Base class
// =============================================================================================

/** What the two pipelines share: loading, scheduler, queue, disposal. Not constructed directly. */
export abstract class PipelineBase {
  /** @internal */
  protected readonly model: NativeModel;
  private disposed = false;
  private disposing: Promise<void> | undefined;
  private schedulerName: string;
  private schedulerConfig: Record<string, unknown>;

  /** @internal */
  protected constructor(model: NativeModel, scheduler?: { name: string; config: Record<string, unknown> }) {
    this.model = model;
    this.schedulerName = scheduler?.name ?? model.info.schedulerName;
    this.schedulerConfig = structuredClone(scheduler?.config ?? model.info.schedulerConfig);
  }

  /**
   * The loaded model: family ('sd1' | 'sd2' | 'sdxl'), components with their classes, dtypes and
   * parameter counts, device, default size, tokenizer folders, the model's own scheduler.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}.
   */
  get info(): PipelineInfo {
    this.checkAlive('info');
    const info = structuredClone(this.model.info);
    const a = addon();
    // bytes held now (fp8 storage, from the first call after enableFp8Storage)
    if (typeof a.pipelineComponents === 'function') {
      info.components = nativeSync(() => a.pipelineComponents(this.model.handle));
    }
    return info;
  }

  /**
   * The scheduler `generate` runs with: its diffusers class name, config and A1111 sampler name.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}.
   */
  get scheduler(): SchedulerInfo {
    this.checkAlive('scheduler');
    return {
      name: this.schedulerName,
      config: structuredClone(this.schedulerConfig),
      samplerName: samplerName(this.schedulerName, this.schedulerConfig),
    };
  }

  /** Number of `generate` calls accepted and not yet finished (running or queued) on this pipeline's native model, including those of pipelines sharing it through `fromPipeline`. */
  get pendingCalls(): number {
    return this.model.pending;
  }

  /**
   * Switches the scheduler, like diffusers'
   * `pipe.scheduler = Cls.from_config(pipe.scheduler.config, **overrides)`: the current config
   * (the model's scheduler_config.json plus earlier overrides) merged with `overrides`; keys the
   * new class does not know are ignored, missing ones take that class's defaults.
   * Affects calls made after it (queued calls keep the scheduler they were made with).
   * @param name - a diffusers class name: DDIMScheduler, PNDMScheduler, LMSDiscreteScheduler,
   *   EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler,
   *   HeunDiscreteScheduler, UniPCMultistepScheduler, LCMScheduler
   * @param overrides - scheduler config keys in their own snake_case spelling, e.g.
   *   `{ use_karras_sigmas: true, algorithm_type: 'dpmsolver++' }` or `{ timestep_spacing: 'trailing' }`
   * @returns this pipeline
   * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for another name (the message lists the supported ones).
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `overrides` is not a plain object of
   *   JSON values with snake_case keys.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}.
   * @example
   * pipe.setScheduler('DPMSolverMultistepScheduler', { use_karras_sigmas: true }); // "DPM++ 2M Karras"
   */
  setScheduler(name: SchedulerName | string, overrides: Record<string, unknown> = {}): this {
    this.checkAlive('setScheduler');
    if (!(SUPPORTED_SCHEDULERS as readonly string[]).includes(name)) {
      throw new UnsupportedModelError(
        `scheduler ${describeValue(name)} is not supported; supported schedulers: ${SUPPORTED_SCHEDULERS.join(', ')}`);
    }
    if (!isPlainObject(overrides)) {
      throw new InvalidArgumentError(`scheduler overrides must be a plain object; received ${describeValue(overrides)}`);
    }
    for (const [k, v] of Object.entries(overrides)) {
      if (!/^[a-z][a-z0-9_]*$/.test(k)) {
        const snake = k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
        throw new InvalidArgumentError(
          `scheduler override keys are the scheduler config's snake_case names (e.g. ${snake}); received ${describeValue(k)}`);
      }
      let json: string | undefined;
      try { json = JSON.stringify(v); } catch { json = undefined; }
      if (v === undefined || json === undefined || (typeof v === 'number' && !Number.isFinite(v) && v !== -Infinity)) {
        throw new InvalidArgumentError(`scheduler override ${k} must be a JSON value; received ${describeValue(v)}`);
      }
    }
    this.schedulerConfig = { ...this.schedulerConfig, ...structuredClone(overrides), _class_name: name };
    this.schedulerName = name;
    return this;
  }

  // ---------------------------------------------------------------------------------------------
  // Speed/memory toggles (diffusers' enable_* / disable_* methods). Each applies to calls made
  // after it (calls already queued keep the settings they were made with) and may be changed
  // between calls; the settings belong to the native model, so pipelines sharing it through
  // fromPipeline share them. The work a toggle implies (fp8 rounding, channels-last layout,
  // moving weights) happens at the start of the next generate on the worker thread.
  // ---------------------------------------------------------------------------------------------

  /** The toggles in effect for the next call (a copy). */
  get optimizations(): Readonly<NativeOptimizations> {
    this.checkAlive('optimizations');
    return { ...this.model.optimizations };
  }

  /**
   * Sliced attention (diffusers `enable_attention_slicing`): attention scores are computed a
   * few heads at a time instead of all at once. Same result (float32 round-off), lower peak
   * memory for large images, somewhat slower. Takes precedence over memory-efficient attention.
   * @param sliceSize - 'auto' (default: half the heads of each layer), 'max' (one head at a time)
   *   or a positive integer: batch·heads rows per slice
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for another value.
   */
  enableAttentionSlicing(sliceSize: 'auto' | 'max' | number = 'auto'): this {
    this.checkAlive('enableAttentionSlicing');
    if (!(sliceSize === 'auto' || sliceSize === 'max' || (Number.isInteger(sliceSize) && (sliceSize as number) > 0))) {
      throw new InvalidArgumentError(`sliceSize must be 'auto', 'max' or a positive integer; received ${describeValue(sliceSize)}`);
    }
    return this.toggle({ sliceSize });
  }

  /** Back to unsliced attention (diffusers `disable_attention_slicing`). */
  disableAttentionSlicing(): this {
    this.checkAlive('disableAttentionSlicing');
    return this.toggle({ sliceSize: 0 });
  }

  /**
   * Memory-efficient attention (diffusers `enable_xformers_memory_efficient_attention` /
   * `AttnProcessor2_0`): `scaled_dot_product_attention`, whose flash / memory-efficient kernels
   * never materialise the N×N score matrix. Same result within float round-off. Ignored while
   * attention slicing is on.
   *
   * Without this call attention is `'auto'`: on libtorch ≥ 2.0 SDPA runs wherever it is the
   * faster kernel — always on CUDA (as diffusers' default `AttnProcessor2_0`), on the CPU in
   * float32 — and the math path elsewhere (CPU bfloat16/float16, where libtorch 2.6's SDPA
   * measured 1.27× slower; libtorch 1.13). This call forces SDPA everywhere;
   * {@link disableMemoryEfficientAttention} returns to `'auto'`, and {@link setAttentionBackend}
   * chooses any of the three.
   * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) when the addon's libtorch is older than 2.0.
   */
  enableMemoryEfficientAttention(): this {
    this.checkAlive('enableMemoryEfficientAttention');
    const b = nativeSync(() => addon().buildInfo());
    if (!b.sdpa) {
      throw new UnsupportedModelError(`enableMemoryEfficientAttention needs scaled_dot_product_attention (libtorch >= 2.0); ` +
        `this build uses libtorch ${b.libtorchVersion}. Use enableAttentionSlicing() to bound attention memory instead`);
    }
    return this.toggle({ sdpa: true });
  }

  /**
   * Back to the default attention, `'auto'` (diffusers `disable_xformers_memory_efficient_attention`,
   * which restores the default processor): see {@link enableMemoryEfficientAttention}. To force
   * the math path use `setAttentionBackend('math')`.
   */
  disableMemoryEfficientAttention(): this {
    this.checkAlive('disableMemoryEfficientAttention');
    return this.toggle({ sdpa: 'auto' });
  }

  /**
   * Chooses the attention kernel (diffusers `unet.set_attn_processor(...)`):
   * - `'auto'` (default; diffusers `set_default_attn_processor` on torch ≥ 2): SDPA where it is
   *   the faster kernel — CUDA always, the CPU in float32 — and the math path elsewhere;
   * - `'sdpa'`: `scaled_dot_product_attention` wherever libtorch has it (`AttnProcessor2_0`);
   * - `'math'`: scores, softmax in float32, weighted sum (`AttnProcessor`).
   * Attention slicing, when enabled, takes precedence over all three.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for another value;
   *   UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for `'sdpa'` on libtorch < 2.0.
   */
  setAttentionBackend(backend: 'auto' | 'sdpa' | 'math'): this {
    this.checkAlive('setAttentionBackend');
    if (backend === 'sdpa') return this.enableMemoryEfficientAttention();
    if (backend !== 'auto' && backend !== 'math') {
      throw new InvalidArgumentError(`attention backend must be 'auto', 'sdpa' or 'math'; received ${describeValue(backend)}`);
    }
    return this.toggle({ sdpa: backend === 'auto' ? 'auto' : false });
  }

  /**
   * VAE slicing (diffusers `enable_vae_slicing`): a batch of latents is decoded (and encoded)
   * one image at a time. Identical images, peak VAE memory of a batch of one.
   */
  enableVaeSlicing(): this {
    this.checkAlive('enableVaeSlicing');
    return this.toggle({ vaeSlicing: true });
  }

  disableVaeSlicing(): this {
    this.checkAlive('disableVaeSlicing');
    return this.toggle({ vaeSlicing: false });
  }

  /**
   * VAE tiling (diffusers `enable_vae_tiling`): images larger than the VAE's sample_size are
   * decoded and encoded in overlapping tiles (overlap 1/4) blended linearly, so very large images
   * decode in bounded memory. Not bit-identical: each tile's GroupNorm sees only its tile, so
   * tiles differ slightly from the whole-image decode (small, smooth differences, no seams).
   */
  enableVaeTiling(): this {
    this.checkAlive('enableVaeTiling');
    return this.toggle({ vaeTiling: true });
  }

  disableVaeTiling(): this {
    this.checkAlive('disableVaeTiling');
    return this.toggle({ vaeTiling: false });
  }

  /**
   * channels_last memory format for the UNet and VAE (`unet.to(memory_format=torch.channels_last)`):
   * 4-d weights and the activations entering the models are laid out NHWC, which many GPU and
   * oneDNN convolution kernels prefer. Same result within float round-off; the speed-up depends
   * on the device (often none on CPU).
   */
  enableChannelsLast(): this {
    this.checkAlive('enableChannelsLast');
    return this.toggle({ channelsLast: true });
  }

  disableChannelsLast(): this {
    this.checkAlive('disableChannelsLast');
    return this.toggle({ channelsLast: false });
  }

  /**
   * 8-bit weight storage for the UNet (AUTOMATIC1111's "FP8 weight"): every UNet weight with
   * two or more dimensions (Linear and Conv kernels, ≈ all UNet parameters) is rounded to an
   * 8-bit float and stored in 1 byte instead of 4 (float32) or 2; each layer decodes its weight
   * to the compute dtype when it runs. Norms and biases stay. Trade: ~¼ of the float32 UNet
   * weight memory (½ of float16) for a small decode cost per layer and the rounding error of
   * the weights (relative 2⁻⁴ for e4m3fn, 2⁻³ for e5m2): images change slightly.
   * Where libtorch has no float8 dtype (< 2.1) the 8-bit codes are kept as bytes and decoded by
   * sd-native. The float weights are not kept: {@link disableFp8Storage} re-reads them from the
   * model file.
   * @param options - `format`: 'e4m3fn' (default: 3 mantissa bits, range ±448) or 'e5m2'
   *   (2 mantissa bits, range ±57344)
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for another format.
   */
  enableFp8Storage(options: { format?: 'e4m3fn' | 'e5m2' } = {}): this {
    this.checkAlive('enableFp8Storage');
    const format = options?.format ?? 'e4m3fn';
    if (format !== 'e4m3fn' && format !== 'e5m2') {
      throw new InvalidArgumentError(`fp8 format must be 'e4m3fn' or 'e5m2'; received ${describeValue(format)}`);
    }
    return this.toggle({ fp8: format });
  }

  /** Back to full-precision UNet weights, re-read from the model file at the next call. */
  disableFp8Storage(): this {
    this.checkAlive('disableFp8Storage');
    return this.toggle({ fp8: '' });
  }

  /**
   * Model CPU offload (diffusers `enable_model_cpu_offload`, CUDA only): weights wait in pinned
   * host memory and each model (text encoder, UNet, VAE) moves to the GPU as a whole while it
   * runs. Peak GPU memory ≈ the largest model plus activations, at the cost of one host→device
   * copy of each model per call.
   * @throws DeviceUnavailableError (`E_DEVICE_UNAVAILABLE`) on a pipeline that is not on a CUDA device.
   */
  enableModelCpuOffload(): this {
    this.checkAlive('enableModelCpuOffload');
    this.checkCuda('enableModelCpuOffload');
    return this.toggle({ offload: 'model' });
  }

  /**
   * Sequential CPU offload (diffusers `enable_sequential_cpu_offload`, CUDA only): UNet and VAE
   * weights stay in pinned host memory and each layer's weights are copied to the GPU when the
   * layer runs (the text encoder moves as a whole). Minimal GPU memory, much slower.
   * @throws DeviceUnavailableError (`E_DEVICE_UNAVAILABLE`) on a pipeline that is not on a CUDA device.
   */
  enableSequentialCpuOffload(): this {
    this.checkAlive('enableSequentialCpuOffload');
    this.checkCuda('enableSequentialCpuOffload');
    return this.toggle({ offload: 'sequential' });
  }

  /** Weights back on the pipeline's device for good. */
  disableCpuOffload(): this {
    this.checkAlive('disableCpuOffload');
    return this.toggle({ offload: '' });
  }

  private checkCuda(what: string): void {
    const device = this.model.info.device;
    if (!device.startsWith('cuda')) {
      throw new DeviceUnavailableError(`${what} moves weights between host memory and a CUDA GPU; this pipeline runs on ${device} ` +
        `(load it with { device: 'cuda' })`);
    }
  }

  private toggle(change: Partial<NativeOptimizations>): this {
    Object.assign(this.model.optimizations, change);
    return this;
  }

  /** @internal Hands a call's toggles to the native pipeline right before its generate. */
  private applyOptimizations(o: NativeOptimizations): void {
    const a = addon();
    if (typeof a.pipelineSetOptimizations === 'function') nativeSync(() => a.pipelineSetOptimizations(this.model.handle, o));
  }

  /**
   * Loads a LoRA (`.safetensors`, kohya-ss / AUTOMATIC1111 `lora_unet_…`/`lora_te_…` keys — SDXL:
   * `lora_te1_…` for text_encoder and `lora_te2_…` for text_encoder_2 — or diffusers / PEFT
   * `unet.…lora.down.weight`, `text_encoder_2.…`, `lora_A`/`lora_B`, `lora_linear_layer` keys; Linear,
   * 1×1 and k×k conv LoRA) into the UNet and text encoder(s), unfused: each targeted layer computes
   * `base(x) + weight·loraScale·(alpha/rank)·up(down(x))` (alpha missing ⇒ alpha = rank), so the base
   * weights are untouched and `generate({ loraScale })` changes the strength per call. diffusers:
   * `pipe.load_lora_weights(path, adapter_name=…)`. Queued behind earlier calls; shared by
   * pipelines made with `fromPipeline`.
   * @param file - the LoRA file
   * @param options - `adapterName` (default `default_<n>`), `weight` (set_adapters weight, default 1)
   * @returns the adapter name and the number of modules it targets per model
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) listing keys that match no module of this model
   *   (e.g. `lora_te2_` keys on an SD 1.x model), or naming a key and both shapes when a LoRA does not
   *   fit (made for another model family); nothing is loaded then.
   * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) when the file does not exist.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a taken adapter name or while a LoRA is fused.
   * @example await pipe.loadLoraWeights('./loras/pixel-art.safetensors', { adapterName: 'pixel', weight: 0.8 });
   */
  loadLoraWeights(file: string, options?: LoadLoraOptions): Promise<LoraLoadResult> {
    this.checkAlive('loadLoraWeights');
    const a = checkLoraArgs(file, options);
    return this.model.enqueue(async () => {
      const r = await loadLora(this.model.handle, a.file, a.adapterName, a.weight);
      adapterState(this.model).set(r.adapter, { weight: a.weight, active: true });
      return r;
    });
  }

  /**
   * diffusers `set_adapters(names, weights)`: only the named adapters stay active, each with its weight.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for an unknown name, mismatched lengths or while fused.
   */
  setAdapters(names: string | string[], weights?: number | number[]): Promise<void> {
    this.checkAlive('setAdapters');
    const n = typeof names === 'string' ? [names] : names;
    const w = weights === undefined ? n.map(() => 1) : typeof weights === 'number' ? n.map(() => weights) : weights;
    if (!Array.isArray(n) || !n.every((x) => typeof x === 'string') || !Array.isArray(w) || !w.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new InvalidArgumentError('setAdapters(names, weights): names must be strings and weights finite numbers');
    }
    if (n.length !== w.length) throw new InvalidArgumentError(`setAdapters: ${n.length} names but ${w.length} weights`);
    return this.model.enqueue(async () => {
      await native(() => addon().setLoraAdapters(this.model.handle, n, w));
      recordSetAdapters(this.model, n, w);
    });
  }

  /** Names of the loaded LoRA adapters, in load order. */
  getAdapters(): Promise<string[]> {
    this.checkAlive('getAdapters');
    return this.model.enqueue(() => native(() => addon().loraAdapters(this.model.handle)));
  }

  /**
   * diffusers `fuse_lora(lora_scale)`: merges the active adapters into the weights,
   * `W += loraScale·weight·(alpha/rank)·(up @ down)` (the base weights are kept for {@link unfuseLora}).
   * @returns the number of layers fused
   */
  fuseLora(options: { loraScale?: number } = {}): Promise<number> {
    this.checkAlive('fuseLora');
    const s = options.loraScale ?? 1;
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new InvalidArgumentError(`fuseLora: loraScale must be a finite number; received ${describeValue(s)}`);
    return this.model.enqueue(() => native(() => addon().fuseLora(this.model.handle, s)));
  }

  /** diffusers `unfuse_lora()`: restores the exact base weights of fused layers. @returns layers restored */
  unfuseLora(): Promise<number> {
    this.checkAlive('unfuseLora');
    return this.model.enqueue(() => native(() => addon().unfuseLora(this.model.handle)));
  }

  /**
   * diffusers `unload_lora_weights()` (every adapter) or `delete_adapters(name)`: removes adapters
   * (unfusing first); the pipeline then computes exactly as before loading.
   */
  unloadLoraWeights(adapterName?: string): Promise<void> {
    this.checkAlive('unloadLoraWeights');
    if (adapterName !== undefined && typeof adapterName !== 'string') {
      throw new InvalidArgumentError(`unloadLoraWeights: adapterName must be a string; received ${describeValue(adapterName)}`);
    }
    return this.model.enqueue(async () => {
      await native(() => addon().unloadLora(this.model.handle, adapterName));
      if (adapterName === undefined) adapterState(this.model).clear(); else adapterState(this.model).delete(adapterName);
    });
  }

  /**
   * diffusers `load_textual_inversion(path, token=…)`: an embedding file of n vectors adds the
   * tokens `token`, `token_1` … `token_{n−1}` to the tokenizer and their vectors to the text
   * encoder; prompts are rewritten so `token` stands for all n (maybe_convert_prompt).
   * Files: AUTOMATIC1111 (`emb_params`; token defaults to the file name), diffusers
   * (`{"<token>": [n, D]}`; token defaults to the key) and, for SDXL, AUTOMATIC1111 / kohya files with
   * `clip_l` [n, D1] and `clip_g` [n, D2] (both text encoders and both tokenizers get the tokens; the
   * token defaults to the file name). On SDXL a one-set file goes to `options.textEncoder`
   * (default 'text_encoder', as diffusers' default).
   * @returns the tokens added
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) when the vectors' width is not the text encoder's hidden size, the file is no
   *   embedding, or an SDXL (`clip_l`/`clip_g`) file meets a one-encoder pipeline.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when the token is already known.
   * @example await pipe.loadTextualInversion('./embeddings/my-style.safetensors', { token: '<my-style>' });
   */
  loadTextualInversion(file: string, options?: LoadTextualInversionOptions): Promise<string[]> {
    this.checkAlive('loadTextualInversion');
    return this.model.enqueue(() => loadTextualInversion(this.model.handle, this.textEncoders(), file, options));
  }

  /** @internal The text encoders (diffusers component names) with their tokenizers. */
  private textEncoders(): Array<{ tok: CLIPTokenizer; component: TextEncoderName }> {
    const { info, tokenizers } = this.model;
    if (info.family !== 'sdxl') return [{ tok: tokenizers[0], component: 'text_encoder' }];
    // SDXL: tokenizer → text_encoder, tokenizer_2 → text_encoder_2; a refiner has only the second pair
    return tokenizers.length > 1
      ? [{ tok: tokenizers[0], component: 'text_encoder' }, { tok: tokenizers[1], component: 'text_encoder_2' }]
      : [{ tok: tokenizers[0], component: 'text_encoder_2' }];
  }

  /**
   * Frees the native model once the calls already queued have finished (shared models: when the
   * last pipeline using it is disposed). Idempotent. Any later call throws DisposedError.
   * @example pipe.dispose();
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.disposing = this.model.release();
    this.disposing.catch(() => undefined);
  }

  /**
   * `await using pipe = await StableDiffusionPipeline.fromPretrained(dir)`: disposes and waits
   * until the native model is freed.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
    await this.disposing;
  }

  /** @internal */
  protected checkAlive(what: string): void {
    if (this.disposed) throw new DisposedError(`${this.constructor.name}.${what}: the pipeline was disposed`);
  }

  /** @internal The scheduler state (a copy): snapshotted per call, copied by fromPipeline. */
  protected schedulerState(): Scheduler {
    return { name: this.schedulerName, config: structuredClone(this.schedulerConfig) };
  }

  /**
   * @internal Queues one call at once (so calls keep their order even while an input image is
   * still being decoded), then tokenizes and runs it when its turn comes.
   * @param sched - the scheduler at call time
   * @param signal - the caller's AbortSignal (already validated)
   * @param prepare - the resolved options (+ the decoded input image for img2img); its failure
   *   rejects the call at once, without waiting for the queue
   */
  protected run(
    calledAt: number, sched: Scheduler, signal: AbortSignal | undefined,
    prepare: Promise<{ o: ResolvedGenerateOptions; image?: DecodedImage; extra?: Partial<NativeGenerateRequest>; mask?: TensorData<Uint8Array> }>,
  ): Promise<GenerateResult> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const optimizations = { ...this.model.optimizations }; // toggles at call time, like the scheduler
    let started = false;
    const job = this.model.enqueue(async () => {
      const reachedAt = performance.now();
      const { o, image, extra, mask } = await prepare;
      if (signal?.aborted) throw abortError(signal);
      const t0 = performance.now();
      const call = async (prompts: string[]) => {
        const req = { ...this.request(prompts === o.prompts ? o : { ...o, prompts }, sched, image), ...extra };
        if (mask) req.mask = mask; // inpainting
        const tokenizeMs = performance.now() - t0;
        started = true;
        this.applyOptimizations(optimizations);
        const startedAt = performance.now();
        const r = await this.invoke(req, o, signal, startedAt);
        return this.toResult(r, o, sched, { queueMs: reachedAt - calledAt, tokenizeMs, wallMs: performance.now() - calledAt });
      };
      // A1111 <lora:name:weight> prompt tags (with loraDir): applied for this call only
      return o.loraDir === undefined ? call(o.prompts) : withLoraTags(this.model.handle, this.model, o.loraDir, o.prompts, call);
    });
    return new Promise<GenerateResult>((resolve, reject) => {
      prepare.catch(reject); // bad options / undecodable image: at once
      const onAbort = () => { if (!started) reject(abortError(signal!)); }; // aborted while queued: at once
      signal?.addEventListener('abort', onAbort, { once: true });
      job.then(resolve, reject).finally(() => signal?.removeEventListener('abort', onAbort));
    });
  }

  /** Tokenizes the prompts and builds the native request (diffusers' `encode_prompt` inputs). */
  private request(o: ResolvedGenerateOptions, sched: Scheduler, image?: DecodedImage): NativeGenerateRequest {
    const { info, tokenizers } = this.model;
    // diffusers: negative prompt "" when none is given; nothing is encoded without CFG
    const cfg = o.guidanceScale > 1;
    // diffusers' maybe_convert_prompt (textual-inversion tokens → all their vectors' tokens), per tokenizer
    const conv = (ps: string[], tok = tokenizers[0]) => ps.map((p) => maybeConvertPrompt(tok, p));
    const xl2 = info.family === 'sdxl' && tokenizers.length > 1;
    // diffusers SDXL: prompt_2 defaults to prompt, negative_prompt_2 to negative_prompt
    const prompts2 = o.prompts2 ?? o.prompts;
    const negatives = o.negativePrompts ?? o.prompts.map(() => '');
    const negatives2 = o.negativePrompts2 ?? negatives;
    // AUTOMATIC1111 emphasis and 75-token chunks (lib/prompt-weighting.ts); SDXL: both tokenizers,
    // padded to the same chunk count
    let weighted: ReturnType<typeof weightedTokens> | undefined;
    let weighted2: ReturnType<typeof weightedTokens> | undefined;
    if (o.promptWeighting === 'a1111') {
      const groups = [conv(o.prompts)];
      if (cfg) groups.push(conv(negatives));
      weighted = weightedTokens(tokenizers[0], groups);
      if (xl2) {
        const groups2 = [conv(prompts2, tokenizers[1])];
        if (cfg) groups2.push(conv(negatives2, tokenizers[1]));
        const k1 = weighted[0].ids.shape[1] / 77;
        weighted2 = weightedTokens(tokenizers[1], groups2, k1);
        const k2 = weighted2[0].ids.shape[1] / 77;
        if (k2 > k1) weighted = weightedTokens(tokenizers[0], groups, k2);
      }
    }
    const req: NativeGenerateRequest = {
      inputIds: weighted ? weighted[0].ids : tokenize(tokenizers[0], conv(o.prompts), 'prompt'),
      negativeInputIds: weighted ? weighted[1]?.ids : cfg ? tokenize(tokenizers[0], conv(negatives), 'negativePrompt') : undefined,
      promptWeights: weighted?.[0].weights,
      negativePromptWeights: weighted?.[1]?.weights,
      numImagesPerPrompt: o.numImagesPerPrompt,
      numInferenceSteps: o.numInferenceSteps,
      guidanceScale: o.guidanceScale,
      height: o.height,
      width: o.width,
      seed: o.seed,
      latents: o.latents ? { data: o.latents.data, shape: [...o.latents.shape] } : undefined,
      clipSkip: o.clipSkip,
      eta: o.eta,
      outputType: o.outputType,
      schedulerName: sched.name,
      schedulerConfig: structuredClone(sched.config),
      image: image
        ? { data: new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), shape: [image.height, image.width, 3] }
        : undefined,
      strength: image ? o.strength : undefined,
      loraScale: o.loraScale,
    };
    if (xl2) {
      req.inputIds2 = weighted2 ? weighted2[0].ids : tokenize(tokenizers[1], conv(prompts2, tokenizers[1]), 'prompt2');
      req.promptWeights2 = weighted2?.[0].weights;
      if (cfg) {
        req.negativeInputIds2 = weighted2 ? weighted2[1].ids : tokenize(tokenizers[1], conv(negatives2, tokenizers[1]), 'negativePrompt2');
        req.negativePromptWeights2 = weighted2?.[1].weights;
      }
    }
    // diffusers: zero_out_negative_prompt = negative_prompt is None and force_zeros_for_empty_prompt
    if (info.family === 'sdxl') req.negativePromptIsNone = o.negativePrompts === undefined;
    return req;
  }

  /** One native generate call with progress and cancellation plumbing. */
  private async invoke(
    req: NativeGenerateRequest, o: ResolvedGenerateOptions, signal: AbortSignal | undefined, startedAt: number,
  ): Promise<NativeGenerateResult> {
    const a = addon();
    // A token is needed to stop the loop on abort, and also when a user callback throws.
    const token = signal || o.onStep ? nativeSync(() => a.createAbortToken()) : undefined;
    const onAbort = () => { a.abortToken(token!); };
    signal?.addEventListener('abort', onAbort, { once: true });
    let callbackError: { e: unknown } | undefined;
    const userOnStep = o.onStep;
    const onStep = userOnStep
      ? (s: { step: number; numSteps: number; timestep: number }) => {
        if (callbackError) return;
        try {
          userOnStep({ step: s.step, numSteps: s.numSteps, timestep: s.timestep, elapsedMs: performance.now() - startedAt });
        } catch (e) {
          // A throwing callback stops the call; its error is what the caller gets.
          callbackError = { e };
          a.abortToken(token!);
        }
      }
      : undefined;
    try {
      const r = await native(() => (this.model.xl ? a.generateXl : a.generate)(this.model.handle, req, onStep, token));
      if (callbackError) throw callbackError.e; // thrown on the last step, after the loop ended
      return r;
    } catch (e) {
      if (callbackError) throw callbackError.e;
      if (signal?.aborted && (e as { code?: string }).code === 'E_ABORTED') throw abortError(signal);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private toResult(
    r: NativeGenerateResult, o: ResolvedGenerateOptions, sched: Scheduler,
    js: { queueMs: number; tokenizeMs: number; wallMs: number },
  ): GenerateResult {
    const batch = o.prompts.length * o.numImagesPerPrompt;
    const images: GeneratedImage[] = [];
    if (r.images) {
      const [b, h, w, c] = r.images.shape;
      if (b !== batch || c !== 3 || r.images.data.length !== b * h * w * 3) {
        throw new InternalError(`native generate returned images of shape [${r.images.shape.join(', ')}], expected [${batch}, H, W, 3]`);
      }
      const bytes = h * w * 3;
      const buf = Buffer.from(r.images.data.buffer, r.images.data.byteOffset, r.images.data.byteLength);
      const model = modelName(this.model.info.modelPath);
      for (let i = 0; i < b; i++) {
        const p = Math.floor(i / o.numImagesPerPrompt); // diffusers order: p0, p0, p1, p1
        const params: GenerationParameters = {
          prompt: o.prompts[p],
          negativePrompt: o.negativePrompts?.[p] ?? '',
          numInferenceSteps: o.numInferenceSteps,
          guidanceScale: o.guidanceScale,
          seed: o.seed,
          width: w,
          height: h,
          scheduler: sched.name,
          schedulerConfig: structuredClone(sched.config),
          model,
          clipSkip: o.clipSkip,
          strength: o.strength,
          eta: o.eta,
          batchSize: b,
          batchIndex: i,
        };
        images.push(new GeneratedImage(w, h, buf.subarray(i * bytes, (i + 1) * bytes), params));
      }
    }
    return {
      images,
      latents: toLatents(r.latents),
      initialLatents: toLatents(r.initialLatents),
      seed: o.seed,
      seeds: new Array<number>(batch).fill(o.seed),
      timesteps: [...r.timesteps],
      timings: { ...r.timings, ...js },
    };
  }
}

// =============================================================================================
// StableDiffusionPipeline
// =============================================================================================

/**
 * Text-to-image Stable Diffusion (SD 1.x, 2.x, SDXL), diffusers' `StableDiffusionPipeline`.
 * Calls on one pipeline run one after another in call order; the event loop stays free.
 * @example
 * const pipe = await StableDiffusionPipeline.fromPretrained('./stable-diffusion-v1-5', { device: 'cuda', dtype: 'float16' });
 * pipe.setScheduler('EulerAncestralDiscreteScheduler');
 * const { images, seed } = await pipe.generate({ prompt: 'an astronaut riding a horse on mars', numInferenceSteps: 25, seed: 42 });
 * await writeFile('astronaut.png', await images[0].toPNG());
 * pipe.dispose();
 */
export class StableDiffusionPipeline extends PipelineBase {
  private constructor(model: NativeModel, scheduler?: { name: string; config: Record<string, unknown> }) {
    super(model, scheduler);
  }

  /**
   * Loads a diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
   * @param dir - the model folder
   * @param options - device ('cpu' default | 'cuda' | 'cuda:N'), dtype ('float32' default |
   *   'float16' | 'bfloat16'), variant (e.g. 'fp16'), threads (CPU intra-op threads)
   * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) when the folder or a component is missing.
   * @throws BadConfigError (`E_BAD_CONFIG`) / BadCheckpointError (`E_BAD_CHECKPOINT`) for a malformed config or weight file.
   * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for a pipeline or component class sd-native does not run.
   * @throws DeviceUnavailableError (`E_DEVICE_UNAVAILABLE`) when the device does not exist in this build or machine.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for bad options.
   * @throws NativeLoadError (`E_NATIVE_LOAD`) when the addon cannot be loaded.
   * @example const pipe = await StableDiffusionPipeline.fromPretrained('./sd-v1-5', { device: 'cuda:0', dtype: 'float16' });
   */
  static async fromPretrained(dir: string, options?: LoadOptions): Promise<StableDiffusionPipeline> {
    return new StableDiffusionPipeline(await loadModel(dir, options, false));
  }

  /**
   * Loads an original-LDM / A1111 / ComfyUI single `.safetensors` checkpoint (keys mapped to
   * diffusers names at load). Pickle files (.ckpt/.bin/.pt) are refused.
   * @param file - the `.safetensors` file
   * @param options - as {@link fromPretrained}, plus `configDir`: a diffusers folder of the same
   *   family providing the config.json files and tokenizers
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) for pickles, corrupt files, or missing/mis-shaped weights.
   * @throws the other errors of {@link fromPretrained}.
   * @example const pipe = await StableDiffusionPipeline.fromSingleFile('./v1-5-pruned-emaonly.safetensors', { configDir: './sd-v1-5' });
   */
  static async fromSingleFile(file: string, options?: LoadOptions): Promise<StableDiffusionPipeline> {
    return new StableDiffusionPipeline(await loadModel(file, options, true));
  }

  /**
   * A text-to-image pipeline sharing the native model of `pipe` (no second copy of the weights;
   * calls of both pipelines share one queue). The scheduler is copied from `pipe`.
   * @throws DisposedError (`E_DISPOSED`) when `pipe` was disposed.
   */
  static fromPipeline(pipe: StableDiffusionPipeline | StableDiffusionImg2ImgPipeline): StableDiffusionPipeline {
    return new StableDiffusionPipeline(shareModel(pipe), schedulerOf(pipe));
  }

  /**
   * Generates images from text (diffusers' `__call__`). Validation happens before any native
   * work; the call is queued behind earlier calls on this pipeline.
   * @param options - `prompt` (string | non-empty string[]), `negativePrompt` (default ""),
   *   `numInferenceSteps` (1–1000, default 50), `guidanceScale` (≥ 0, default 7.5; ≤ 1 disables
   *   classifier-free guidance), `height`/`width` (multiples of 8 ≤ 8192, default the model's
   *   size), `numImagesPerPrompt` (1–64, default 1), `seed` (default random 32-bit), `latents`
   *   (`[numPrompts·numImagesPerPrompt, 4, height/8, width/8]` float32), `clipSkip` (≥ 1),
   *   `eta` (default 0), `outputType` ('image' | 'latent'), `onStep`, `signal`
   * @returns images (RGB, with their parameters), seed(s), timesteps, timings; latents for outputType 'latent'
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field, the value and the range.
   * @throws AbortError (`E_ABORTED`) when `signal` aborts (before or during the call).
   * @throws OutOfMemoryError (`E_OUT_OF_MEMORY`): the pipeline stays usable; retry smaller.
   * @throws NumericalError (`E_NUMERICAL`) when NaN/inf appear.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}.
   * @example
   * const { images } = await pipe.generate({
   *   prompt: 'a watercolor fox', negativePrompt: 'blurry', numInferenceSteps: 25, seed: 42,
   *   onStep: ({ step, numSteps }) => console.log(`${step}/${numSteps}`), signal: AbortSignal.timeout(60_000),
   * });
   */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const calledAt = performance.now();
    this.checkAlive('generate');
    const o = finishGenerateOptions(parseGenerateOptions(options, 'txt2img'), this.model.info, 'txt2img');
    return this.run(calledAt, this.schedulerState(), o.signal, Promise.resolve({ o }));
  }
}

// =============================================================================================
// StableDiffusionImg2ImgPipeline
// =============================================================================================

/**
 * Image-to-image Stable Diffusion, diffusers' `StableDiffusionImg2ImgPipeline`: the input image
 * is encoded by the VAE, noised to the timestep `strength` selects, and denoised from there.
 * @example
 * const pipe = await StableDiffusionImg2ImgPipeline.fromPretrained('./sd-v1-5');
 * const { images } = await pipe.generate({ image: 'sketch.png', prompt: 'a fantasy landscape', strength: 0.75, seed: 1 });
 * await images[0].save('landscape.png');
 */
export class StableDiffusionImg2ImgPipeline extends PipelineBase {
  private constructor(model: NativeModel, scheduler?: { name: string; config: Record<string, unknown> }) {
    super(model, scheduler);
  }

  /**
   * Loads a diffusers folder. Same options and errors as {@link StableDiffusionPipeline.fromPretrained}.
   * @example const pipe = await StableDiffusionImg2ImgPipeline.fromPretrained('./sd-v1-5');
   */
  static async fromPretrained(dir: string, options?: LoadOptions): Promise<StableDiffusionImg2ImgPipeline> {
    return new StableDiffusionImg2ImgPipeline(await loadModel(dir, options, false));
  }

  /**
   * Loads a single `.safetensors` checkpoint. Same options and errors as {@link StableDiffusionPipeline.fromSingleFile}.
   */
  static async fromSingleFile(file: string, options?: LoadOptions): Promise<StableDiffusionImg2ImgPipeline> {
    return new StableDiffusionImg2ImgPipeline(await loadModel(file, options, true));
  }

  /**
   * An img2img pipeline sharing the native model of `pipe` (diffusers:
   * `StableDiffusionImg2ImgPipeline(**pipe.components)`); the scheduler is copied.
   * @throws DisposedError (`E_DISPOSED`) when `pipe` was disposed.
   * @example const img2img = StableDiffusionImg2ImgPipeline.fromPipeline(txt2img);
   */
  static fromPipeline(pipe: StableDiffusionPipeline | StableDiffusionImg2ImgPipeline): StableDiffusionImg2ImgPipeline {
    return new StableDiffusionImg2ImgPipeline(shareModel(pipe), schedulerOf(pipe));
  }

  /**
   * Transforms an image guided by text.
   * @param options - as {@link StableDiffusionPipeline.generate} without `latents`, plus
   *   `image` (path | PNG/JPEG/WebP Buffer | `{ data, width, height, channels: 3 }`; resized with
   *   lanczos to `width × height`, by default its own size rounded down to a multiple of 8) and
   *   `strength` (0–1, default 0.8: `int(numInferenceSteps × strength)` steps run, at least 1)
   * @returns as {@link StableDiffusionPipeline.generate} (`initialLatents` is the noise drawn)
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`): bad options, "image is not a decodable image: …".
   * @throws the other errors of {@link StableDiffusionPipeline.generate}.
   * @example const { images } = await pipe.generate({ image: await readFile('in.jpg'), prompt: 'oil painting', strength: 0.6 });
   */
  async generate(options: Img2ImgOptions): Promise<GenerateResult> {
    const calledAt = performance.now();
    this.checkAlive('generate');
    const parsed = parseGenerateOptions(options, 'img2img');
    const info = this.model.info;
    // decoded while earlier calls run; the call keeps its place in the queue meanwhile
    const prepare = parsed.signal?.aborted ? Promise.reject(abortError(parsed.signal)) : (async () => {
      const image = await loadInputImage(parsed.image!, parsed.width, parsed.height);
      return { o: finishGenerateOptions(parsed, info, 'img2img', image), image };
    })();
    prepare.catch(() => undefined); // observed by run()
    return this.run(calledAt, this.schedulerState(), parsed.signal, prepare);
  }
}

// =============================================================================================
// StableDiffusionInpaintPipeline
// =============================================================================================

/** Options of {@link StableDiffusionInpaintPipeline.generate}. */
export interface InpaintOptions extends Omit<Img2ImgOptions, 'strength'> {
  /**
   * The mask: white (≥ 128 after grayscale) = repaint, black = keep. A path or encoded Buffer
   * (converted to grayscale with PIL's 'L' weights after resizing to the image size), or raw
   * `{ data, width, height, channels: 1 }` grayscale at the image size (or channels 3/4).
   */
  maskImage: ImageInput | { data: Uint8Array; width: number; height: number; channels: 1 };
  /** In [0, 1] (default 1: start from pure noise); below 1 the image latents are noised to the strength's timestep. */
  strength?: number;
}

/** PIL `Image.convert('L')`: (R·19595 + G·38470 + B·7471 + 2^15) >> 16. */
function toGray(rgb: Uint8Array, channels: number): Uint8Array {
  const n = rgb.length / channels;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = rgb[i * channels], g = rgb[i * channels + 1], b = rgb[i * channels + 2];
    out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
  }
  return out;
}

async function loadMask(mask: InpaintOptions['maskImage'], width: number, height: number): Promise<TensorData<Uint8Array>> {
  const raw = mask as { data?: unknown; width?: unknown; height?: unknown; channels?: unknown };
  if (raw && typeof raw === 'object' && !Buffer.isBuffer(raw) && raw.channels === 1) {
    if (!(raw.data instanceof Uint8Array) || raw.width !== width || raw.height !== height || raw.data.length !== width * height) {
      throw new InvalidArgumentError(
        `maskImage: a raw grayscale mask must be { data: Uint8Array(${width * height}), width: ${width}, height: ${height}, channels: 1 } (the image size)`);
    }
    return { data: new Uint8Array(raw.data), shape: [height, width] };
  }
  const decoded = await loadInputImage(mask as ImageInput, width, height).catch((e) => {
    throw new InvalidArgumentError(`maskImage: ${(e as Error).message}`, { cause: e });
  });
  return { data: toGray(decoded.data, decoded.channels), shape: [height, width] };
}

/**
 * Inpainting, diffusers' `StableDiffusionInpaintPipeline`: the masked area (white) is repainted
 * from the prompt, the rest kept. 9-channel inpainting UNets get `[latents, mask, masked image
 * latents]`; a regular 4-channel model inpaints by blending the re-noised image latents outside
 * the mask after each step. The decoded image is returned as is (no paste-back of the original).
 * @example
 * const pipe = await StableDiffusionInpaintPipeline.fromPretrained('./sd-inpainting');
 * const { images } = await pipe.generate({ image: 'room.png', maskImage: 'mask.png', prompt: 'a red sofa', seed: 1 });
 */
export class StableDiffusionInpaintPipeline extends PipelineBase {
  private constructor(model: NativeModel, scheduler?: { name: string; config: Record<string, unknown> }) {
    super(model, scheduler);
  }

  /** Loads a diffusers folder. Same options and errors as {@link StableDiffusionPipeline.fromPretrained}. */
  static async fromPretrained(dir: string, options?: LoadOptions): Promise<StableDiffusionInpaintPipeline> {
    return new StableDiffusionInpaintPipeline(await loadModel(dir, options, false));
  }

  /** Loads a single `.safetensors` checkpoint. Same options and errors as {@link StableDiffusionPipeline.fromSingleFile}. */
  static async fromSingleFile(file: string, options?: LoadOptions): Promise<StableDiffusionInpaintPipeline> {
    return new StableDiffusionInpaintPipeline(await loadModel(file, options, true));
  }

  /** An inpainting pipeline sharing the native model of `pipe`; the scheduler is copied. */
  static fromPipeline(pipe: AnyPipeline): StableDiffusionInpaintPipeline {
    return new StableDiffusionInpaintPipeline(shareModel(pipe), schedulerOf(pipe));
  }

  /**
   * Repaints the white area of `maskImage` in `image`.
   * @param options - as {@link StableDiffusionImg2ImgPipeline.generate}, plus `maskImage`; `strength` defaults to 1
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`): bad options, undecodable image or mask, mask size.
   * @throws the other errors of {@link StableDiffusionPipeline.generate}.
   */
  async generate(options: InpaintOptions): Promise<GenerateResult> {
    const calledAt = performance.now();
    this.checkAlive('generate');
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('inpaint options must be an object');
    const { maskImage, ...rest } = options;
    if (maskImage === undefined) throw new InvalidArgumentError('maskImage is required (white = repaint)');
    const parsed = parseGenerateOptions({ ...rest, strength: rest.strength ?? 1 } as Img2ImgOptions, 'img2img');
    const info = this.model.info;
    const prepare = parsed.signal?.aborted ? Promise.reject(abortError(parsed.signal)) : (async () => {
      const image = await loadInputImage(parsed.image!, parsed.width, parsed.height);
      const mask = await loadMask(maskImage, image.width, image.height);
      return { o: finishGenerateOptions(parsed, info, 'img2img', image), image, mask };
    })();
    prepare.catch(() => undefined);
    return this.run(calledAt, this.schedulerState(), parsed.signal, prepare);
  }
}

type AnyPipeline = StableDiffusionPipeline | StableDiffusionImg2ImgPipeline | StableDiffusionInpaintPipeline;

function shareModel(pipe: AnyPipeline): NativeModel {
  if (!(pipe instanceof PipelineBase)) {
    throw new InvalidArgumentError(`fromPipeline expects a StableDiffusionPipeline or StableDiffusionImg2ImgPipeline; received ${describeValue(pipe)}`);
  }
  const p = pipe as unknown as { checkAlive(w: string): void; model: NativeModel };
  p.checkAlive('fromPipeline');
  if (p.model.xl) {
    throw new InvalidArgumentError('fromPipeline: this is an SDXL pipeline; use StableDiffusionXLPipeline.fromPipeline or StableDiffusionXLImg2ImgPipeline.fromPipeline');
  }
  return p.model.acquire();
}

function schedulerOf(pipe: AnyPipeline): { name: string; config: Record<string, unknown> } {
  return (pipe as unknown as { schedulerState(): { name: string; config: Record<string, unknown> } }).schedulerState();
}
