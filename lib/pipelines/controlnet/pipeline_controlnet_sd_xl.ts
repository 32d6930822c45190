/**
 * diffusers' `StableDiffusionXLControlNetPipeline` (pipelines/controlnet/pipeline_controlnet_sd_xl.py, v0.30.3).
 */
import type { XLControlNetOptions } from '../../options.js';
import type { GenerateResult } from '../pipeline_output.js';
import { ControlNetPipelineBase } from './pipeline_controlnet.js';

/**
 * SDXL text-to-image with SDXL ControlNet(s): the ControlNets get the UNet's added conditions
 * (pooled text embeds, time ids; `originalSize` / `targetSize` default to the image size).
 */
export class StableDiffusionXLControlNetPipeline extends ControlNetPipelineBase {
  static override readonly xl: boolean = true;
  protected readonly controlMode = 'xl' as const;
  protected readonly baseMode = 'xl' as const;

  /**
   * @param options - as StableDiffusionXLPipeline.generate plus the control `image` and options of
   *   StableDiffusionControlNetPipeline.generate.
   * @throws the errors of StableDiffusionControlNetPipeline.generate.
   */
  generate(options: XLControlNetOptions): Promise<GenerateResult> {
    return this.generateControlled(options);
  }
}
