/**
 * diffusers' `ControlNetModel` (models/controlnet.py, v0.30.3) as a loadable component: a copy of
 * the UNet's encoder fed with a conditioning image (edges, depth, pose, …) whose residuals steer the
 * UNet. Pass it to a ControlNet pipeline (`StableDiffusionControlNetPipeline.fromPretrained(dir,
 * { controlnet })`). The native side is native/core/models/controlnet_model.cc.
 */
import { addon } from './native.js';
import { native, nativeSync, DisposedError, InvalidArgumentError, describeValue } from './errors.js';
import { parseLoadOptions } from './options.js';
import type { ControlNetHandle, NativeControlNetInfo, PipelineDtype } from '../types/native.js';

/** ControlNetModel.fromPretrained options: device ('cpu' default | 'cuda' | 'cuda:N'), dtype ('float32' default), variant. Use the pipeline's device and dtype. */
export interface ControlNetLoadOptions {
  device?: string; dtype?: PipelineDtype; variant?: string;
  /** Single files: the diffusers ControlNet config.json, or the folder holding it (required; nothing is guessed from shapes). */
  config?: string;
}
export type ControlNetInfo = NativeControlNetInfo;

/**
 * A loaded ControlNet. Several pipelines may share one; it is freed by {@link dispose} (pipelines do
 * not own it: dispose it after the pipelines that use it).
 * @example
 * const controlnet = await ControlNetModel.fromPretrained('./sd-controlnet-canny');
 * const pipe = await StableDiffusionControlNetPipeline.fromPretrained('./sd-v1-5', { controlnet });
 */
export class ControlNetModel {
  private handle: ControlNetHandle | undefined;
  /** Where it was loaded from (the A1111 `parameters` text names it by its base name). */
  readonly path: string;

  private constructor(handle: ControlNetHandle, path: string) {
    this.handle = handle;
    this.path = path;
  }

  /**
   * Loads a diffusers ControlNet folder (config.json + diffusion_pytorch_model[.variant].safetensors),
   * or an original-layout single file (`control_v11p_sd15_canny.safetensors`: `control_model.*` keys,
   * mapped to diffusers names once at load) with `options.config`.
   * @throws ModelNotFoundError (`E_MODEL_NOT_FOUND`) when the folder, config or weights are missing.
   * @throws BadConfigError (`E_BAD_CONFIG`) / UnsupportedModelError (`E_UNSUPPORTED_MODEL`) for a malformed or unsupported config.
   * @throws BadCheckpointError (`E_BAD_CHECKPOINT`) for missing, mis-shaped or unexpected weights, pickles, and
   *   single-file keys that are not ControlNet parameters (listed).
   * @throws InvalidArgumentError (`E_INVALID_ARGUMENT`) for bad options.
   */
  static async fromPretrained(dir: string, options: ControlNetLoadOptions = {}): Promise<ControlNetModel> {
    const { config, ...load } = options ?? {};
    if (config !== undefined && (typeof config !== 'string' || config === '')) {
      throw new InvalidArgumentError(`config must be a path to a ControlNet config.json or its folder; received ${describeValue(config)}`);
    }
    const { device, dtype, variant } = parseLoadOptions({ ...load });
    const h = await native(() => addon().loadControlNet(dir, { device, dtype, ...(variant ? { variant } : {}), ...(config ? { config } : {}) }));
    return new ControlNetModel(h, dir);
  }

  /** @internal The native handle (E_DISPOSED after dispose). */
  nativeHandle(): ControlNetHandle {
    if (!this.handle) throw new DisposedError('ControlNetModel has been disposed');
    return this.handle;
  }

  /** SDXL or SD, cross-attention width, conditioning channels and downscale, parameters. */
  get info(): ControlNetInfo {
    const h = this.nativeHandle();
    return nativeSync(() => addon().controlnetInfo(h));
  }

  /** Frees the weights once no running generation uses them. Idempotent. */
  dispose(): void {
    if (this.handle) addon().disposeControlNet(this.handle);
    this.handle = undefined;
  }
}
