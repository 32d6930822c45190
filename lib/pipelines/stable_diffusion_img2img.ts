/**
 * diffusers' `StableDiffusionImg2ImgPipeline` (pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py,
 * v0.30.3): image + text → image for SD 1.x / 2.x.
 */
import { LoaderPipeline } from '../loaders/lora_pipeline.js';
import type { Img2ImgOptions } from '../options.js';
import type { GenerateResult } from './pipeline_output.js';

/**
 * Image-to-image Stable Diffusion, diffusers' `StableDiffusionImg2ImgPipeline`: the input image
 * is encoded by the VAE, noised to the timestep `strength` selects, and denoised from there.
 * @example
 * const pipe = await StableDiffusionImg2ImgPipeline.fromPretrained('./sd-v1-5');
 * const { images } = await pipe.generate({ image: 'sketch.png', prompt: 'a fantasy landscape', strength: 0.75, seed: 1 });
 * await images[0].save('landscape.png');
 */
export class StableDiffusionImg2ImgPipeline extends LoaderPipeline {
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
  generate(options: Img2ImgOptions): Promise<GenerateResult> {
    return this.generateWith(options, 'img2img');
  }
}
