/** native/addon/autoencoder_tiny.cc: diffusers' AutoencoderTiny (TAESD). */
import type { Handle, TensorData, PipelineDtype } from './tensor.js';

/** A loaded AutoencoderTiny. */
export type AutoencoderTinyHandle = Handle<'AutoencoderTiny'>;

/** Options of `loadAutoencoderTiny`. */
export interface NativeAutoencoderTinyLoadOptions {
  /** Weight and compute dtype (default 'float32'). */
  dtype?: PipelineDtype;
  /** Weights file variant: `diffusion_pytorch_model.<variant>.safetensors`. */
  variant?: string;
  /** 'cpu' (default) | 'cuda' | 'cuda:<index>'. */
  device?: string;
}

/** What `autoencoderTinyInfo` reports. */
export interface NativeAutoencoderTinyInfo {
  /** diffusers' vae_scale_factor: 2^(len(decoder_block_out_channels) − 1) (8 for TAESD). */
  vaeScaleFactor: number;
  /** The decoder's real upsampling: upsampling_scaling_factor^(stages − 1). */
  decoderUpsampling: number;
  scalingFactor: number;
  latentMagnitude: number;
  latentShift: number;
  latentChannels: number;
  inChannels: number;
  outChannels: number;
  forceUpcast: boolean;
  dtype: string;
  device: string;
}

/** `autoencoderTinyForward`'s result: diffusers AutoencoderTiny.forward's intermediate tensors. */
export interface NativeAutoencoderTinyForward {
  /** encode(image): float32 [B, latent, h, w]. */
  latents: TensorData;
  /** scale_latents(latents)·255, rounded: uint8 [B, latent, h, w]. */
  latentsUint8: TensorData<Uint8Array>;
  /** decode(unscale_latents(latentsUint8 / 255)): float32 [B, out, H, W]. */
  decoded: TensorData;
}

export interface AutoencoderTinyAddon {
  loadAutoencoderTiny(dir: string, options?: NativeAutoencoderTinyLoadOptions): Promise<AutoencoderTinyHandle>;
  autoencoderTinyInfo(handle: AutoencoderTinyHandle): NativeAutoencoderTinyInfo;
  autoencoderTinyDecode(handle: AutoencoderTinyHandle, latents: TensorData): Promise<TensorData>;
  autoencoderTinyEncode(handle: AutoencoderTinyHandle, image: TensorData): Promise<TensorData>;
  autoencoderTinyScaleLatents(handle: AutoencoderTinyHandle, latents: TensorData, unscale: boolean): Promise<TensorData>;
  autoencoderTinyForward(handle: AutoencoderTinyHandle, image: TensorData): Promise<NativeAutoencoderTinyForward>;
  disposeAutoencoderTiny(handle: AutoencoderTinyHandle): void;
}
