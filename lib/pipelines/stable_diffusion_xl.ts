/**
 * diffusers' `StableDiffusionXLPipeline` (pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py,
 * v0.30.3): text → image with the SDXL base model. What differs from SD 1.x/2.x — two text encoders
 * (`tokenizer` pads with `<|endoftext|>`, `tokenizer_2` with `!`), `add_time_ids`, `denoising_end`
 * — is in the option schema (lib/options.ts), the prompt encoding (prompt_encoding.ts) and the
 * native pipeline (native/core/pipelines/stable_diffusion_xl.cc).
 */
import { LoaderPipeline } from '../loaders/lora_pipeline.js';
import type { XLGenerateOptions } from '../options.js';
import type { GenerateResult } from './pipeline_output.js';

export type { XLConditioningOptions, XLGenerateOptions } from '../options.js';

/**
 * Text-to-image SDXL (diffusers' `StableDiffusionXLPipeline`): two text encoders (penultimate
 * hidden states concatenated, pooled `text_embeds` of text_encoder_2), `add_time_ids` from
 * `originalSize` / `cropsCoordsTopLeft` / `targetSize`, `force_zeros_for_empty_prompt`.
 * `fromPretrained` / `fromSingleFile` refuse SD 1.x/2.x models (E_UNSUPPORTED_MODEL naming StableDiffusionPipeline).
 * @example
 * const pipe = await StableDiffusionXLPipeline.fromPretrained('./sdxl-base', { device: 'cuda', dtype: 'float16' });
 * const { images } = await pipe.generate({ prompt: 'a lighthouse at dusk', prompt2: 'oil painting', seed: 1 });
 */
export class StableDiffusionXLPipeline extends LoaderPipeline {
  static override readonly xl: boolean = true;

  /**
   * Generates images (diffusers' `__call__`). Options as {@link StableDiffusionPipeline.generate}
   * plus `prompt2` / `negativePrompt2` (tokenizer_2; default `prompt` / `negativePrompt`),
   * `originalSize`, `cropsCoordsTopLeft`, `targetSize`, `denoisingEnd`. No `negativePrompt` ⇒
   * zero unconditional embeddings when model_index.json sets `force_zeros_for_empty_prompt`.
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) naming the field; the other errors of StableDiffusionPipeline.generate.
   */
  generate(options: XLGenerateOptions): Promise<GenerateResult> {
    return this.generateWith(options, 'xl');
  }
}
