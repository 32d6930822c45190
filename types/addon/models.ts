/** native/addon/models.cc: random weights for a component config (create-model). */
import type { PipelineDtype } from './tensor.js';

/** Options of `createRandomWeights`: one component's random weights from its config.json. */
export interface NativeRandomWeightsOptions {
  component: 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2';
  configPath: string;
  seed: number;
  /** The .safetensors file to write. */
  out: string;
  dtype?: PipelineDtype;
  /** 'cpu' (default) | 'cuda' | 'cuda:N': where the weights are drawn (E_DEVICE_UNAVAILABLE without CUDA). */
  device?: string;
}


export interface ModelsAddon {
  createRandomWeights(opts: NativeRandomWeightsOptions): Promise<{ parameters: number; bytes: number }>;
}
