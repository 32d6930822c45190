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
  /** at::scaled_dot_product_attention is available (libtorch >= 2.0). */
  sdpa: boolean;
  /** fp8 weight storage uses libtorch's float8 dtypes (>= 2.1); else raw uint8 codes and sd-native's decoder. */
  float8: boolean;
  /**
   * Reduced-precision CPU kernels of this libtorch found wrong at start-up and routed around
   * (native/core/runtime/kernel_quirks.h): 'conv2dNarrowOutput' (those convs run in float32),
   * 'groupNormChannelsLast' (the input is made contiguous first). Empty on a correct build.
   */
  cpuKernelQuirks: { bfloat16: Array<'conv2dNarrowOutput' | 'groupNormChannelsLast'>; float16: Array<'conv2dNarrowOutput' | 'groupNormChannelsLast'> };
  cuda: boolean;
  threads: number;
}

/** Options of `loadTextEncoder`. */
export interface TextEncoderLoadOptions {
  /** Compute dtype (default 'float32'). 'float16' on CPU fails with E_UNSUPPORTED_MODEL where libtorch lacks the kernels (1.13). */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /** Weights file variant: 'fp16' reads model.fp16.safetensors. */
  variant?: string;
  /** 'cpu' (default), 'cuda', 'cuda:<index>'. */
  device?: string;
}

/** Outputs of transformers' CLIPTextModel(WithProjection) forward, as float32 data. */
export interface TextEncoderOutput {
  /** [B, S, D] after final_layer_norm. */
  lastHiddenState: TensorData;
  /** L+1 entries [B, S, D]: embeddings, then each layer's output (no final LN); empty with outputHiddenStates false. */
  hiddenStates: TensorData[];
  /** [B, D] final-LN'ed state at the EOS position (pooler_output). */
  pooled: TensorData;
  /** [B, projection_dim] = text_projection(pooled), CLIPTextModelWithProjection only. */
  textEmbeds?: TensorData;
}

/** Config and placement of a loaded text encoder. */
export interface TextEncoderInfo {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  eosTokenId: number;
  hiddenAct: string;
  withProjection: boolean;
  projectionDim?: number;
  dtype: string;
  device: string;
}

/** What `schedulerState` reports (tensors on the CPU; timesteps etc. only after setTimesteps). */
export interface NativeSchedulerState {
  name: string;
  order: number;
  numTrainTimesteps: number;
  alphasCumprod: TensorData<Float32Array>;
  /** int64 (BigInt64Array) or float32/float64, as diffusers' `scheduler.timesteps`. */
  timesteps?: TensorData<BigInt64Array | Float32Array | Float64Array>;
  initNoiseSigma?: number;
  sigmas?: TensorData<Float32Array>;
}

/** model_index.json of a diffusers pipeline folder. */
export interface ModelIndex {
  dir: string;
  /** `_class_name`, e.g. 'StableDiffusionPipeline', 'StableDiffusionXLPipeline'. */
  className: string;
  /** `_diffusers_version` ('' when absent). */
  diffusersVersion: string;
  /** component name → [library, class], or null for `[null, null]` (e.g. a disabled safety_checker). */
  components: Record<string, [string, string] | null>;
  /** Present when model_index.json sets it (SDXL pipelines). */
  forceZerosForEmptyPrompt?: boolean;
}

/** Options of {@link NativeAddon.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Component folder name ('unet', 'vae', 'text_encoder', ...); with singleFile: 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2' (SDXL). */
  component?: string;
  /** Weight variant, e.g. 'fp16' → `<base>.fp16.safetensors`. */
  variant?: string;
  /** 'diffusion_pytorch_model' | 'model'; default from the component's config.json. */
  baseName?: string;
  /** `path` is an original single-file checkpoint (mapped to diffusers names). */
  singleFile?: boolean;
  /** With singleFile: a diffusers folder whose unet/vae/text_encoder(/text_encoder_2) config.json fix the architecture. */
  configDir?: string;
}

/** One tensor of a state dict: its shape and torch dtype name ('float32', 'float16', 'int64', ...). */
export interface TensorSummary {
  shape: number[];
  dtype: string;
}

/** Per component: unet, vae, text_encoder (absent for an SDXL refiner), text_encoder_2 (SDXL only). */
export type CheckpointComparisons = Record<'unet' | 'vae' | 'text_encoder', CheckpointComparison> & { text_encoder_2?: CheckpointComparison };

/** Result of {@link NativeAddon.saveSingleFile}. */
export interface SingleFileSummary {
  /** The file written. */
  path: string;
  /** Layout written: 'sd1' (cond_stage_model.transformer), 'sd2' (cond_stage_model.model), 'sdxl' (conditioner.embedders). */
  family: 'sd1' | 'sd2' | 'sdxl';
  /** SDXL refiner layout (no text_encoder; OpenCLIP bigG as conditioner.embedders.0.model). */
  refiner: boolean;
  /** Number of tensors written. */
  tensors: number;
}

/** A single-file component compared with the same component loaded from a folder. */
export interface CheckpointComparison {
  /** In the folder, not in the mapped single file. */
  missing: string[];
  /** In the mapped single file, not in the folder. */
  unexpected: string[];
  /** Same name, different shape or dtype ("name: [shape] dtype vs [shape] dtype"). */
  mismatched: string[];
  /** Largest |single − folder| over the tensors compared. */
  maxAbsDiff: number;
  /** Number of tensors compared. */
  count: number;
}

/** Result of validating an in-memory safetensors image. */
export interface SafetensorsValidation {
  ok: true;
  tensors: number;
  /** Bytes read through the tensors (= the data section). */
  bytes: number;
  /** Sum of every byte read (a checksum over the data section). */
  byteSum: number;
}

/** Opaque handle to a native object. */
export type NativeHandle = { readonly __nativeHandle: unique symbol };

/** Options of `loadVae`. */
export interface NativeVaeLoadOptions {
  /** Weight and compute dtype (default 'float32'). */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /** Weights file variant: `diffusion_pytorch_model.<variant>.safetensors` (e.g. 'fp16'). */
  variant?: string;
  /** 'cpu' (default) | 'cuda' | 'cuda:<index>'. */
  device?: string;
}

/** Options of `vaeSetOptions` (absent fields keep their current value). */
export interface NativeVaeOptions {
  /** diffusers enable_slicing: encode/decode one batch element at a time. */
  slicing?: boolean;
  /** diffusers enable_tiling: encode/decode inputs larger than one tile in overlapping tiles. */
  tiling?: boolean;
  /** tile_sample_min_size in pixels (default: config sample_size); a multiple of the VAE scale factor. */
  tileSize?: number;
  /** tile_overlap_factor in [0, 1) (default 0.25). */
  tileOverlap?: number;
}

/** What `vaeInfo` / `vaeSetOptions` report about a loaded AutoencoderKL. */
export interface NativeVaeInfo {
  vaeScaleFactor: number;
  scalingFactor: number;
  shiftFactor: number | null;
  forceUpcast: boolean;
  latentChannels: number;
  inChannels: number;
  outChannels: number;
  sampleSize: number;
  dtype: string;
  device: string;
  slicing: boolean;
  tiling: boolean;
  tileSampleMinSize: number;
  tileLatentMinSize: number;
  tileOverlapFactor: number;
}

/** The posterior `vaeEncode` returns (float32 data, [B, latent, h, w]; moments [B, 2·latent, h, w]). */
export interface NativeVaeEncodeResult {
  moments: TensorData;
  mean: TensorData;
  /** clamped to [-30, 20] */
  logvar: TensorData;
  std: TensorData;
  /** mean + std·randn drawn from a CPU generator seeded with `seed` (only when a seed was given). */
  sample?: TensorData;
}
/** loadUNet options (native/addon/unet.cc). dtype default 'float32', device default 'cpu'. */
export interface UNetLoadOptions { dtype?: 'float32' | 'float16' | 'bfloat16'; device?: string; variant?: string }
/** unetForward inputs: sample [B,C,h,w], timestep 0-d/[B] (a number is a 0-d tensor), encoderHiddenStates [B,M,D]; SDXL: textEmbeds [B,k], timeIds [B,6]. */
export interface UNetForwardInputs {
  sample: TensorData; timestep: number | AnyTensorData; encoderHiddenStates: TensorData;
  textEmbeds?: TensorData; timeIds?: TensorData;
}
/** Attention settings (diffusers enable_attention_slicing / SDPA); 0 or null turns slicing off. */
/** sdpa: true = always SDPA (libtorch >= 2.0), false = the math path, 'auto' = SDPA where it is the faster kernel (CUDA; CPU float32). */
export interface AttentionSettings { sliceSize?: number | 'auto' | 'max' | null; sdpa?: boolean | 'auto' }
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
  /** SDXL (generateXl): add_time_ids parts in pixels; omitted = diffusers' defaults ((height, width), (0, 0), (height, width)). */
  originalSize?: [number, number];
  cropsCoordsTopLeft?: [number, number];
  targetSize?: [number, number];
  /** SDXL refiner (requires_aesthetics_score): defaults 6.0 / 2.5. */
  aestheticScore?: number;
  negativeAestheticScore?: number;
  /** SDXL: fractions in (0, 1) splitting the schedule between base (end) and refiner (start). */
  denoisingEnd?: number;
  denoisingStart?: number;
  /** SDXL img2img: init latents `[batch or 1, 4, h, w]` used as the image (e.g. a base run's outputType 'latent'). */
  imageLatents?: TensorData;
  /** SDXL: run StableDiffusionXLImg2ImgPipeline (image or imageLatents required). */
  img2img?: boolean;
  /** LoRA scale of the call (default 1). */
  loraScale?: number;
  /** Inpainting: the mask `[height, width]` uint8 grayscale (white = repaint), with `image`. */
  mask?: TensorData<Uint8Array>;
  /** A1111 prompt weighting: token weights `[P, 77·k]` matching `inputIds` (then `[P, 77·k]` too). */
  promptWeights?: TensorData<Float32Array>;
  negativePromptWeights?: TensorData<Float32Array>;
  /** SDXL: the weights of `inputIds2` / `negativeInputIds2` (tokenizer_2), same shapes. */
  promptWeights2?: TensorData<Float32Array>;
  negativePromptWeights2?: TensorData<Float32Array>;
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

/** Options of `createRandomWeights`: one component's random weights from its config.json. */
export interface NativeRandomWeightsOptions {
  component: 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2';
  configPath: string;
  seed: number;
  /** The .safetensors file to write. */
  out: string;
  dtype?: 'float32' | 'float16' | 'bfloat16';
}

/** The speed/memory toggles of a pipeline (`pipelineSetOptimizations`; applied at the next generate). */
export interface NativeOptimizations {
  /** Attention slicing: 0 off, 'auto' (half the heads), 'max' (one head at a time) or n heads·batch per slice. */
  sliceSize: number | 'auto' | 'max';
  /**
   * at::scaled_dot_product_attention (libtorch >= 2.0): true = always (enableMemoryEfficientAttention),
   * false = the math path (disableMemoryEfficientAttention), 'auto' (default) = where it is the faster
   * kernel: on CUDA always, on the CPU in float32 (the math path for bfloat16/float16). Math everywhere before 2.0.
   */
  sdpa: boolean | 'auto';
  vaeSlicing: boolean;
  vaeTiling: boolean;
  channelsLast: boolean;
  /** '' off, or the 8-bit format of the UNet Linear/Conv weights. */
  fp8: '' | 'e4m3fn' | 'e5m2';
  /** '' off, 'model' or 'sequential' CPU offload (CUDA pipelines). */
  offload: '' | 'model' | 'sequential';
}

export interface NativeAddon {
  readSafetensorsHeader(path: string): Promise<SafetensorsHeader>;
  readSafetensors(path: string): Promise<Record<string, TensorData<any>>>;
  writeSafetensors(path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>): Promise<void>;
  buildInfo(): BuildInfo;
  /** Loads a transformers CLIPTextModel(WithProjection) folder (config.json + model[.variant].safetensors). */
  loadTextEncoder(dir: string, options?: TextEncoderLoadOptions): Promise<NativeHandle>;
  /** inputIds int64 [B, S] → outputs. */
  textEncoderForward(handle: NativeHandle, inputIds: TensorData<BigInt64Array>,
    options?: { outputHiddenStates?: boolean }): Promise<TextEncoderOutput>;
  /** hidden_states[index] (python indexing: -2 = penultimate), running only the layers needed; optionally final-LN'ed. */
  textEncoderHiddenState(handle: NativeHandle, inputIds: TensorData<BigInt64Array>, index: number,
    options?: { finalLayerNorm?: boolean }): Promise<TensorData>;
  /** text_model.final_layer_norm(x), x [..., D]. */
  textEncoderFinalLayerNorm(handle: NativeHandle, x: TensorData): Promise<TensorData>;
  /** Overwrites token embedding rows firstId… with rows [n, D], growing the table as needed (textual inversion). */
  textEncoderSetTokenEmbeddings(handle: NativeHandle, firstId: number, rows: TensorData): Promise<void>;
  textEncoderInfo(handle: NativeHandle): TextEncoderInfo;
  disposeTextEncoder(handle: NativeHandle): void;
  loadVae(dir: string, options?: NativeVaeLoadOptions): Promise<NativeHandle>;
  vaeInfo(handle: NativeHandle): NativeVaeInfo;
  vaeDecode(handle: NativeHandle, latents: TensorData): Promise<TensorData>;
  vaeEncode(handle: NativeHandle, image: TensorData, seed?: number): Promise<NativeVaeEncodeResult>;
  vaeSetOptions(handle: NativeHandle, options: NativeVaeOptions): NativeVaeInfo;
  disposeVae(handle: NativeHandle): void;
  loadUNet(dir: string, options?: UNetLoadOptions): Promise<NativeHandle>;
  unetForward(unet: NativeHandle, inputs: UNetForwardInputs): Promise<TensorData>;
  /** Applies from the next unetForward; returns the settings in effect (sdpa false where libtorch < 2.0 or slicing is on). */
  unetSetAttention(unet: NativeHandle, settings: AttentionSettings): { sliceSize: number | 'auto' | 'max'; sdpa: boolean };
  disposeUNet(unet: NativeHandle): void;
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
  /** Native pipelines alive in this process (a pipeline's weights are freed with it). */
  livePipelines(): number;
  disposePipeline(h: NativeHandle): void;
  // pipeline_xl.cc: StableDiffusionXLPipeline (same request/result shapes as generate, plus the SDXL fields)
  loadPipelineXl(path: string, opts: NativeLoadOptions): Promise<NativeHandle>;
  pipelineXlInfo(h: NativeHandle): NativePipelineInfo & { forceZerosForEmptyPrompt: boolean; requiresAestheticsScore: boolean };
  generateXl(
    h: NativeHandle,
    req: NativeGenerateRequest,
    onStep: ((s: NativeStepInfo) => void) | undefined,
    abort: NativeHandle | undefined,
  ): Promise<NativeGenerateResult>;
  disposePipelineXl(h: NativeHandle): void;
  livePipelinesXl(): number;
  /** Validates and records the toggles (E_UNSUPPORTED_MODEL, E_DEVICE_UNAVAILABLE, E_INVALID_ARGUMENT); applied at the next generate. */
  pipelineSetOptimizations(h: NativeHandle, opts: NativeOptimizations): void;
  /** Components with the bytes their weights hold now (fp8 storage shows here after a generate). */
  pipelineComponents(h: NativeHandle): NativeComponentInfo[];
  // backends.cc: torch.backends flags
  getCudnnBenchmark(): boolean;
  setCudnnBenchmark(on: boolean): void;
  getCudaMatmulAllowTf32(): boolean;
  setCudaMatmulAllowTf32(on: boolean): void;
  getCudnnAllowTf32(): boolean;
  setCudnnAllowTf32(on: boolean): void;
  // lora.cc
  loadLora(h: NativeHandle, path: string, opts: { adapterName?: string; weight?: number }):
    Promise<{ adapter: string; unetModules: number; textEncoderModules: number; textEncoder2Modules: number }>;
  setLoraAdapters(h: NativeHandle, names: string[], weights: number[]): Promise<void>;
  fuseLora(h: NativeHandle, scale: number): Promise<number>;
  unfuseLora(h: NativeHandle): Promise<number>;
  unloadLora(h: NativeHandle, adapterName?: string): Promise<void>;
  loraAdapters(h: NativeHandle): Promise<string[]>;
  /** A copy of a component's weight (float32). */
  pipelineWeight(h: NativeHandle, component: 'unet' | 'text_encoder' | 'text_encoder_2' | 'vae', name: string): Promise<TensorData>;
  /** Textual inversion rows of `component` (default 'text_encoder'); resolves to its new vocabulary size. */
  setTokenEmbeddings(h: NativeHandle, firstId: number, rows: TensorData, component?: 'text_encoder' | 'text_encoder_2'): Promise<number>;
  /** The prompt embeddings of generate(): ids [P, 77·k], optional A1111 weights [P, 77·k] → [P, 77·k, D]. */
  /**
   * io.cc: values rounded to the nearest OCP 8-bit float and decoded back. impl 'reference' (default): sd-native's
   * own encoder/decoder; 'storage': what fp8 weight storage keeps (libtorch's float8 dtypes on >= 2.1);
   * 'cast': libtorch's bare float8 cast, no saturation (>= 2.1 only, else E_UNSUPPORTED_MODEL).
   */
  fp8Quantize(values: TensorData<Float32Array>, format: 'e4m3fn' | 'e5m2', impl?: 'reference' | 'storage' | 'cast'): Promise<TensorData<Float32Array>>;
  /** io.cc: the float32 values of 8-bit codes, by sd-native's table ('reference') or as fp8 storage decodes them ('storage'). */
  fp8Decode(codes: TensorData<Uint8Array>, format: 'e4m3fn' | 'e5m2', impl: 'reference' | 'storage'): Promise<TensorData<Float32Array>>;
  encodeText(h: NativeHandle, ids: TensorData<BigInt64Array>, weights?: TensorData<Float32Array>, clipSkip?: number): Promise<TensorData>;
  /**
   * SDXL (pipeline_xl.cc): the prompt embeddings of generateXl: ids [P, 77·k] (tokenizer), ids2 (tokenizer_2;
   * omitted for a refiner), optional A1111 weights for each → embeds [P, 77·k, D1 + D2] and pooled [P, projection_dim].
   */
  encodeTextXl(h: NativeHandle, ids: TensorData<BigInt64Array>, ids2?: TensorData<BigInt64Array>, weights?: TensorData<Float32Array>,
    weights2?: TensorData<Float32Array>, clipSkip?: number): Promise<{ embeds: TensorData; pooled: TensorData }>;
  createRandomWeights(opts: NativeRandomWeightsOptions): Promise<{ parameters: number; bytes: number }>;
  // schedulers.cc (synchronous)
  schedulerNames(): string[];
  createScheduler(className: string, configJson: string): NativeHandle;
  schedulerSetTimesteps(scheduler: NativeHandle, numInferenceSteps: number): void;
  schedulerState(scheduler: NativeHandle): NativeSchedulerState;
  schedulerScaleModelInput(scheduler: NativeHandle, sample: AnyTensorData, timestep: number): TensorData;
  schedulerStep(scheduler: NativeHandle, modelOutput: AnyTensorData, timestep: number, sample: AnyTensorData,
    generator: NativeHandle | null, eta: number): { prevSample: TensorData; predOriginalSample?: TensorData };
  schedulerAddNoise(scheduler: NativeHandle, original: AnyTensorData, noise: AnyTensorData, timestep: number): TensorData;
  schedulerSetBeginIndex(scheduler: NativeHandle, beginIndex: number): void;
  createGenerator(seed: bigint): NativeHandle;
  generatorRandn(generator: NativeHandle, shape: number[]): TensorData;
  readModelIndex(dir: string): Promise<ModelIndex>;
  loadStateDict(path: string, options?: LoadStateDictOptions): Promise<Record<string, TensorSummary>>;
  compareCheckpoints(singleFile: string, configDir: string, folder: string): Promise<CheckpointComparisons>;
  saveSingleFile(modelDir: string, outFile: string, options?: { variant?: string }): Promise<SingleFileSummary>;
  /** Synchronous; throws a coded Error (E_BAD_CHECKPOINT) when the image is invalid. */
  validateSafetensorsBuffer(buf: Uint8Array): SafetensorsValidation;
  [key: string]: any;
}
