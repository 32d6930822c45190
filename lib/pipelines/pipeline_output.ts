/**
 * What a pipeline call resolves to (diffusers' `StableDiffusionPipelineOutput`, plus the seed,
 * timesteps and timings), built from the native result.
 */
import path from 'node:path';
import { InternalError } from '../errors.js';
import { GeneratedImage, type GenerationParameters } from '../image.js';
import type { LatentsInput, ResolvedGenerateOptions } from '../options.js';
import type { NativeGenerateResult, TensorData } from '../../types/native.js';

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
  /** The generator seed of the call (random when not given); with a list of seeds, the first. */
  seed: number;
  /**
   * The seed behind each image (`seeds[i]` for `images[i]`). With one seed, all equal to `seed`:
   * one CPU generator draws the whole batch, as in diffusers, and image i is reproduced by
   * re-running the same call. With a list of seeds, the list: image i is reproduced alone with
   * `seed: seeds[i]` (not for inpainting; see `seed` in the options).
   */
  seeds: number[];
  /** The scheduler timesteps that were run. */
  timesteps: number[];
  timings: GenerateTimings;
}

function toLatents(t: TensorData | undefined): LatentsInput | undefined {
  return t ? { data: t.data, shape: [...t.shape] } : undefined;
}

/** The model name recorded in the images' parameters: the folder or file name without extension. */
function modelName(modelPath: string): string {
  const base = path.basename(modelPath.replace(/[\\/]+$/, ''));
  return base.replace(/\.(safetensors|ckpt)$/i, '');
}

/**
 * @internal The public result of one call.
 * @throws InternalError (`E_INTERNAL`) when the native images do not have the expected shape.
 */
export function toResult(
  r: NativeGenerateResult, o: ResolvedGenerateOptions, sched: { name: string; config: Record<string, unknown> }, modelPath: string,
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
    const model = modelName(modelPath);
    const perImage = o.seeds !== undefined && o.maskImage === undefined;
    for (let i = 0; i < b; i++) {
      const p = Math.floor(i / o.numImagesPerPrompt); // diffusers order: p0, p0, p1, p1
      const params: GenerationParameters = {
        prompt: o.prompts[p],
        negativePrompt: o.negativePrompts?.[p] ?? '',
        numInferenceSteps: o.numInferenceSteps,
        guidanceScale: o.guidanceScale,
        seed: o.seeds?.[i] ?? o.seed,
        width: w,
        height: h,
        scheduler: sched.name,
        schedulerConfig: structuredClone(sched.config),
        model,
        clipSkip: o.clipSkip,
        strength: o.strength,
        eta: o.eta,
        // an image made with its own generator is reproduced alone: no batch position to record
        // (inpainting excepted: its image is encoded with the first generator)
        ...(perImage ? {} : { batchSize: b, batchIndex: i }),
      };
      images.push(new GeneratedImage(w, h, buf.subarray(i * bytes, (i + 1) * bytes), params));
    }
  }
  return {
    images,
    latents: toLatents(r.latents),
    initialLatents: toLatents(r.initialLatents),
    seed: o.seed,
    seeds: o.seeds ? [...o.seeds] : new Array<number>(batch).fill(o.seed),
    timesteps: [...r.timesteps],
    timings: { ...r.timings, ...js },
  };
}
