/** native/addon/pipeline_vae.cc: the VAE a pipeline decodes with (diffusers' `pipe.vae = …`) and its preview decoder. */
import type { AutoencoderTinyHandle } from './autoencoder_tiny.js';
import type { PipelineHandle } from './pipeline.js';
import type { VaeHandle } from './vae.js';

/** What `pipelineVae` reports. */
export interface NativePipelineVae {
  /** The VAE in use: the pipeline's own, another AutoencoderKL, or an AutoencoderTiny. */
  inUse: 'own' | 'AutoencoderKL' | 'AutoencoderTiny';
  /** The VAE scale factor of the VAE in use. */
  vaeScaleFactor: number;
  /** A handle on the pipeline's own (loaded) AutoencoderKL. */
  own: VaeHandle;
}

export interface PipelineVaeAddon {
  /**
   * Decode/encode with `vae` from the next generate on (null: the pipeline's own VAE); waits for a
   * generation in flight. E_INVALID_ARGUMENT for another device, other latent channels, or CPU offload on.
   */
  pipelineSetVae(h: PipelineHandle, vae: VaeHandle | AutoencoderTinyHandle | null): Promise<void>;
  pipelineVae(h: PipelineHandle): NativePipelineVae;
  /** The AutoencoderTiny 'taesd' previews decode with (null removes it). */
  pipelineSetPreviewDecoder(h: PipelineHandle, decoder: AutoencoderTinyHandle | null): Promise<void>;
}
