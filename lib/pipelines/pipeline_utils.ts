/**
 * The base of every pipeline, diffusers' `DiffusionPipeline` (pipeline_utils.py): the loaders
 * (`fromPretrained`, `fromSingleFile`, `fromPipeline`), the scheduler, the speed/memory toggles,
 * the call queue and disposal. The generation itself (validation, inputs, tokenization, the
 * native call) is `generateWith`, run by each pipeline's `generate` with its own option schema.
 */
import { addon } from '../native.js';
import {
  DeviceUnavailableError, DisposedError, InvalidArgumentError, UnsupportedModelError, describeValue, nativeSync,
} from '../errors.js';
import {
  SUPPORTED_SCHEDULERS, finishGenerateOptions, isLatentsInput, parseGenerateOptions,
  type GenerateMode, type ImageInput, type LoadOptions, type ParsedGenerateOptions, type ResolvedGenerateOptions, type SchedulerName,
} from '../options.js';
import { loadInputImage, samplerName } from '../image.js';
import { NativeModel, loadModel, type PipelineInfo } from './native_model.js';
import { abortError, runCall, type CallInputs } from './native_call.js';
import type { GenerateResult } from './pipeline_output.js';
import { ownVae, resolvePreviewDecoder, swapPreviewDecoder, swapVae } from './pipeline_vae.js';
import type { AutoencoderKL } from '../autoencoder_kl.js';
import type { AutoencoderTiny } from '../autoencoder_tiny.js';
import type { NativeOptimizations } from '../../types/native.js';
import { parseMemorySize } from '../internal/memory_size.js';

export type { PipelineInfo } from './native_model.js';

/** The scheduler a pipeline runs with. */
export interface SchedulerInfo {
  /** diffusers class name, e.g. 'EulerAncestralDiscreteScheduler'. */
  name: string;
  /** The model's scheduler_config.json merged with every override given since load (snake_case keys). */
  config: Record<string, unknown>;
  /** AUTOMATIC1111's name for it, e.g. 'Euler a', 'DPM++ 2M Karras'. */
  samplerName: string;
}

/** A scheduler class name and its config. */
export interface SchedulerState { name: string; config: Record<string, unknown> }

/** What the static loaders need of a concrete pipeline class. */
export type PipelineClass<T> = {
  new (model: NativeModel, scheduler?: SchedulerState): T;
  /** true for the SDXL pipelines (StableDiffusionXLPipeline handle). */
  readonly xl: boolean;
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
}

/** What every pipeline shares: loading, scheduler, toggles, queue, disposal. Not constructed directly. */
export abstract class DiffusionPipeline {
  /** true for the SDXL pipelines: they load a StableDiffusionXLPipeline (two text encoders). */
  static readonly xl: boolean = false;
  /** @internal */
  protected readonly model: NativeModel;
  private disposed = false;
  private disposing: Promise<void> | undefined;
  /** Aborted by {@link dispose}: joined to every call's signal so that disposing stops this pipeline's calls. */
  private readonly disposeController = new AbortController();
  private schedulerName: string;
  private schedulerConfig: Record<string, unknown>;

  /** @internal Use `fromPretrained`, `fromSingleFile` or `fromPipeline`. */
  constructor(model: NativeModel, scheduler?: SchedulerState) {
    this.model = model;
    this.schedulerName = scheduler?.name ?? model.info.schedulerName;
    this.schedulerConfig = structuredClone(scheduler?.config ?? model.info.schedulerConfig);
  }

  /**
   * Loads a diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/;
   * SDXL: text_encoder_2/ and tokenizer_2/, text_encoder/ + tokenizer/ optional as in the refiner).
   * @param dir - the model folder, or a Hugging Face Hub id `org/name` / `org/name@revision`
   *   (diffusers' `pretrained_model_name_or_path`): a local path of that name always wins; else only
   *   the files the pipeline needs are downloaded into huggingface_hub's cache (shared with Python)
   *   — see lib/loaders/hub.ts. A cached model loads with no request.
   * @param options - device ('cpu' default | 'cuda' | 'cuda:N'), dtype ('float32' default |
   *   'float16' | 'bfloat16'), variant (e.g. 'fp16'), threads (CPU intra-op threads); Hub ids:
   *   revision, token (default `$HF_TOKEN`), localFilesOnly (default `$HF_HUB_OFFLINE`), cacheDir,
   *   onProgress, signal
   * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) when the folder or a component is missing; for a
   *   Hub id, an unknown repo/revision/variant, or a model not cached with localFilesOnly (the message names the id).
   * @throws UnauthorizedError (`E_UNAUTHORIZED`) when the Hub answers 401/403 (gated or private repo; the message names it).
   * @throws AbortError (`E_ABORTED`) when `signal` aborts a download.
   * @throws BadConfigError (`E_BAD_CONFIG`) / BadCheckpointError (`E_BAD_CHECKPOINT`) for a malformed config or weight file.
   * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for a pipeline or component class this class does not run
   *   (an SDXL folder for the SD classes and the reverse: the message names the class to use).
   * @throws DeviceUnavailableError (`E_DEVICE_UNAVAILABLE`) when the device does not exist in this build or machine.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for bad options.
   * @throws NativeLoadError (`E_NATIVE_LOAD`) when the addon cannot be loaded.
   * @example const pipe = await StableDiffusionPipeline.fromPretrained('./sd-v1-5', { device: 'cuda:0', dtype: 'float16' });
   */
  static async fromPretrained<T>(this: PipelineClass<T>, dir: string, options?: LoadOptions): Promise<T> {
    return new this(await loadModel(dir, options, false, this.xl));
  }

  /**
   * Loads an original-LDM / A1111 / ComfyUI single `.safetensors` checkpoint (keys mapped to
   * diffusers names at load; SDXL: `conditioner.embedders.*`, or the refiner layout). Pickle files
   * (.ckpt/.bin/.pt) are refused.
   * @param file - the `.safetensors` file, or a Hub file `org/name[@revision]/file.safetensors` (or its
   *   huggingface.co URL: only that file is downloaded, into the huggingface_hub cache)
   * @param options - as {@link fromPretrained}, plus `configDir`: a diffusers folder of the same
   *   family providing the config.json files, tokenizers and scheduler (required for SDXL; nothing
   *   is guessed from tensor shapes) — or a Hub id, of which only those files are downloaded
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) for pickles, corrupt files, keys that map to
   *   nothing (listed), or missing/mis-shaped weights.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for SDXL without configDir or with an SD 1.x/2.x configDir.
   * @throws the other errors of {@link fromPretrained}.
   * @example const pipe = await StableDiffusionPipeline.fromSingleFile('./v1-5-pruned-emaonly.safetensors', { configDir: './sd-v1-5' });
   */
  static async fromSingleFile<T>(this: PipelineClass<T>, file: string, options?: LoadOptions): Promise<T> {
    return new this(await loadModel(file, options, true, this.xl));
  }

  /**
   * A pipeline of this class sharing the native model of `pipe` (diffusers: `Cls(**pipe.components)`):
   * no second copy of the weights, one call queue for both. The scheduler is copied from `pipe`.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) when `pipe` is not a pipeline of the same
   *   family (SD 1.x/2.x and SDXL pipelines do not share models).
   * @throws DisposedError (`E_DISPOSED`) when `pipe` was disposed.
   * @example const img2img = StableDiffusionImg2ImgPipeline.fromPipeline(txt2img);
   */
  static fromPipeline<T>(this: PipelineClass<T>, pipe: DiffusionPipeline): T {
    const expected = this.xl ? 'a StableDiffusionXLPipeline or StableDiffusionXLImg2ImgPipeline'
      : 'a StableDiffusionPipeline or StableDiffusionImg2ImgPipeline';
    if (!(pipe instanceof DiffusionPipeline) || (this.xl && !pipe.model.xl)) {
      throw new InvalidArgumentError(`fromPipeline expects ${expected}; received ${describeValue(pipe)}`);
    }
    if (!this.xl && pipe.model.xl) {
      throw new InvalidArgumentError('fromPipeline: this is an SDXL pipeline; use StableDiffusionXLPipeline.fromPipeline or StableDiffusionXLImg2ImgPipeline.fromPipeline');
    }
    pipe.checkAlive('fromPipeline');
    return new this(pipe.model.acquire(), pipe.schedulerState());
  }

  /**
   * The loaded model: family ('sd1' | 'sd2' | 'sdxl'), components with their classes, dtypes and
   * parameter counts, device, default size, tokenizer folders, the model's own scheduler.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}.
   */
  get info(): PipelineInfo {
    this.checkAlive('info');
    const info = structuredClone(this.model.info);
    // bytes held now (fp8 storage, from the first call after enableFp8Storage)
    info.components = nativeSync(() => addon().pipelineComponents(this.model.handle));
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
   * - `'math'`: scores, softmax, weighted sum (`AttnProcessor`; the softmax in float32 only where
   *   the model config asks `upcast_attention` / `upcast_softmax`);
   * - `'flash'`: sd-native's memory-efficient CPU kernel (query and key blocks, online softmax,
   *   float32 accumulation; never holds the N×N scores), SDPA on CUDA. `'auto'` already picks it
   *   on the CPU where it measured faster than the math path: float32 on libtorch 1.13 (in
   *   bfloat16 the math path is faster; docs/BENCHMARKS.md).
   * Attention slicing, when enabled, takes precedence over all four.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for another value;
   *   UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for `'sdpa'` on libtorch < 2.0.
   */
  setAttentionBackend(backend: 'auto' | 'sdpa' | 'math' | 'flash'): this {
    this.checkAlive('setAttentionBackend');
    if (backend === 'sdpa') return this.enableMemoryEfficientAttention();
    if (backend !== 'auto' && backend !== 'math' && backend !== 'flash') {
      throw new InvalidArgumentError(`attention backend must be 'auto', 'sdpa', 'math' or 'flash'; received ${describeValue(backend)}`);
    }
    return this.toggle({ sdpa: backend === 'auto' ? 'auto' : backend === 'flash' ? 'flash' : false });
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
    this.checkCuda('enableModelCpuOffload', 'moves weights between host memory and a CUDA GPU');
    this.checkNoCudaGraphs('enableModelCpuOffload');
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
    this.checkCuda('enableSequentialCpuOffload', 'moves weights between host memory and a CUDA GPU');
    this.checkNoCudaGraphs('enableSequentialCpuOffload');
    return this.toggle({ offload: 'sequential' });
  }

  /** Weights back on the pipeline's device for good. */
  disableCpuOffload(): this {
    this.checkAlive('disableCpuOffload');
    return this.toggle({ offload: '' });
  }

  /**
   * Caps the host memory one call may add (issue 19 memory guard, CPU pipelines): before a call
   * runs, its peak is estimated from its shapes (batch with the CFG doubling, latent size, UNet
   * widths and heads, the attention kernel chosen, the VAE decode at full resolution) and a call
   * whose estimate does not fit the smallest of this limit, `SD_NATIVE_MEMORY_LIMIT`, the cgroup
   * limit and MemAvailable is refused with `E_OUT_OF_MEMORY` (nothing runs; the next smaller call
   * works). See docs/RELIABILITY.md for the estimate and its calibration.
   * @param limit - bytes (a number), a string with a binary suffix (`'512MiB'`, `'6GiB'`, as
   *   `SD_NATIVE_MEMORY_LIMIT`), or `null` for the environment's limits only (the default).
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a negative, non-finite or unreadable limit.
   */
  setMemoryLimit(limit: number | string | null): this {
    this.checkAlive('setMemoryLimit');
    return this.toggle({ memoryLimit: limit === null ? 0 : parseMemorySize(limit, 'memoryLimit') });
  }

  /**
   * CUDA graphs for the UNet (the native counterpart of `torch.compile(unet, mode="reduce-overhead")`
   * and stable-fast's CUDA graphs): the first step of each input signature — batch (both CFG
   * halves), height, width, dtype, memory format — runs once eagerly and is then captured as a CUDA
   * graph in a private memory pool; every later step copies its inputs into the graph's static
   * inputs and replays it with one launch, removing the per-kernel launch overhead that dominates
   * small and medium images on fast GPUs. The scheduler and CFG run outside the graph, so every
   * scheduler works. A graph is dropped and recaptured when what it baked in changes: weights
   * (LoRA load/fuse/unfuse/adapters, fp8 storage), the call's LoRA scale, attention options,
   * channels-last, cuDNN/TF32 flags. Up to 4 signatures are kept. Same kernels as eager, so the
   * images match eager (bit-equal where the kernels are deterministic). ControlNet calls run the
   * UNet eagerly. While a graph replays, an abort is seen between steps (not inside the UNet).
   * Takes effect at the next call; costs one extra UNet forward per new signature, and the graph
   * pool holds the activations of each signature kept.
   * @throws DeviceUnavailableError (`E_DEVICE_UNAVAILABLE`) on a pipeline that is not on a CUDA device;
   *   InvalidArgumentError (`E_INVALID_ARGUMENT`) while CPU offload is enabled (offload moves the
   *   weights a graph reads at fixed addresses). At the next call: UnsupportedModelError
   *   (`E_UNSUPPORTED_MODEL`) when this build has no CUDA graph support (`buildInfo().cudaGraphs`).
   */
  enableCudaGraphs(): this {
    this.checkAlive('enableCudaGraphs');
    // SD_NATIVE_CUDA_GRAPHS_EMULATE=1 (tests without a GPU): the native side replays by re-running
    // the UNet on a CPU pipeline, with the same bookkeeping (native/core/pipelines/unet_graphs.h)
    if (process.env.SD_NATIVE_CUDA_GRAPHS_EMULATE !== '1') this.checkCuda('enableCudaGraphs', "captures the UNet's CUDA kernels");
    if (this.model.optimizations.offload) {
      throw new InvalidArgumentError('enableCudaGraphs: CUDA graphs replay the UNet with its weights at fixed GPU addresses, ' +
        'which CPU offload moves; call disableCpuOffload() first');
    }
    return this.toggle({ cudaGraphs: true });
  }

  /** Back to eager UNet calls; the captured graphs and their memory pool are freed at the next call. */
  disableCudaGraphs(): this {
    this.checkAlive('disableCudaGraphs');
    return this.toggle({ cudaGraphs: false });
  }

  private checkNoCudaGraphs(what: string): void {
    if (this.model.optimizations.cudaGraphs) {
      throw new InvalidArgumentError(`${what}: CPU offload moves the weights that CUDA graphs read at fixed GPU addresses; ` +
        'call disableCudaGraphs() first');
    }
  }

  private checkCuda(what: string, why: string): void {
    const device = this.model.info.device;
    if (!device.startsWith('cuda')) {
      throw new DeviceUnavailableError(`${what} ${why}; this pipeline runs on ${device} ` +
        `(load it with { device: 'cuda' })`);
    }
  }

  private toggle(change: Partial<NativeOptimizations>): this {
    Object.assign(this.model.optimizations, change);
    return this;
  }

  /**
   * The VAE this pipeline decodes (and, for img2img/inpainting, encodes) with — diffusers' `pipe.vae`:
   * the model's own AutoencoderKL unless another was set. Shared by pipelines made with `fromPipeline`.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}.
   */
  get vae(): AutoencoderKL | AutoencoderTiny {
    this.checkAlive('vae');
    return this.model.vae ?? ownVae(this.model);
  }

  /**
   * diffusers' `pipe.vae = vae`: decode with `vae` (an AutoencoderKL, e.g. a fine-tuned VAE, or an
   * AutoencoderTiny: TAESD, decoding `vae.decode(latents / 1.0)` in [-1, 1], and encoding
   * deterministically — img2img then draws nothing from the generator for the encode) from the
   * next call on; `null` or the object `pipe.vae` returned first restores the model's own VAE
   * (bit-identical images again). Calls already made keep the VAE they were made with. Unlike
   * diffusers, the pipeline's `vaeScaleFactor` (and default size) follow the new VAE (diffusers
   * computes it once at construction; with real SD/SDXL VAEs and TAESD/TAESDXL both are 8).
   * The pipeline's enableVaeSlicing/Tiling apply to an AutoencoderKL in use (not to TAESD).
   * Use {@link setVae} to await the swap.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for a VAE on another device, with other
   *   latent channels than the model's (e.g. an SD3/Flux 16-channel VAE), or while CPU offload is on.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}, or for a disposed VAE.
   * @example pipe.vae = await AutoencoderTiny.fromPretrained('./taesd'); // fast decode
   */
  set vae(vae: AutoencoderKL | AutoencoderTiny | null) {
    this.checkAlive('vae');
    swapVae(this.model, vae).catch((e: unknown) => {
      process.emitWarning(`the VAE swap failed natively: ${(e as Error).message}`, { code: 'SD_VAE_SWAP' });
    });
  }

  /**
   * As `pipe.vae = vae`, returning when the swap has happened (after the calls queued before it).
   * @throws as the `vae` setter.
   */
  async setVae(vae: AutoencoderKL | AutoencoderTiny | null): Promise<void> {
    this.checkAlive('setVae');
    await swapVae(this.model, vae);
  }

  /**
   * The AutoencoderTiny that `generate({ previews: 'taesd', onStep })` decodes each preview with
   * (madebyollin/taesd for SD 1.x/2.x, madebyollin/taesdxl for SDXL); `null` removes it. It only
   * makes previews: the final image is decoded by `vae`. Applies to calls made after it.
   * @param decoder - a loaded AutoencoderTiny (on the pipeline's device) or its folder
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for another class, device or latent channel count.
   * @example await pipe.setPreviewDecoder(await AutoencoderTiny.fromPretrained('./taesd'));
   */
  async setPreviewDecoder(decoder: AutoencoderTiny | string | null): Promise<void> {
    this.checkAlive('setPreviewDecoder');
    const d = typeof decoder === 'string' ? await resolvePreviewDecoder(decoder, this.model.info) : decoder;
    await swapPreviewDecoder(this.model, d);
  }

  /**
   * Disposes the pipeline: its calls still waiting in the queue reject at once with DisposedError
   * (`E_DISPOSED`), its running call is aborted at the next check inside the UNet, VAE or text
   * encoder and rejects with DisposedError too, and the native model is freed once that call has
   * stopped (shared models: when the last pipeline using it is disposed; calls of the other
   * pipelines go on). Idempotent. Any later call throws DisposedError.
   * @example pipe.dispose();
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.disposeController.abort(new DisposedError(`${this.constructor.name} was disposed while the call ran`));
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
  protected schedulerState(): SchedulerState {
    return { name: this.schedulerName, config: structuredClone(this.schedulerConfig) };
  }

  /**
   * @internal One generate call: the options through the schema of `mode` (before anything is
   * queued), the input image(s) decoded while earlier calls run (the call keeps its place in the
   * queue), then the native call when its turn comes.
   */
  protected async generateWith(
    options: unknown, mode: GenerateMode, control?: (o: ResolvedGenerateOptions) => Promise<CallInputs['control']>,
  ): Promise<GenerateResult> {
    const calledAt = performance.now();
    this.checkAlive('generate');
    const parsed = parseGenerateOptions(options as never, mode);
    if (parsed.previews === 'taesd' && !this.model.previewDecoder) {
      throw new InvalidArgumentError(
        "previews 'taesd' need a preview decoder: load with { previewDecoder } or call setPreviewDecoder(await AutoencoderTiny.fromPretrained(dir)) first");
    }
    const info = this.model.info;
    let prepare: Promise<CallInputs>;
    if (parsed.image === undefined || isLatentsInput(parsed.image)) {
      prepare = Promise.resolve({ o: finishGenerateOptions(parsed, info, mode) });
    } else if (parsed.signal?.aborted) {
      prepare = Promise.reject(abortError(parsed.signal));
    } else {
      prepare = this.decodeInputs(parsed).then((inputs) => ({ ...inputs, o: finishGenerateOptions(parsed, info, mode, inputs.image) }));
    }
    // ControlNet pipelines: the control images, decoded at the resolved size
    if (control) prepare = prepare.then(async (inputs) => ({ ...inputs, control: await control(inputs.o) }));
    prepare.catch(() => undefined); // observed by runCall
    // dispose() aborts the call through the same signal (and abort token) as the caller's signal
    const disposeSignal = this.disposeController.signal;
    const signal = parsed.signal ? AbortSignal.any([parsed.signal, disposeSignal]) : disposeSignal;
    return runCall(this.model, calledAt, this.schedulerState(), signal, prepare).catch((e: unknown) => {
      if (disposeSignal.aborted && !parsed.signal?.aborted && (e as { code?: unknown })?.code === 'E_ABORTED') {
        throw new DisposedError(`${this.constructor.name}.generate: the pipeline was disposed while the call ran or waited`, { cause: e });
      }
      throw e;
    });
  }

  /** @internal Decodes the input image (img2img); the inpainting pipeline adds the mask. */
  protected async decodeInputs(parsed: ParsedGenerateOptions): Promise<Omit<CallInputs, 'o'>> {
    return { image: await loadInputImage(parsed.image as ImageInput, parsed.width, parsed.height) };
  }
}
