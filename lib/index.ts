/**
 * sd-native: Stable Diffusion inference for Node.js on a native libtorch core.
 * @packageDocumentation
 */
export * from './errors.js';
export { readSafetensorsHeader, readSafetensors, writeSafetensors } from './safetensors.js';
export type { SafetensorsHeader, SafetensorsTensorInfo } from './safetensors.js';
export type { TensorData } from '../types/native.js';
export { buildInfo } from './info.js';
export { CLIPTokenizer } from './tokenizer.js';
export type { TokenizeOptions, DecodeOptions } from './tokenizer.js';
export { AutoencoderKL } from './autoencoder_kl.js';
export type { VaeLoadOptions, VaeInfo, VaeEncodeResult } from './autoencoder_kl.js';
