/**
 * native/addon/pipeline.cc: StableDiffusionPipeline and StableDiffusionXLPipeline behind one set of
 * bindings that dispatch on the handle's kind.
 */
import type { Handle, PipelineDtype, TensorData } from './tensor.js';
import type { NativeControlNetUnit } from './controlnet.js';

/** A native StableDiffusionPipeline (SD 1.x / 2.x; txt2img, img2img and inpainting). */
export type SdPipelineHandle = Handle<'StableDiffusionPipeline'>;
/** A native StableDiffusionXLPipeline (SDXL base or refiner; txt2img and img2img). */
export type SdxlPipelineHandle = Handle<'StableDiffusionXLPipeline'>;
/** Either pipeline: every pipeline binding takes both and dispatches on the kind. */
export type PipelineHandle = SdPipelineHandle | SdxlPipelineHandle;
/** The cancellation flag of one generate call. */
export type AbortTokenHandle = Handle<'AbortToken'>;

/** Model family detected at load. */
export type ModelFamily = 'sd1' | 'sd2' | 'sdxl';

/** Options of `loadPipeline` (already validated and defaulted by lib/options.ts). */
export interface NativeLoadOptions {
  /** 'cpu' | 'cuda' | 'cuda:N' */
  device: string;
  dtype: PipelineDtype;
  /** Weight file variant, e.g. 'fp16' → `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
  /** true: `path` is an original-LDM / A1111 single `.safetensors` file. */
  singleFile: boolean;
  /** Single files: a diffusers folder providing config.json files and tokenizers. */
  configDir?: string;
  /** CPU intra-op threads; absent = libtorch's default (the physical cores). */
  threads?: number;
  /** true: load a StableDiffusionXLPipeline (two text encoders, add_time_ids); false: a StableDiffusionPipeline. */
  xl: boolean;
}

/** One loaded component (unet, vae, text_encoder, ...). */
export interface NativeComponentInfo {
  /** diffusers attribute name: 'unet', 'vae', 'text_encoder', 'text_encoder_2' */
  name: string;
  /** diffusers/transformers class name, e.g. 'UNet2DConditionModel' */
  className: string;
  dtype: string;
  /** Number of parameters (elements). */
  parameters: number;
  /** Bytes held by the parameters. */
  bytes: number;
}

/** What `pipelineInfo` returns. */
export interface NativePipelineInfo {
  family: ModelFamily;
  /** diffusers pipeline class, e.g. 'StableDiffusionPipeline' */
  className: string;
  modelPath: string;
  /** `2 ** (len(vae.block_out_channels) - 1)`: 8 for real models. */
  vaeScaleFactor: number;
  /** unet `sample_size`; the default image size is `sampleSize * vaeScaleFactor` pixels. */
  sampleSize: number;
  /** Tokenizer folders in text-encoder order (`tokenizer`, `tokenizer_2` for SDXL). */
  tokenizerDirs: string[];
  /** diffusers class name of the model's own scheduler. */
  schedulerName: string;
  /** The model's scheduler_config.json as read (snake_case keys). */
  schedulerConfig: Record<string, unknown>;
  device: string;
  dtype: string;
  components: NativeComponentInfo[];
  /** SDXL: model_index.json `force_zeros_for_empty_prompt` (false for SD 1.x/2.x). */
  forceZerosForEmptyPrompt: boolean;
  /** SDXL refiner: model_index.json `requires_aesthetics_score` (false for SD 1.x/2.x). */
  requiresAestheticsScore: boolean;
}

/** Progress report sent once per denoising step (on the JS thread). */
export interface NativeStepInfo {
  /** 1-based index of the step that just finished. */
  step: number;
  numSteps: number;
  /** Scheduler timestep of that step. */
  timestep: number;
  /** With `previews` on a step that is a multiple of `previewEvery`: uint8 `[batch, H, W, 3]` RGB, made on the generating thread. */
  preview?: TensorData<Uint8Array>;
}

/**
 * The request of `generate` for a StableDiffusionPipeline handle: complete — validated, tokenized
 * and with every default filled by lib/options.ts and lib/pipelines/prompt_encoding.ts. The addon
 * reads the required fields without defaults (a missing one is E_INVALID_ARGUMENT); optional
 * fields are absent when unused.
 */
export interface NativeGenerateRequest {
  /** Token ids of the prompts, `[numPrompts, 77·k]` int64 (first tokenizer; k > 1 only with A1111 chunks). */
  inputIds: TensorData<BigInt64Array>;
  /** Token ids of the negative prompts, same shape; omitted when `guidanceScale <= 1`. */
  negativeInputIds?: TensorData<BigInt64Array>;
  /** A1111 prompt weighting: token weights `[P, 77·k]` matching `inputIds`. */
  promptWeights?: TensorData<Float32Array>;
  negativePromptWeights?: TensorData<Float32Array>;
  numImagesPerPrompt: number;
  numInferenceSteps: number;
  guidanceScale: number;
  /** Pixels, multiples of the VAE scale factor. */
  height: number;
  width: number;
  /** `torch.Generator('cpu').manual_seed(seed)`, a safe integer ≥ 0. */
  seed: number;
  /** One CPU generator per image instead (diffusers' list of generators): `numPrompts*numImagesPerPrompt` safe integers ≥ 0. */
  seeds?: number[];
  /** Initial latents `[numPrompts*numImagesPerPrompt, 4, height/f, width/f]` float32 (f = vaeScaleFactor). */
  latents?: TensorData;
  /** Final CLIP layers skipped; 0 = none. */
  clipSkip: number;
  eta: number;
  outputType: 'image' | 'latent';
  /** diffusers scheduler class name. */
  schedulerName: string;
  /** The scheduler config merged with the overrides (snake_case keys). */
  schedulerConfig: Record<string, unknown>;
  /** LoRA scale of the call. */
  loraScale: number;
  /** img2img / inpainting: the input image `[height, width, 3]` RGB uint8, already resized to width×height. */
  image?: TensorData<Uint8Array>;
  /** In [0, 1]; required with `image` (and for SDXL img2img), absent otherwise. */
  strength?: number;
  /** Inpainting: the mask `[height, width]` uint8 grayscale (white = repaint), with `image`. */
  mask?: TensorData<Uint8Array>;
  /** ControlNet pipelines: one unit per net (MultiControlNetModel when several); absent = the plain pipeline. */
  controlnets?: NativeControlNetUnit[];
  /** guess_mode (required with controlnets). */
  guessMode?: boolean;
  /** Preview images handed to `onStep`: 'taesd' (the pipeline's preview decoder) or 'latent2rgb'; absent or '' = none. */
  previews?: '' | 'taesd' | 'latent2rgb';
  /** With `previews`: on steps that are multiples of it (1-based; default 1). */
  previewEvery?: number;
}

/** The request of `generate` for a StableDiffusionXLPipeline handle: the common fields plus SDXL's. */
export interface NativeXLGenerateRequest extends Omit<NativeGenerateRequest, 'mask'> {
  /** ids of `prompt_2` from the second tokenizer (`tokenizerDirs[1]`); absent for a refiner (one tokenizer). */
  inputIds2?: TensorData<BigInt64Array>;
  /** ids of `negative_prompt_2` from the second tokenizer; omitted when `guidanceScale <= 1`. */
  negativeInputIds2?: TensorData<BigInt64Array>;
  /** The weights of `inputIds2` / `negativeInputIds2` (tokenizer_2), same shapes. */
  promptWeights2?: TensorData<Float32Array>;
  negativePromptWeights2?: TensorData<Float32Array>;
  /**
   * True when the caller gave no negative prompt (diffusers' `negative_prompt is None`); with
   * `force_zeros_for_empty_prompt` in model_index.json the unconditional embeddings are zeros.
   */
  negativePromptIsNone: boolean;
  /** add_time_ids parts in pixels, [height, width] / [top, left] / [height, width]. */
  originalSize: [number, number];
  cropsCoordsTopLeft: [number, number];
  targetSize: [number, number];
  /** Refiner (requires_aesthetics_score) conditioning. */
  aestheticScore: number;
  negativeAestheticScore: number;
  /** Fractions in (0, 1) splitting the schedule between base (end) and refiner (start); absent = the whole schedule. */
  denoisingEnd?: number;
  denoisingStart?: number;
  /** img2img: init latents `[batch or 1, 4, h, w]` used as the image (e.g. a base run's outputType 'latent'). */
  imageLatents?: TensorData;
  /** Run StableDiffusionXLImg2ImgPipeline (`image` or `imageLatents` required). */
  img2img: boolean;
}

/** What `generate` resolves to. */
export interface NativeGenerateResult {
  /** `[batch, height, width, 3]` RGB uint8 (outputType 'image'). */
  images?: TensorData<Uint8Array>;
  /** Final latents `[batch, 4, height/f, width/f]` float32 (outputType 'latent'). */
  latents?: TensorData;
  /** The initial latents the generator produced (before `init_noise_sigma` scaling). */
  initialLatents: TensorData;
  /** The timesteps that were run. */
  timesteps: number[];
  timings: { encodeMs: number; denoiseMs: number; decodeMs: number; totalMs: number };
  /**
   * Present (true) when the float16/bfloat16 VAE decode gave NaN/inf and the images were decoded
   * again in float32 (diffusers' force_upcast); the pipeline's VAE stays in float32 from then on.
   */
  vaeUpcast?: true;
}

/** The speed/memory toggles of a pipeline (`pipelineSetOptimizations`; applied at the next generate). */
export interface NativeOptimizations {
  /** Attention slicing: 0 off, 'auto' (half the heads), 'max' (one head at a time) or n heads·batch per slice. */
  sliceSize: number | 'auto' | 'max';
  /**
   * at::scaled_dot_product_attention (libtorch >= 2.0): true = always (enableMemoryEfficientAttention),
   * false = the math path (setAttentionBackend('math')), 'flash' = sd-native's memory-efficient CPU kernel
   * (SDPA on CUDA), 'auto' (default) = the faster kernel: on CUDA SDPA, on the CPU SDPA in float32 on libtorch
   * >= 2.0, else flash or math per dtype and shape (nn::chooseAttentionKernel).
   */
  sdpa: boolean | 'auto' | 'flash';
  vaeSlicing: boolean;
  vaeTiling: boolean;
  channelsLast: boolean;
  /** '' off, or the 8-bit format of the UNet Linear/Conv weights. */
  fp8: '' | 'e4m3fn' | 'e5m2';
  /** '' off, 'model' or 'sequential' CPU offload (CUDA pipelines). */
  offload: '' | 'model' | 'sequential';
  /** enableCudaGraphs: the UNet forward captured per input signature and replayed (CUDA pipelines, no offload). */
  cudaGraphs: boolean;
}


/** The pipeline bindings lib/ uses; every one takes either kind of pipeline handle. */
export interface PipelineAddon {
  /** Loads a diffusers folder or a single file (E_MODEL_NOT_FOUND, E_BAD_CONFIG, E_BAD_CHECKPOINT, E_UNSUPPORTED_MODEL, E_DEVICE_UNAVAILABLE). */
  loadPipeline(path: string, opts: NativeLoadOptions & { xl: false }): Promise<SdPipelineHandle>;
  loadPipeline(path: string, opts: NativeLoadOptions & { xl: true }): Promise<SdxlPipelineHandle>;
  loadPipeline(path: string, opts: NativeLoadOptions): Promise<PipelineHandle>;
  pipelineInfo(h: PipelineHandle): NativePipelineInfo;
  /** Runs on the thread pool; `onStep` is called on the JS thread; `abort` stops the loop at the next step (E_ABORTED). */
  generate(
    h: PipelineHandle,
    req: NativeGenerateRequest | NativeXLGenerateRequest,
    onStep: ((s: NativeStepInfo) => void) | undefined,
    abort: AbortTokenHandle | undefined,
  ): Promise<NativeGenerateResult>;
  createAbortToken(): AbortTokenHandle;
  abortToken(t: AbortTokenHandle): void;
  disposePipeline(h: PipelineHandle): void;
  /** Validates and records the toggles (E_UNSUPPORTED_MODEL, E_DEVICE_UNAVAILABLE, E_INVALID_ARGUMENT); applied at the next generate. */
  pipelineSetOptimizations(h: PipelineHandle, opts: NativeOptimizations): void;
  /** Components with the bytes their weights hold now (fp8 storage shows here after a generate). */
  pipelineComponents(h: PipelineHandle): NativeComponentInfo[];
}

/** Inputs of the test binding `encodeText`: what generate encodes, for one prompt set. */
export interface NativeEncodeTextRequest {
  /** `[P, 77·k]` int64 ids of the first tokenizer (SD), or of `tokenizer` (SDXL; absent for a refiner). */
  inputIds: TensorData<BigInt64Array>;
  /** A1111 weights `[P, 77·k]` for `inputIds`. */
  promptWeights?: TensorData<Float32Array>;
  /** SDXL: ids of `tokenizer_2` and their weights. */
  inputIds2?: TensorData<BigInt64Array>;
  promptWeights2?: TensorData<Float32Array>;
  /** 0 = none. */
  clipSkip: number;
}

/** Pipeline bindings used only by the tests. */
export interface PipelineTestingAddon {
  /** Native pipelines alive in this process, both kinds (a pipeline's weights are freed with it). */
  livePipelines(): number;
  /**
   * The prompt embeddings of generate: SD → `embeds` [P, 77·k, D]; SDXL → `embeds` [P, 77·k, D1 + D2]
   * and `pooled` [P, projection_dim] (float32).
   */
  encodeText(h: PipelineHandle, req: NativeEncodeTextRequest): Promise<{ embeds: TensorData; pooled?: TensorData }>;
  /**
   * Fault injection: the next `nonFiniteDecodes` VAE decodes of this pipeline return NaN images (as
   * an overflowing float16 SDXL VAE does), so the float32 re-decode is testable on a CPU. 0 = off.
   */
  pipelineTestFaults(h: PipelineHandle, faults: { nonFiniteDecodes: number }): void;
  /**
   * Process-wide counters of the denoising loops' noise banks: banks `filled` (one per call whose
   * scheduler draws noise) and draws `served` from them (one per such step).
   */
  noiseBankStats(): { filled: number; served: number };
  /**
   * What enableCudaGraphs did on this pipeline: graphs `captures`, forwards served by `replays`,
   * `invalidations` (graphs dropped because weights, LoRA, attention or flags changed), `graphs`
   * held now. Zeros while it is off. Waits for a generation in flight.
   */
  pipelineCudaGraphStats(h: PipelineHandle): { captures: number; replays: number; invalidations: number; graphs: number };
}
