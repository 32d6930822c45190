/**
 * sd-native: Stable Diffusion inference for Node.js on a native libtorch core.
 * @packageDocumentation
 */
export * from './errors.js';
export { readSafetensorsHeader, readSafetensors, writeSafetensors } from './safetensors.js';
export type { SafetensorsHeader, SafetensorsTensorInfo } from './safetensors.js';
export type { TensorData } from '../types/native.js';
export { buildInfo } from './info.js';
export { createScheduler, Generator, SCHEDULER_NAMES } from './schedulers.js';
export type { Scheduler, SchedulerName, SchedulerStepOptions, SchedulerStepOutput } from './schedulers.js';
