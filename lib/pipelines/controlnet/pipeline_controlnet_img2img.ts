/**
 * diffusers' `StableDiffusionControlNetImg2ImgPipeline` (pipelines/controlnet/pipeline_controlnet_img2img.py, v0.30.3).
 */
import type { ControlNetImg2ImgOptions } from '../../options.js';
import type { GenerateResult } from '../pipeline_output.js';
import { ControlNetPipelineBase } from './pipeline_controlnet.js';

/**
 * Image-to-image with ControlNet(s): the init `image` is encoded and noised to `strength` as in
 * StableDiffusionImg2ImgPipeline; the ControlNet sees `controlImage`. The guidance window is relative
 * to the steps actually run (after the strength cut).
 * @example const { images } = await pipe.generate({ image: 'photo.png', controlImage: 'edges.png', prompt: 'oil painting', strength: 0.6 });
 */
export class StableDiffusionControlNetImg2ImgPipeline extends ControlNetPipelineBase {
  protected readonly controlMode = 'img2img' as const;
  protected readonly baseMode = 'img2img' as const;

  /**
   * @param options - as StableDiffusionImg2ImgPipeline.generate plus `controlImage` and the control
   *   options of StableDiffusionControlNetPipeline.generate (`controlnetConditioningScale` default 0.8).
   * @throws the errors of StableDiffusionControlNetPipeline.generate.
   */
  generate(options: ControlNetImg2ImgOptions): Promise<GenerateResult> {
    return this.generateControlled(options);
  }
}
