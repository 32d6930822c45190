/** native/addon/vae.cc: diffusers' AutoencoderKL. */
import type { Handle, TensorData, PipelineDtype } from './tensor.js';

/** A loaded AutoencoderKL. */
export type VaeHandle = Handle<'AutoencoderKL'>;

/** Options of `loadVae`. */
export interface NativeVaeLoadOptions {
  /** Weight and compute dtype (default 'float32'). */
  dtype?: PipelineDtype;
  /** Weights file variant: `diffusion_pytorch_model.<variant>.safetensors` (e.g. 'fp16'). */
  variant?: string;
  /** 'cpu' (default) | 'cuda' | 'cuda:<index>'. */
  device?: string;
}

/** Options of `vaeSetOptions` (absent fields keep their current value). */
export interface NativeVaeOptions {
  /** diffusers enable_slicing: encode/decode one batch element at a time. */
  slicing?: boolean;
  /** diffusers enable_tiling: encode/decode inputs larger than one tile in overlapping tiles. */
  tiling?: boolean;
  /** tile_sample_min_size in pixels (default: config sample_size); a multiple of the VAE scale factor. */
  tileSize?: number;
  /** tile_overlap_factor in [0, 1) (default 0.25). */
  tileOverlap?: number;
}

/** What `vaeInfo` / `vaeSetOptions` report about a loaded AutoencoderKL. */
export interface NativeVaeInfo {
  vaeScaleFactor: number;
  scalingFactor: number;
  shiftFactor: number | null;
  forceUpcast: boolean;
  latentChannels: number;
  inChannels: number;
  outChannels: number;
  sampleSize: number;
  dtype: string;
  device: string;
  slicing: boolean;
  tiling: boolean;
  tileSampleMinSize: number;
  tileLatentMinSize: number;
  tileOverlapFactor: number;
}

/** The posterior `vaeEncode` returns (float32 data, [B, latent, h, w]; moments [B, 2·latent, h, w]). */
export interface NativeVaeEncodeResult {
  moments: TensorData;
  mean: TensorData;
  /** clamped to [-30, 20] */
  logvar: TensorData;
  std: TensorData;
  /** mean + std·randn drawn from a CPU generator seeded with `seed` (only when a seed was given). */
  sample?: TensorData;
}

export interface VaeAddon {
  loadVae(dir: string, options?: NativeVaeLoadOptions): Promise<VaeHandle>;
  /** A standalone original-layout (LDM) VAE `.safetensors` with the config of the diffusers VAE folder `configDir`. */
  loadVaeSingleFile(file: string, configDir: string, options?: Omit<NativeVaeLoadOptions, 'variant'>): Promise<VaeHandle>;
  vaeInfo(handle: VaeHandle): NativeVaeInfo;
  vaeDecode(handle: VaeHandle, latents: TensorData): Promise<TensorData>;
  vaeEncode(handle: VaeHandle, image: TensorData, seed?: number): Promise<NativeVaeEncodeResult>;
  vaeSetOptions(handle: VaeHandle, options: NativeVaeOptions): NativeVaeInfo;
  disposeVae(handle: VaeHandle): void;
}
