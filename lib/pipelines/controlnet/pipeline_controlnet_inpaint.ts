/**
 * diffusers' `StableDiffusionControlNetInpaintPipeline` (pipelines/controlnet/pipeline_controlnet_inpaint.py, v0.30.3).
 */
import type { ControlNetInpaintOptions, ParsedGenerateOptions } from '../../options.js';
import type { CallInputs } from '../native_call.js';
import type { GenerateResult } from '../pipeline_output.js';
import { StableDiffusionInpaintPipeline } from '../stable_diffusion_inpaint.js';
import { ControlNetPipelineBase } from './pipeline_controlnet.js';

const inpaintDecode = Object.getOwnPropertyDescriptor(StableDiffusionInpaintPipeline.prototype, 'decodeInputs')!.value as
  (this: unknown, parsed: ParsedGenerateOptions) => Promise<Omit<CallInputs, 'o'>>;

/**
 * Inpainting with ControlNet(s), usually an inpaint ControlNet on a regular 4-channel SD model
 * (the re-noised image latents are blended back outside the mask after every step; the image is
 * encoded even at strength 1, as diffusers does). The ControlNet sees `controlImage`.
 */
export class StableDiffusionControlNetInpaintPipeline extends ControlNetPipelineBase {
  protected readonly controlMode = 'inpaint' as const;
  protected readonly baseMode = 'inpaint' as const;

  /**
   * @param options - as StableDiffusionInpaintPipeline.generate plus `controlImage` and the control
   *   options of StableDiffusionControlNetPipeline.generate (`controlnetConditioningScale` default 0.5).
   * @throws the errors of StableDiffusionControlNetPipeline.generate.
   */
  generate(options: ControlNetInpaintOptions): Promise<GenerateResult> {
    return this.generateControlled(options);
  }

  /** @internal The image, then the mask (as StableDiffusionInpaintPipeline). */
  protected override decodeInputs(parsed: ParsedGenerateOptions): Promise<Omit<CallInputs, 'o'>> {
    return inpaintDecode.call(this, parsed);
  }
}
