/**
 * SDXL pipelines: {@link StableDiffusionXLPipeline} (text → image, the base model) and
 * {@link StableDiffusionXLImg2ImgPipeline} (image or latents + text → image, e.g. the refiner),
 * modelled on diffusers v0.30.3 `StableDiffusionXLPipeline.__call__` and
 * `StableDiffusionXLImg2ImgPipeline.__call__` (pipelines/stable_diffusion_xl/).
 *
 * They share the machinery of lib/pipeline.ts (queue, abort, scheduler, images); the native side
 * is native/core/pipelines/stable_diffusion_xl.cc. Two tokenizers: `tokenizer` (pads with
 * `<|endoftext|>`) and `tokenizer_2` (pads with `!`).
 */
import { InvalidArgumentError } from './errors.js';
import {
  describeValue, finishGenerateOptions, parseGenerateOptions, type GenerateOptions, type Img2ImgOptions,
  type ImageInput, type LatentsInput, type LoadOptions,
} from './options.js';
import { loadInputImage } from './image.js';
import { NativeModel, PipelineBase, abortError, loadModel, type GenerateResult } from './pipeline.js';
import type { NativeGenerateRequest } from '../types/native.js';

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

const XL_KEYS = ['originalSize', 'cropsCoordsTopLeft', 'targetSize', 'denoisingEnd', 'denoisingStart', 'aestheticScore', 'negativeAestheticScore'] as const;

function pair(name: string, v: unknown): [number, number] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0)) {
    throw new InvalidArgumentError(`${name} must be two non-negative finite numbers [a, b]; received ${describeValue(v)}`);
  }
  return [v[0], v[1]];
}

function fraction(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !(v > 0 && v < 1)) {
    throw new InvalidArgumentError(`${name} must be a number in (0, 1); received ${describeValue(v)}`);
  }
  return v;
}

function finite(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidArgumentError(`${name} must be a finite number; received ${describeValue(v)}`);
  return v;
}

/** Splits the SDXL-only options off (validated) and returns the rest for the shared parser. */
function splitXl<T extends object>(options: T): { rest: T; extra: Partial<NativeGenerateRequest> } {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError(`generate options must be an object; received ${describeValue(options)}`);
  }
  const rest = { ...options } as Record<string, unknown>;
  const raw: Record<string, unknown> = {};
  for (const k of XL_KEYS) { raw[k] = rest[k]; delete rest[k]; }
  const extra: Partial<NativeGenerateRequest> = {
    originalSize: pair('originalSize', raw.originalSize),
    cropsCoordsTopLeft: pair('cropsCoordsTopLeft', raw.cropsCoordsTopLeft),
    targetSize: pair('targetSize', raw.targetSize),
    denoisingEnd: fraction('denoisingEnd', raw.denoisingEnd),
    denoisingStart: fraction('denoisingStart', raw.denoisingStart),
    aestheticScore: finite('aestheticScore', raw.aestheticScore),
    negativeAestheticScore: finite('negativeAestheticScore', raw.negativeAestheticScore),
  };
  if (extra.denoisingStart !== undefined && extra.denoisingEnd !== undefined && extra.denoisingStart >= extra.denoisingEnd) {
    throw new InvalidArgumentError(`denoisingStart (${extra.denoisingStart}) must be smaller than denoisingEnd (${extra.denoisingEnd})`);
  }
  return { rest: rest as T, extra };
}

function isLatents(v: unknown): v is LatentsInput {
  return v !== null && typeof v === 'object' && (v as LatentsInput).data instanceof Float32Array && Array.isArray((v as LatentsInput).shape);
}

type AnyXl = StableDiffusionXLPipeline | StableDiffusionXLImg2ImgPipeline;

function shareXl(pipe: AnyXl): { model: NativeModel; sched: { name: string; config: Record<string, unknown> } } {
  if (!(pipe instanceof StableDiffusionXLPipeline || pipe instanceof StableDiffusionXLImg2ImgPipeline)) {
    throw new InvalidArgumentError(`fromPipeline expects a StableDiffusionXLPipeline or StableDiffusionXLImg2ImgPipeline; received ${describeValue(pipe)}`);
  }
  const p = pipe as unknown as { checkAlive(w: string): void; model: NativeModel; schedulerState(): { name: string; config: Record<string, unknown> } };
  p.checkAlive('fromPipeline');
  return { model: p.model.acquire(), sched: p.schedulerState() };
}

/**
 * Text-to-image SDXL (diffusers' `StableDiffusionXLPipeline`): two text encoders (penultimate
 * hidden states concatenated, pooled `text_embeds` of text_encoder_2), `add_time_ids` from
 * `originalSize` / `cropsCoordsTopLeft` / `targetSize`, `force_zeros_for_empty_prompt`.
 * @example
 * const pipe = await StableDiffusionXLPipeline.fromPretrained('./sdxl-base', { device: 'cuda', dtype: 'float16' });
 * const { images } = await pipe.generate({ prompt: 'a lighthouse at dusk', prompt2: 'oil painting', seed: 1 });
 */
export class StableDiffusionXLPipeline extends PipelineBase {
  private constructor(model: NativeModel, scheduler?: { name: string; config: Record<string, unknown> }) {
    super(model, scheduler);
  }

  /**
   * Loads an SDXL diffusers folder (model_index.json `_class_name` StableDiffusionXLPipeline or
   * StableDiffusionXLImg2ImgPipeline; text_encoder/ + tokenizer/ optional as in the refiner).
   * @throws UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for an SD 1.x/2.x folder (the message names StableDiffusionPipeline).
   * @throws the other errors of {@link StableDiffusionPipeline.fromPretrained}.
   */
  static async fromPretrained(dir: string, options?: LoadOptions): Promise<StableDiffusionXLPipeline> {
    return new StableDiffusionXLPipeline(await loadModel(dir, options, false, true));
  }

  /**
   * Loads an original SDXL single-file checkpoint (`.safetensors`: `model.diffusion_model.*`,
   * `first_stage_model.*`, `conditioner.embedders.0.transformer.*` (CLIP ViT-L) and
   * `conditioner.embedders.1.model.*` (OpenCLIP bigG, fused in_proj); or the refiner layout with
   * `conditioner.embedders.0.model.*` alone), mapped natively to diffusers names.
   * `options.configDir` (required) is an SDXL diffusers folder of the same architecture: its
   * configs, tokenizers and scheduler are used, nothing is guessed from tensor shapes.
   * @example const pipe = await StableDiffusionXLPipeline.fromSingleFile('./sd_xl_base_1.0.safetensors', { configDir: './sdxl-base' });
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) without configDir, or when configDir is an SD 1.x/2.x folder.
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) for pickle files, keys that map to nothing (listed),
   *   a component with no tensors, or missing tensors (named by the strict load).
   * @throws the other errors of {@link StableDiffusionXLPipeline.fromPretrained}.
   */
  static async fromSingleFile(file: string, options?: LoadOptions): Promise<StableDiffusionXLPipeline> {
    return new StableDiffusionXLPipeline(await loadModel(file, options, true, true));
  }

  /** A text-to-image pipeline sharing the native model (and queue) of `pipe`; the scheduler is copied. */
  static fromPipeline(pipe: AnyXl): StableDiffusionXLPipeline {
    const { model, sched } = shareXl(pipe);
    return new StableDiffusionXLPipeline(model, sched);
  }

  /**
   * Generates images (diffusers' `__call__`). Options as {@link StableDiffusionPipeline.generate}
   * plus `prompt2` / `negativePrompt2` (tokenizer_2; default `prompt` / `negativePrompt`),
   * `originalSize`, `cropsCoordsTopLeft`, `targetSize`, `denoisingEnd`. No `negativePrompt` ⇒
   * zero unconditional embeddings when model_index.json sets `force_zeros_for_empty_prompt`.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field; the other errors of StableDiffusionPipeline.generate.
   */
  async generate(options: XLGenerateOptions): Promise<GenerateResult> {
    const calledAt = performance.now();
    this.checkAlive('generate');
    const { rest, extra } = splitXl(options);
    if (extra.denoisingStart !== undefined || extra.aestheticScore !== undefined || extra.negativeAestheticScore !== undefined) {
      throw new InvalidArgumentError('denoisingStart, aestheticScore and negativeAestheticScore are StableDiffusionXLImg2ImgPipeline options');
    }
    const o = finishGenerateOptions(parseGenerateOptions(rest, 'txt2img'), this.model.info, 'txt2img');
    return this.run(calledAt, this.schedulerState(), o.signal, Promise.resolve({ o, extra }));
  }
}

/**
 * SDXL image-to-image / refiner (diffusers' `StableDiffusionXLImg2ImgPipeline`): `strength`
 * (default 0.3), `aestheticScore` / `negativeAestheticScore` for models with
 * `requires_aesthetics_score`, and the base → refiner hand-off: the base runs with
 * `denoisingEnd: f, outputType: 'latent'`, the refiner with `image: result.latents, denoisingStart: f`.
 * @example
 * const base = await StableDiffusionXLPipeline.fromPretrained('./sdxl-base');
 * const refiner = await StableDiffusionXLImg2ImgPipeline.fromPretrained('./sdxl-refiner');
 * const { latents } = await base.generate({ prompt, denoisingEnd: 0.8, outputType: 'latent', seed: 1 });
 * const { images } = await refiner.generate({ prompt, image: latents!, denoisingStart: 0.8, seed: 1 });
 */
export class StableDiffusionXLImg2ImgPipeline extends PipelineBase {
  private constructor(model: NativeModel, scheduler?: { name: string; config: Record<string, unknown> }) {
    super(model, scheduler);
  }

  /** Loads an SDXL diffusers folder (base or refiner). Errors as {@link StableDiffusionXLPipeline.fromPretrained}. */
  static async fromPretrained(dir: string, options?: LoadOptions): Promise<StableDiffusionXLImg2ImgPipeline> {
    return new StableDiffusionXLImg2ImgPipeline(await loadModel(dir, options, false, true));
  }

  /** Loads an original SDXL (base or refiner) single-file checkpoint. Options and errors as {@link StableDiffusionXLPipeline.fromSingleFile}. */
  static async fromSingleFile(file: string, options?: LoadOptions): Promise<StableDiffusionXLImg2ImgPipeline> {
    return new StableDiffusionXLImg2ImgPipeline(await loadModel(file, options, true, true));
  }

  /** An img2img pipeline sharing the native model of `pipe`; the scheduler is copied. */
  static fromPipeline(pipe: AnyXl): StableDiffusionXLImg2ImgPipeline {
    const { model, sched } = shareXl(pipe);
    return new StableDiffusionXLImg2ImgPipeline(model, sched);
  }

  /**
   * Transforms an image, or continues latents, guided by text.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for bad options, an undecodable image or mis-shaped latents.
   */
  async generate(options: XLImg2ImgOptions): Promise<GenerateResult> {
    const calledAt = performance.now();
    this.checkAlive('generate');
    const { rest, extra } = splitXl(options);
    const info = this.model.info;
    const f = info.vaeScaleFactor;
    const r = rest as unknown as Record<string, unknown>;
    const strength = r.strength === undefined ? 0.3 : r.strength;
    extra.img2img = true;
    if (isLatents(r.image)) {
      // a 4-channel "image": the latents are used as they are (diffusers' prepare_latents)
      const lat = r.image;
      const numel = lat.shape.reduce((a, b) => a * b, 1);
      if (lat.shape.length !== 4 || lat.shape[1] !== 4 || lat.data.length !== numel) {
        throw new InvalidArgumentError(`image latents must be { data: Float32Array, shape: [batch, 4, h, w] }; received shape [${lat.shape.join(', ')}]`);
      }
      const { image: _img, strength: _s, ...txt } = r;
      if (txt.height !== undefined || txt.width !== undefined) {
        throw new InvalidArgumentError('height and width come from the image latents; do not pass them');
      }
      const parsed = parseGenerateOptions({ ...txt, height: lat.shape[2] * f, width: lat.shape[3] * f } as GenerateOptions, 'txt2img');
      const o = finishGenerateOptions(parsed, info, 'txt2img');
      o.strength = extra.denoisingStart === undefined ? checkStrength(strength, o.numInferenceSteps) : undefined;
      extra.strength = o.strength ?? 0.3;
      extra.imageLatents = { data: lat.data, shape: [...lat.shape] };
      return this.run(calledAt, this.schedulerState(), o.signal, Promise.resolve({ o, extra }));
    }
    const parsed = parseGenerateOptions({ ...r, strength } as unknown as Img2ImgOptions, 'img2img');
    if (extra.denoisingStart !== undefined) parsed.strength = undefined; // strength is irrelevant then
    extra.strength = parsed.strength ?? 0.3;
    const prepare = parsed.signal?.aborted ? Promise.reject(abortError(parsed.signal)) : (async () => {
      const image = await loadInputImage(parsed.image!, parsed.width, parsed.height);
      return { o: finishGenerateOptions(parsed, info, 'img2img', image), image, extra };
    })();
    prepare.catch(() => undefined); // observed by run()
    return this.run(calledAt, this.schedulerState(), parsed.signal, prepare);
  }
}

function checkStrength(strength: unknown, steps: number): number {
  if (typeof strength !== 'number' || !(strength >= 0 && strength <= 1)) {
    throw new InvalidArgumentError(`strength must be a number in [0, 1]; received ${describeValue(strength)}`);
  }
  if (Math.floor(steps * strength) < 1) {
    throw new InvalidArgumentError(`strength × numInferenceSteps must give at least one denoising step (int(${steps} × ${strength}) = 0)`);
  }
  return strength;
}
