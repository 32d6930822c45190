/**
 * diffusers' `StableDiffusionPipeline` (pipelines/stable_diffusion/pipeline_stable_diffusion.py,
 * v0.30.3): text → image for SD 1.x / 2.x. The native side is native/core/pipelines/stable_diffusion.cc.
 */
import { LoaderPipeline } from '../loaders/lora_pipeline.js';
import type { GenerateOptions } from '../options.js';
import type { GenerateResult } from './pipeline_output.js';


/**
 * Text-to-image Stable Diffusion (SD 1.x, 2.x), diffusers' `StableDiffusionPipeline`.
 * Calls on one pipeline run one after another in call order; the event loop stays free.
 * @example
 * const pipe = await StableDiffusionPipeline.fromPretrained('./stable-diffusion-v1-5', { device: 'cuda', dtype: 'float16' });
 * pipe.setScheduler('EulerAncestralDiscreteScheduler');
 * const { images, seed } = await pipe.generate({ prompt: 'an astronaut riding a horse on mars', numInferenceSteps: 25, seed: 42 });
 * await writeFile('astronaut.png', await images[0].toPNG());
 * pipe.dispose();
 */
export class StableDiffusionPipeline extends LoaderPipeline {
  /**
   * Generates images from text (diffusers' `__call__`). Validation happens before any native
   * work; the call is queued behind earlier calls on this pipeline.
   * @param options - `prompt` (string | non-empty string[]), `negativePrompt` (default ""),
   *   `numInferenceSteps` (1–1000, default 50), `guidanceScale` (≥ 0, default 7.5; ≤ 1 disables
   *   classifier-free guidance), `height`/`width` (multiples of 8 ≤ 8192, default the model's
   *   size), `numImagesPerPrompt` (1–64, default 1), `seed` (default random 32-bit; a list of
   *   numPrompts·numImagesPerPrompt seeds gives each image its own CPU generator), `latents`
   *   (`[numPrompts·numImagesPerPrompt, 4, height/8, width/8]` float32), `clipSkip` (≥ 1),
   *   `eta` (default 0), `outputType` ('image' | 'latent'), `onStep`, `signal`
   * @returns images (RGB, with their parameters), seed(s), timesteps, timings; latents for outputType 'latent'
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field, the value and the range.
   * @throws AbortError (`E_ABORTED`) when `signal` aborts (before or during the call).
   * @throws OutOfMemoryError (`E_OUT_OF_MEMORY`): the pipeline stays usable; retry smaller.
   * @throws NumericalError (`E_NUMERICAL`) when NaN/inf appear.
   * @throws DisposedError (`E_DISPOSED`) after {@link dispose}, or when it is disposed while the call waits or runs.
   * @example
   * const { images } = await pipe.generate({
   *   prompt: 'a watercolor fox', negativePrompt: 'blurry', numInferenceSteps: 25, seed: 42,
   *   onStep: ({ step, numSteps }) => console.log(`${step}/${numSteps}`), signal: AbortSignal.timeout(60_000),
   * });
   */
  generate(options: GenerateOptions): Promise<GenerateResult> {
    return this.generateWith(options, 'txt2img');
  }
}
