/**
 * diffusers `AutoencoderTiny` (models/autoencoders/autoencoder_tiny.py and the EncoderTiny /
 * DecoderTiny of models/autoencoders/vae.py, v0.30.3) on the native core: TAESD, the tiny
 * distilled autoencoder of madebyollin/taesd, as a fast decoder and as a live-preview decoder.
 * Every computation runs on a native worker thread.
 */
import { addon } from './native.js';
import { native, nativeSync, DisposedError } from './errors.js';
import type {
  AutoencoderTinyHandle, NativeAutoencoderTinyForward, NativeAutoencoderTinyInfo, NativeAutoencoderTinyLoadOptions,
  TensorData,
} from '../types/native.js';

/** Options of {@link AutoencoderTiny.fromPretrained}: `dtype` ('float32' default), `variant`, `device` ('cpu' default). */
export type AutoencoderTinyLoadOptions = NativeAutoencoderTinyLoadOptions;
export type AutoencoderTinyInfo = NativeAutoencoderTinyInfo;
export type AutoencoderTinyForwardResult = NativeAutoencoderTinyForward;

/**
 * A loaded AutoencoderTiny (TAESD). Its latents are Stable Diffusion's *scaled* latents already
 * (config `scaling_factor` 1.0), so a pipeline's final latents decode as they are; `encode` is
 * deterministic (no distribution, no generator).
 */
export class AutoencoderTiny {
  private handle: AutoencoderTinyHandle | undefined;

  private constructor(handle: AutoencoderTinyHandle) {
    this.handle = handle;
  }

  /**
   * Loads a diffusers AutoencoderTiny folder (`config.json` with `_class_name` "AutoencoderTiny" +
   * `diffusion_pytorch_model[.<variant>].safetensors`), e.g. a download of madebyollin/taesd or
   * madebyollin/taesdxl.
   * @param dir - the folder
   * @param options - `dtype` ('float32' default | 'float16' | 'bfloat16'), `variant`, `device` ('cpu' default)
   * @throws ModelNotFoundError when the folder, config or weights file is missing (pickles are refused).
   * @throws BadConfigError naming the field for an out-of-range or malformed config value.
   * @throws UnsupportedModelError for an act_fn / upsample_fn TAESD does not use, or a dtype the device cannot run.
   * @throws BadCheckpointError naming the key for a missing, mis-shaped or unused weight.
   * @throws DeviceUnavailableError for a CUDA device this build/machine lacks.
   * @example const taesd = await AutoencoderTiny.fromPretrained('./taesd');
   */
  static async fromPretrained(dir: string, options: AutoencoderTinyLoadOptions = {}): Promise<AutoencoderTiny> {
    const h = await native(() => addon().loadAutoencoderTiny(dir, options ?? {}));
    return new AutoencoderTiny(h);
  }

  /** @internal the native handle (for pipelines that take this VAE). */
  nativeHandle(): AutoencoderTinyHandle {
    if (!this.handle) throw new DisposedError('AutoencoderTiny has been disposed');
    return this.handle;
  }

  /** Config summary: scale factors, latent_magnitude / latent_shift, channels, dtype, device. */
  get info(): AutoencoderTinyInfo {
    const h = this.nativeHandle();
    return nativeSync(() => addon().autoencoderTinyInfo(h));
  }

  /** diffusers' vae_scale_factor of a pipeline holding this VAE: 2^(len(block_out_channels) − 1) = 8 for TAESD. */
  get vaeScaleFactor(): number { return this.info.vaeScaleFactor; }
  /** config scaling_factor (1.0 for TAESD: pipelines decode `latents / 1.0`). */
  get scalingFactor(): number { return this.info.scalingFactor; }
  /** config latent_channels (4 for TAESD / TAESDXL). */
  get latentChannels(): number { return this.info.latentChannels; }

  /**
   * `AutoencoderTiny.decode(latents).sample`: `decoder(tanh(latents / 3)·3)·2 − 1`.
   * @param latents - float32 `[batch, latent_channels, h, w]` (a pipeline's latents divided by
   *   `scalingFactor`, i.e. as they are)
   * @returns float32 image `[batch, 3, 8h, 8w]` (TAESD) in ≈[-1, 1], unclamped
   * @throws InvalidArgumentError for a wrong rank or channel count, an empty or non-float tensor.
   */
  decode(latents: TensorData): Promise<TensorData> {
    const h = this.nativeHandle();
    return native(() => addon().autoencoderTinyDecode(h, latents));
  }

  /**
   * `AutoencoderTiny.encode(image).latents`: `encoder((image + 1) / 2)`, deterministic.
   * @param image - float32 `[batch, 3, H, W]` in [-1, 1]
   * @returns float32 latents `[batch, latent_channels, ⌈H/8⌉, ⌈W/8⌉]` (TAESD; each stride-2 conv rounds up)
   * @throws InvalidArgumentError for a wrong rank or channel count, an empty or non-float tensor.
   */
  encode(image: TensorData): Promise<TensorData> {
    const h = this.nativeHandle();
    return native(() => addon().autoencoderTinyEncode(h, image));
  }

  /** diffusers `scale_latents`: raw latents → `(x / (2·latent_magnitude) + latent_shift).clamp(0, 1)` (any shape, float32). */
  scaleLatents(latents: TensorData): Promise<TensorData> {
    const h = this.nativeHandle();
    return native(() => addon().autoencoderTinyScaleLatents(h, latents, false));
  }

  /** diffusers `unscale_latents`: `[0, 1]` → `(x − latent_shift)·2·latent_magnitude` (any shape, float32). */
  unscaleLatents(latents: TensorData): Promise<TensorData> {
    const h = this.nativeHandle();
    return native(() => addon().autoencoderTinyScaleLatents(h, latents, true));
  }

  /**
   * diffusers `AutoencoderTiny.forward`: encode, quantise the scaled latents to uint8 (as if stored
   * in an RGBA image), unquantise, decode. Returns the latents, their uint8 form and the decoded image.
   * @param image - float32 `[batch, 3, H, W]` in [-1, 1]
   */
  forward(image: TensorData): Promise<AutoencoderTinyForwardResult> {
    const h = this.nativeHandle();
    return native(() => addon().autoencoderTinyForward(h, image));
  }

  /** Frees the native model (work in flight, and pipelines using it, keep their own reference). */
  dispose(): void {
    if (this.handle) addon().disposeAutoencoderTiny(this.handle);
    this.handle = undefined;
  }
}
