/**
 * The public option types of the pipelines (diffusers' `__call__` / `from_pretrained` arguments,
 * camelCased). Their zod schemas, defaults and checks are in lib/options.ts, the one validation layer.
 */
import type { PipelineDtype } from '../types/native.js';
import type { AutoencoderKL } from './autoencoder_kl.js';
import type { AutoencoderTiny } from './autoencoder_tiny.js';
import type { DecodedImage } from './image.js';

/** One prompt, or one prompt per batch entry. */
export type PromptInput = string | string[];

/** Raw pixels: row-major `[height, width, channels]` uint8 (channels 3 = RGB, 4 = RGBA; alpha is dropped). */
export interface RawImageInput {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3 | 4;
}

/** An input image: a file path, an encoded PNG/JPEG/WebP buffer, or raw pixels. */
export type ImageInput = string | Buffer | RawImageInput;

/** Latents given by the caller: float32, shape `[batch, 4, height/f, width/f]` (f = the model's vaeScaleFactor, 8 for real models). */
export interface LatentsInput {
  data: Float32Array;
  shape: number[];
}

/** What `onStep` receives once per denoising step. */
export interface StepProgress {
  /** 1-based index of the step that just finished. */
  step: number;
  /** Number of denoising steps of this call (for img2img: `int(numInferenceSteps × strength)`, or more for 2nd-order schedulers). */
  numSteps: number;
  /** Scheduler timestep of that step (e.g. 999 … 1). */
  timestep: number;
  /** Milliseconds since this call started running (after any wait in the pipeline's queue), measured in JS. */
  elapsedMs: number;
  /**
   * With `previews` set, on steps that are multiples of `previewEvery`: one RGB preview per image
   * of the batch, of the latents after this step (diffusers' callback_on_step_end `latents`),
   * made on the native generating thread. 'taesd': the preview decoder's decode, `8·h × 8·w` for
   * TAESD (the final size with real SD models); 'latent2rgb': the latent size `h × w`.
   */
  previewImages?: DecodedImage[];
}

/**
 * Options of {@link StableDiffusionPipeline.generate} (diffusers' `__call__` arguments, camelCased).
 */
export interface GenerateOptions {
  /** Prompt, or one prompt per batch entry (non-empty array). */
  prompt: PromptInput;
  /** What to steer away from (default `""`, diffusers' `negative_prompt`); a string applies to every prompt, an array must have one entry per prompt. Unused when `guidanceScale <= 1`. */
  negativePrompt?: PromptInput;
  /** SDXL only: the prompt for the second text encoder (`prompt_2`, default: `prompt`). */
  prompt2?: PromptInput;
  /** SDXL only: the negative prompt for the second text encoder (`negative_prompt_2`, default: `negativePrompt`). */
  negativePrompt2?: PromptInput;
  /** Denoising steps, integer in [1, 1000] (default 50). */
  numInferenceSteps?: number;
  /** Classifier-free guidance scale, finite and ≥ 0 (default 7.5); ≤ 1 disables guidance (no negative prompt is encoded). */
  guidanceScale?: number;
  /** Image height in pixels: positive multiple of 8, ≤ 8192 (default: the model's `sampleSize × vaeScaleFactor`, e.g. 512 for SD 1.5). */
  height?: number;
  /** Image width in pixels: positive multiple of 8, ≤ 8192 (default as `height`). */
  width?: number;
  /** Images per prompt, integer in [1, 64] (default 1). */
  numImagesPerPrompt?: number;
  /**
   * Seed of the CPU generator (`torch.Generator('cpu').manual_seed(seed)`): a non-negative safe
   * integer (default: a random 32-bit integer, returned in the result). One number: one generator
   * draws the whole batch, as diffusers with one generator. A list: one generator per image
   * (diffusers' `generator=[torch.Generator('cpu').manual_seed(s) for s in seeds]`), exactly
   * `numPrompts × numImagesPerPrompt` seeds; image i then equals the same prompt run alone with
   * `seed: seeds[i]` (txt2img, img2img, SDXL; inpainting encodes its image with the first
   * generator, as diffusers does, so there only image 0 does).
   * AUTOMATIC1111 gives image i of a batch the seed `seed + i`; `seed: [s, s + 1, …]` follows that
   * convention (A1111 draws its noise differently, so the pixels still differ from A1111's).
   */
  seed?: number | number[];
  /** Initial latents `[numPrompts × numImagesPerPrompt, 4, height/f, width/f]` float32 (f = vaeScaleFactor) instead of drawing them from the seed. */
  latents?: LatentsInput;
  /** Number of final CLIP layers to skip, integer ≥ 1 (diffusers' `clip_skip`; default: none). */
  clipSkip?: number;
  /** DDIM's η, finite and ≥ 0 (default 0; other schedulers ignore it). */
  eta?: number;
  /** Scale of the loaded LoRA adapters for this call, UNet and text encoder (diffusers' `cross_attention_kwargs={"scale": s}`; default 1). */
  loraScale?: number;
  /**
   * Folder of LoRA files for AUTOMATIC1111 prompt tags: `<lora:name:weight>` in the prompt loads
   * `<loraDir>/<name>.safetensors` (once, as adapter `name`) and applies it with `weight` for this
   * call only; the tags are removed before tokenization. Without `loraDir` tags stay plain text.
   */
  loraDir?: string;
  /**
   * 'none' (default, diffusers-exact) or 'a1111': AUTOMATIC1111 emphasis — `(word)` ×1.1,
   * `((word))` ×1.21, `(word:1.3)`, `[word]` ÷1.1, `\\(` literal, `BREAK` — with prompts longer
   * than 75 tokens encoded as 77-token chunks and concatenated instead of truncated; weights
   * multiply the text encoder's hidden states and the original mean is restored.
   * Each prompt (and negative prompt, `prompt2`…) may make at most 32 chunks (2,400 tokens,
   * `MAX_PROMPT_CHUNKS` in lib/prompt-weighting.ts; diffusers and A1111 have no limit): a longer
   * one rejects the call with InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field, the
   * limit and its length, before any native work. With 'none' a long prompt is truncated to
   * CLIP's 77 tokens (with an `SD_PROMPT_TRUNCATED` warning).
   */
  promptWeighting?: 'none' | 'a1111';
  /** 'image' (default) decodes to pixels; 'latent' returns the final latents only. */
  outputType?: 'image' | 'latent';
  /** Called on the JS thread after every denoising step. */
  onStep?: (progress: StepProgress) => void;
  /**
   * Live previews handed to `onStep` as `previewImages` (needs `onStep`): 'taesd' decodes the
   * step's latents with the pipeline's preview decoder (an AutoencoderTiny: load option
   * `previewDecoder` or `setPreviewDecoder`); 'latent2rgb' is AUTOMATIC1111's weightless
   * "Approx cheap" linear map (4×3 coefficients per family, at the latent size). Off by default;
   * the final images are identical with and without previews.
   */
  previews?: 'taesd' | 'latent2rgb';
  /** With `previews`: a preview on every `previewEvery`-th step (1-based: steps k·previewEvery), integer 1–1000, default 1. */
  previewEvery?: number;
  /** Cancels the call; it then rejects with `AbortError` (`E_ABORTED`). Checked at least once per step. */
  signal?: AbortSignal;
}

/** Options of {@link StableDiffusionImg2ImgPipeline.generate}: {@link GenerateOptions} (without `latents`) plus the input image. */
export interface Img2ImgOptions extends Omit<GenerateOptions, 'latents'> {
  /** The image to start from; resized (lanczos) to `width × height` when given, else its size rounded down to a multiple of 8. */
  image: ImageInput;
  /** How much to transform the image, in [0, 1] (default 0.8): `int(numInferenceSteps × strength)` steps are run. */
  strength?: number;
}

/** Options of {@link StableDiffusionInpaintPipeline.generate}. */
export interface InpaintOptions extends Omit<Img2ImgOptions, 'strength'> {
  /**
   * The mask: white (≥ 128 after grayscale) = repaint, black = keep. A path or encoded Buffer
   * (converted to grayscale with PIL's 'L' weights after resizing to the image size), or raw
   * `{ data, width, height, channels: 1 }` grayscale at the image size (or channels 3/4).
   */
  maskImage: ImageInput | RawMaskInput;
  /** In [0, 1] (default 1: start from pure noise); below 1 the image latents are noised to the strength's timestep. */
  strength?: number;
}

/** A raw grayscale mask, row-major uint8 `[height, width]`. */
export interface RawMaskInput { data: Uint8Array; width: number; height: number; channels: 1 }

/** The SDXL micro-conditioning options (diffusers' names in camelCase). */
export interface XLConditioningOptions {
  /** `original_size` as [height, width] pixels (default: the output size). */
  originalSize?: [number, number];
  /** `crops_coords_top_left` as [top, left] pixels (default [0, 0]). */
  cropsCoordsTopLeft?: [number, number];
  /** `target_size` as [height, width] pixels (default: the output size). */
  targetSize?: [number, number];
}

/** Options of {@link StableDiffusionXLPipeline.generate}. */
export interface XLGenerateOptions extends GenerateOptions, XLConditioningOptions {
  /**
   * `denoising_end` in (0, 1): stop once the timesteps fall below `int(round(T − denoisingEnd·T))`
   * (T = num_train_timesteps); with `outputType: 'latent'` the latents go to a refiner that runs
   * with the same `denoisingStart`.
   */
  denoisingEnd?: number;
}

/** Options of {@link StableDiffusionXLImg2ImgPipeline.generate}. */
export interface XLImg2ImgOptions extends Omit<Img2ImgOptions, 'image'>, XLConditioningOptions {
  /** An image (path, Buffer, raw pixels) or latents `{ data: Float32Array, shape: [batch|1, 4, h, w] }` (a base call's `latents`). */
  image: ImageInput | LatentsInput;
  /** Strength (default 0.3, diffusers' SDXL img2img default); ignored with `denoisingStart`. */
  strength?: number;
  /** `denoising_start` in (0, 1): run only the timesteps below `int(round(T − denoisingStart·T))`, no noise added. */
  denoisingStart?: number;
  /** `denoising_end` in (0, 1), as for the base pipeline. */
  denoisingEnd?: number;
  /** `aesthetic_score` (default 6.0); used when model_index.json sets `requires_aesthetics_score` (the refiner). */
  aestheticScore?: number;
  /** `negative_aesthetic_score` (default 2.5). */
  negativeAestheticScore?: number;
}

/** Options of `fromPretrained` / `fromSingleFile`. */
/** The Hugging Face Hub options of every loader that takes a Hub id or file (pipelines, AutoencoderKL). */
export interface HubLoadOptions {
  /**
   * Hub ids only (`org/name`): the branch, tag or 40-hex commit to load (diffusers' `revision`;
   * default `main`, or the id's `@revision`, which it must not contradict).
   */
  revision?: string;
  /** Hub ids only: an access token (`hf_…`) for gated or private repos (default `$HF_TOKEN`; diffusers' `token`). */
  token?: string;
  /**
   * Hub ids only: use the cache, never the network (diffusers' `local_files_only`; default true when
   * `$HF_HUB_OFFLINE` is 1/true/yes/on). A model not cached is E_MODEL_NOT_FOUND naming the id.
   */
  localFilesOnly?: boolean;
  /** Hub ids only: the huggingface_hub cache folder (diffusers' `cache_dir`; default `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** Hub ids only: called as the model downloads (at most every 100 ms, and after each file); never called for a cached model. */
  onProgress?: (progress: HubDownloadProgress) => void;
  /**
   * Hub ids only: cancels the download; the load rejects with AbortError (`E_ABORTED`). Files cut
   * short stay `blobs/<etag>.incomplete` (never used as complete) and a later load resumes them.
   */
  signal?: AbortSignal;}

export interface LoadOptions extends HubLoadOptions {
  /** 'cpu' (default) | 'cuda' | 'cuda:N'. */
  device?: string;
  /** Compute dtype: 'float32' (default) | 'float16' | 'bfloat16'. */
  dtype?: PipelineDtype;
  /** Weight-file variant of a diffusers folder, e.g. 'fp16' (`diffusion_pytorch_model.fp16.safetensors`). */
  variant?: string;
  /** CPU intra-op threads, integer in [1, 1024] (default: libtorch's, the physical cores). */
  threads?: number;
  /** Single files only: a diffusers folder with the config.json files and tokenizers of the model's family. */
  configDir?: string;
  /**
   * Decode (and encode) with this VAE instead of the model's own (diffusers' `vae=` component,
   * e.g. a fine-tuned VAE for a civitai checkpoint, or TAESD for fast decoding): a loaded
   * AutoencoderKL / AutoencoderTiny (on the pipeline's device), a diffusers VAE folder (its
   * config.json `_class_name` picks the class), or a standalone original-layout VAE `.safetensors`
   * (civitai-style, read with the model's own `vae/config.json`); paths are loaded on the
   * pipeline's device and dtype (float32 for an AutoencoderKL with force_upcast when the dtype is
   * float16). Its latent channels must match the model's. Same as setting `pipe.vae` after loading.
   */
  vae?: AutoencoderKL | AutoencoderTiny | string;
  /** The AutoencoderTiny that `previews: 'taesd'` decodes with: loaded, or a folder (as {@link setPreviewDecoder}). */
  previewDecoder?: AutoencoderTiny | string;
}

/** What `onProgress` of a Hub load receives. */
export interface HubDownloadProgress {
  /** Bytes of the needed files in the cache so far (files already cached count as done). */
  bytesDone: number;
  /** Bytes of all the files the pipeline needs. */
  bytesTotal: number;
  /** Needed files in the cache so far. */
  filesDone: number;
  /** Files the pipeline needs. */
  filesTotal: number;
  /** Bytes per second received by this download (0 before the first byte). */
  bytesPerSecond: number;
  /** The repo-relative file that last progressed, e.g. `unet/diffusion_pytorch_model.safetensors`. */
  file?: string;
}
