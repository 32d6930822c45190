/**
 * The contract between the TypeScript facade and the native addon: what `sd_native.node`
 * exports. Hand-written; keep it in step with native/addon/*.cc.
 * (A .ts file holding only types, so that the published declarations include it.)
 */

/** A dense tensor crossing the boundary: row-major data and its shape. */
export interface TensorData<A extends ArrayLike<number | bigint> = Float32Array> {
  data: A;
  shape: number[];
  /** Set on tensors coming from native code: 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool'. */
  dtype?: string;
}

export type AnyTensorData = TensorData<Float32Array> | TensorData<Float64Array> | TensorData<BigInt64Array>
  | TensorData<Int32Array> | TensorData<Uint8Array>;

/** One tensor entry of a safetensors header. */
export interface SafetensorsTensorInfo {
  name: string;
  /** safetensors dtype: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL */
  dtype: string;
  shape: number[];
  /** [begin, end) relative to the data section. */
  dataOffsets: [number, number];
  /** [begin, end) from the start of the file. */
  fileOffsets: [number, number];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: SafetensorsTensorInfo[];
  headerSize: number;
}

export interface BuildInfo {
  libtorchVersion: string;
  sdpa: boolean;
  cuda: boolean;
  threads: number;
}

/** Opaque handle to a native object. */
export type NativeHandle = { readonly __nativeHandle: unique symbol };

// ---------------------------------------------------------------------------------------------
// Pipelines (native/addon/pipeline.cc)
// ---------------------------------------------------------------------------------------------

/** Model family detected at load. */
export type ModelFamily = 'sd1' | 'sd2' | 'sdxl';
/** Compute dtype of a pipeline. */
export type PipelineDtype = 'float32' | 'float16' | 'bfloat16';

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
  /** CPU intra-op threads. */
  threads?: number;
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
}

/** Progress report sent once per denoising step (on the JS thread). */
export interface NativeStepInfo {
  /** 1-based index of the step that just finished. */
  step: number;
  numSteps: number;
  /** Scheduler timestep of that step. */
  timestep: number;
}

/** The baton of `generate` (already validated, tokenized and defaulted by lib/pipeline.ts). */
export interface NativeGenerateRequest {
  /** Token ids of the prompts, `[numPrompts, 77]` int64 (first tokenizer). */
  inputIds: TensorData<BigInt64Array>;
  /** Token ids of the negative prompts, same shape; omitted when `guidanceScale <= 1`. */
  negativeInputIds?: TensorData<BigInt64Array>;
  /**
   * SDXL only (proposed): ids of `prompt_2` from the second tokenizer (`tokenizerDirs[1]`),
   * `[numPrompts, 77]`; present when the model has two tokenizers.
   */
  inputIds2?: TensorData<BigInt64Array>;
  /** SDXL only (proposed): ids of `negative_prompt_2` from the second tokenizer; omitted when `guidanceScale <= 1`. */
  negativeInputIds2?: TensorData<BigInt64Array>;
  /**
   * SDXL only (proposed): true when the caller gave no negative prompt (diffusers' `negative_prompt is None`);
   * with `force_zeros_for_empty_prompt` in model_index.json the unconditional embeddings are zeros.
   */
  negativePromptIsNone?: boolean;
  numImagesPerPrompt: number;
  numInferenceSteps: number;
  guidanceScale: number;
  /** Pixels, multiples of 8. */
  height: number;
  width: number;
  /** `torch.Generator('cpu').manual_seed(seed)` */
  seed: number;
  /** Initial latents `[numPrompts*numImagesPerPrompt, 4, height/f, width/f]` float32 (f = vaeScaleFactor). */
  latents?: TensorData;
  clipSkip?: number;
  eta: number;
  outputType: 'image' | 'latent';
  /** diffusers scheduler class name. */
  schedulerName: string;
  /** The scheduler config merged with the overrides (snake_case keys). */
  schedulerConfig: Record<string, unknown>;
  /** img2img: the input image `[height, width, 3]` RGB uint8, already resized to width×height. */
  image?: TensorData<Uint8Array>;
  /** img2img: in [0, 1]. */
  strength?: number;
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
}

/** Options of `createModel`: writes a random-weight diffusers folder (tests, benchmarks). */
export interface NativeCreateModelOptions {
  preset: 'sd15' | 'sd21' | 'sdxl';
  scale: 'tiny' | 'full';
  seed: number;
  out: string;
  dtype?: 'float32' | 'float16';
}

export interface NativeAddon {
  readSafetensorsHeader(path: string): Promise<SafetensorsHeader>;
  readSafetensors(path: string): Promise<Record<string, TensorData<any>>>;
  writeSafetensors(path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>): Promise<void>;
  buildInfo(): BuildInfo;
  loadPipeline(path: string, opts: NativeLoadOptions): Promise<NativeHandle>;
  pipelineInfo(h: NativeHandle): NativePipelineInfo;
  generate(
    h: NativeHandle,
    req: NativeGenerateRequest,
    onStep: ((s: NativeStepInfo) => void) | undefined,
    abort: NativeHandle | undefined,
  ): Promise<NativeGenerateResult>;
  createAbortToken(): NativeHandle;
  abortToken(t: NativeHandle): void;
  disposePipeline(h: NativeHandle): void;
  createModel(opts: NativeCreateModelOptions): Promise<{ path: string; parameters: Record<string, number> }>;
  [key: string]: any;
}
