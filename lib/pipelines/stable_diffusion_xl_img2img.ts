/**
 * diffusers' `StableDiffusionXLImg2ImgPipeline` (pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py,
 * v0.30.3): SDXL image-to-image and the refiner. Native side: native/core/pipelines/stable_diffusion_xl.cc.
 */
import { LoaderPipeline } from '../loaders/lora_pipeline.js';
import type { XLImg2ImgOptions } from '../options.js';
import type { GenerateResult } from './pipeline_output.js';

export type { XLImg2ImgOptions } from '../options.js';

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
export class StableDiffusionXLImg2ImgPipeline extends LoaderPipeline {
  static override readonly xl: boolean = true;

  /**
   * Transforms an image, or continues latents, guided by text.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for bad options, an undecodable image or mis-shaped latents.
   */
  generate(options: XLImg2ImgOptions): Promise<GenerateResult> {
    return this.generateWith(options, 'xl-img2img');
  }
}
