/**
 * sd-native: Stable Diffusion inference for Node.js on a native libtorch core.
 * @packageDocumentation
 */
export * from './errors.js';
export { readSafetensorsHeader, readSafetensors, writeSafetensors } from './safetensors.js';
export type { SafetensorsHeader, SafetensorsTensorInfo } from './safetensors.js';
export type { TensorData } from '../types/native.js';
export { buildInfo } from './info.js';
export { readModelIndex, loadStateDict, compareCheckpoints, validateSafetensorsBuffer } from './checkpoint.js';
export type { ModelIndex, LoadStateDictOptions, TensorSummary, CheckpointComparison, SafetensorsValidation } from './checkpoint.js';
