/**
 * diffusers' `StableDiffusionInpaintPipeline` (pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py,
 * v0.30.3): repaints the white area of a mask. The native side is native/core/pipelines/stable_diffusion_inpaint.cc.
 */
import { InvalidArgumentError } from '../errors.js';
import { loadInputImage } from '../image.js';
import { LoaderPipeline } from '../loaders/lora_pipeline.js';
import type { ImageInput, InpaintOptions, ParsedGenerateOptions, RawMaskInput } from '../options.js';
import type { CallInputs } from './native_call.js';
import type { GenerateResult } from './pipeline_output.js';
import type { TensorData } from '../../types/native.js';

export type { InpaintOptions } from '../options.js';

/** PIL `Image.convert('L')`: (R·19595 + G·38470 + B·7471 + 2^15) >> 16. */
function toGray(rgb: Uint8Array, channels: number): Uint8Array {
  const n = rgb.length / channels;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = rgb[i * channels], g = rgb[i * channels + 1], b = rgb[i * channels + 2];
    out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
  }
  return out;
}

/** The mask as uint8 `[height, width]` grayscale at the image size. */
async function loadMask(mask: ImageInput | RawMaskInput, width: number, height: number): Promise<TensorData<Uint8Array>> {
  const raw = mask as Partial<RawMaskInput>;
  if (raw && typeof raw === 'object' && !Buffer.isBuffer(raw) && raw.channels === 1) {
    if (!(raw.data instanceof Uint8Array) || raw.width !== width || raw.height !== height || raw.data.length !== width * height) {
      throw new InvalidArgumentError(
        `maskImage: a raw grayscale mask must be { data: Uint8Array(${width * height}), width: ${width}, height: ${height}, channels: 1 } (the image size)`);
    }
    return { data: new Uint8Array(raw.data), shape: [height, width] };
  }
  const decoded = await loadInputImage(mask as ImageInput, width, height).catch((e) => {
    throw new InvalidArgumentError(`maskImage: ${(e as Error).message}`, { cause: e });
  });
  return { data: toGray(decoded.data, decoded.channels), shape: [height, width] };
}

/**
 * Inpainting, diffusers' `StableDiffusionInpaintPipeline`: the masked area (white) is repainted
 * from the prompt, the rest kept. 9-channel inpainting UNets get `[latents, mask, masked image
 * latents]`; a regular 4-channel model inpaints by blending the re-noised image latents outside
 * the mask after each step. The decoded image is returned as is (no paste-back of the original).
 * @example
 * const pipe = await StableDiffusionInpaintPipeline.fromPretrained('./sd-inpainting');
 * const { images } = await pipe.generate({ image: 'room.png', maskImage: 'mask.png', prompt: 'a red sofa', seed: 1 });
 */
export class StableDiffusionInpaintPipeline extends LoaderPipeline {
  /**
   * Repaints the white area of `maskImage` in `image`.
   * @param options - as {@link StableDiffusionImg2ImgPipeline.generate}, plus `maskImage`; `strength` defaults to 1
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`): bad options, undecodable image or mask, mask size.
   * @throws the other errors of {@link StableDiffusionPipeline.generate}.
   */
  generate(options: InpaintOptions): Promise<GenerateResult> {
    return this.generateWith(options, 'inpaint');
  }

  /** @internal The image, then the mask at the image's size. */
  protected override async decodeInputs(parsed: ParsedGenerateOptions): Promise<Omit<CallInputs, 'o'>> {
    const { image } = await super.decodeInputs(parsed);
    return { image, mask: await loadMask(parsed.maskImage!, image!.width, image!.height) };
  }
}
