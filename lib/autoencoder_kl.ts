/**
 * diffusers `AutoencoderKL` (models/autoencoders/autoencoder_kl.py, v0.30.3) on the native core:
 * encode images to a diagonal Gaussian over latents, decode latents to images, with diffusers'
 * VAE slicing and tiling.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { addon } from './native.js';
import { native, nativeSync, BadCheckpointError, DisposedError, InvalidArgumentError } from './errors.js';
import { downloadComponent, hubOptionsOf, parseHubId } from './loaders/hub.js';
import { parseVaeHubOptions } from './options.js';
import type { HubLoadOptions } from './option_types.js';
import type {
  PipelineDtype, VaeHandle, NativeVaeEncodeResult, NativeVaeInfo, NativeVaeLoadOptions, NativeVaeOptions, TensorData,
} from '../types/native.js';

/** Options of {@link AutoencoderKL.fromPretrained}: the native ones plus diffusers' `subfolder` and the Hub options. */
export interface VaeLoadOptions extends NativeVaeLoadOptions, HubLoadOptions {
  /** A folder inside `dir` (or the Hub repo) holding the VAE, e.g. 'vae' (diffusers' `subfolder`; default: `dir` itself). */
  subfolder?: string;
}
export type VaeInfo = NativeVaeInfo;
export type VaeEncodeResult = NativeVaeEncodeResult;

/** A loaded AutoencoderKL. Scaling by `scalingFactor` is the caller's job, as in diffusers. */
export class AutoencoderKL {
  private handle: VaeHandle | undefined;

  private constructor(handle: VaeHandle) {
    this.handle = handle;
  }

  /**
   * Loads a diffusers `vae/` folder: `config.json` + `diffusion_pytorch_model[.<variant>].safetensors`.
   * @param dir - the component folder (e.g. `<model>/vae`), or a Hub id `org/name[@revision]` (a
   *   local path of that name wins): `<subfolder>/config.json` and its safetensors weights (of the
   *   variant) are downloaded into huggingface_hub's cache (diffusers' `AutoencoderKL.from_pretrained(id, subfolder=...)`)
   * @param options - `dtype` ('float32' default | 'float16' | 'bfloat16'), `variant`, `device` ('cpu' default),
   *   `subfolder`; Hub ids: `revision`, `token`, `localFilesOnly`, `cacheDir`, `onProgress`, `signal`
   * @throws ModelNotFoundError when the folder, config or weights file is missing (pickles are refused);
   *   for a Hub id, an unknown repo/revision/file or a model not cached with localFilesOnly.
   * @throws UnauthorizedError (`E_UNAUTHORIZED`) for a gated or private Hub repo without access.
   * @throws InvalidArgumentError for a malformed Hub option or subfolder; AbortError when `signal` aborts.
   * @throws BadConfigError naming the field when config.json lacks a required field.
   * @throws BadCheckpointError naming the key for a missing, mis-shaped or unused weight.
   * @throws UnsupportedModelError for non-SD block types, or float16 on a CPU libtorch without float16 kernels.
   * @example const vae = await AutoencoderKL.fromPretrained('./sd15/vae');
   */
  static async fromPretrained(dir: string, options: VaeLoadOptions = {}): Promise<AutoencoderKL> {
    const { subfolder, revision, token, localFilesOnly, cacheDir, onProgress, signal, ...nativeOptions } = options ?? {};
    let location = dir;
    if (subfolder !== undefined || revision !== undefined || token !== undefined || localFilesOnly !== undefined
      || cacheDir !== undefined || onProgress !== undefined || signal !== undefined || parseHubId(dir)) {
      const o = parseVaeHubOptions(options);
      const local = await stat(dir).catch(() => undefined);
      if (!local && parseHubId(dir)) {
        const snap = await downloadComponent(dir, o.subfolder ?? '', hubOptionsOf(o));
        location = snap.path;
      }
      if (o.subfolder) location = path.join(location, o.subfolder);
    }
    const h = await native(() => addon().loadVae(location, nativeOptions));
    return new AutoencoderKL(h);
  }

  /**
   * Loads a standalone original-layout VAE `.safetensors` (the VAE files shared for civitai checkpoints,
   * e.g. `vae-ft-mse-840000-ema-pruned.safetensors`; keys `encoder.*`, `decoder.*`, `quant_conv.*`,
   * optionally under `first_stage_model.`), mapped to diffusers names as diffusers'
   * `AutoencoderKL.from_single_file` does (convert_ldm_vae_checkpoint). The file has no config:
   * `configDir` is a diffusers VAE folder of the same family (e.g. `<model>/vae`).
   * @param options - `configDir` (required), `dtype` ('float32' default), `device` ('cpu' default)
   * @throws ModelNotFoundError for a missing file or config; BadCheckpointError for a pickle, an
   *   invalid file, unmapped keys (listed) or missing/mis-shaped weights; InvalidArgumentError without configDir.
   * @example const vae = await AutoencoderKL.fromSingleFile('./vae-ft-mse-840000-ema-pruned.safetensors', { configDir: './sd15/vae' });
   */
  static async fromSingleFile(file: string, options: { configDir: string; dtype?: PipelineDtype; device?: string }): Promise<AutoencoderKL> {
    const { configDir, ...rest } = options ?? ({} as never);
    if (typeof configDir !== 'string' || configDir.length === 0) {
      throw new InvalidArgumentError('AutoencoderKL.fromSingleFile: options.configDir (a diffusers VAE folder with config.json) is required');
    }
    if (/\.(ckpt|pt|pth|bin|pkl)$/i.test(file)) {
      throw new BadCheckpointError(`${file}: pickle checkpoints are refused because loading them can run code; convert it to .safetensors`);
    }
    const h = await native(() => addon().loadVaeSingleFile(file, configDir, rest));
    return new AutoencoderKL(h);
  }

  /** @internal wraps a native handle (a pipeline's own VAE: `pipe.vae`). */
  static fromNativeHandle(handle: VaeHandle): AutoencoderKL {
    return new AutoencoderKL(handle);
  }

  /** @internal the native handle (for pipelines that take this VAE). */
  nativeHandle(): VaeHandle {
    return this.h();
  }

  private h(): VaeHandle {
    if (!this.handle) throw new DisposedError('AutoencoderKL has been disposed');
    return this.handle;
  }

  /** Config summary and current slicing/tiling options. */
  get info(): VaeInfo {
    const h = this.h();
    return nativeSync(() => addon().vaeInfo(h));
  }

  /** 2^(len(block_out_channels) - 1): pixels per latent (8 for SD, 2 for the tiny test model). */
  get vaeScaleFactor(): number { return this.info.vaeScaleFactor; }
  /** config scaling_factor (0.18215 for SD 1.x). */
  get scalingFactor(): number { return this.info.scalingFactor; }
  /** config force_upcast: diffusers decodes in float32 when the pipeline runs in float16. */
  get forceUpcast(): boolean { return this.info.forceUpcast; }

  /**
   * Decodes latents (already divided by `scalingFactor`).
   * @param latents - float32 `[batch, latent_channels, h, w]`
   * @returns float32 image `[batch, out_channels, h·f, w·f]` in ≈[-1, 1], unclamped.
   * @throws InvalidArgumentError for a wrong rank or channel count.
   */
  decode(latents: TensorData): Promise<TensorData> {
    const h = this.h();
    return native(() => addon().vaeDecode(h, latents));
  }

  /**
   * Encodes images into the posterior over (unscaled) latents.
   * @param image - float32 `[batch, in_channels, H, W]` in [-1, 1]
   * @param seed - when given, `sample` = mean + std·randn from `torch.Generator('cpu').manual_seed(seed)`
   * @returns moments, mean, logvar (clamped to [-30, 20]), std, and sample (with a seed).
   */
  encode(image: TensorData, seed?: number): Promise<VaeEncodeResult> {
    const h = this.h();
    return native(() => addon().vaeEncode(h, image, seed));
  }

  /** diffusers enable_slicing(): one batch element at a time (identical results). */
  enableSlicing(): void { this.setOptions({ slicing: true }); }
  disableSlicing(): void { this.setOptions({ slicing: false }); }
  /**
   * diffusers enable_tiling(): inputs larger than a tile are processed in overlapping tiles
   * (results differ slightly near the seams).
   * @param tileSize - tile_sample_min_size in pixels (default config sample_size)
   * @param tileOverlap - tile_overlap_factor (default 0.25)
   */
  enableTiling(tileSize?: number, tileOverlap?: number): void {
    this.setOptions({ tiling: true, tileSize, tileOverlap });
  }
  disableTiling(): void { this.setOptions({ tiling: false }); }

  /** Sets slicing/tiling options; absent fields keep their value. Returns the resulting info. */
  setOptions(options: NativeVaeOptions): VaeInfo {
    const h = this.h();
    const clean = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    return nativeSync(() => addon().vaeSetOptions(h, clean));
  }

  /** Frees the native model (work in flight finishes first). */
  dispose(): void {
    if (this.handle) addon().disposeVae(this.handle);
    this.handle = undefined;
  }
}
