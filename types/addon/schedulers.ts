/** native/addon/schedulers.cc: diffusers' schedulers and torch's CPU generator (synchronous). */
import type { AnyTensorData, Handle, TensorData } from './tensor.js';

/** A scheduler instance (its timesteps and multistep state). */
export type SchedulerHandle = Handle<'Scheduler'>;
/** A `torch.Generator('cpu')`. */
export type GeneratorHandle = Handle<'Generator'>;

/** What `schedulerState` reports (tensors on the CPU; timesteps etc. only after setTimesteps). */
export interface NativeSchedulerState {
  name: string;
  order: number;
  numTrainTimesteps: number;
  alphasCumprod: TensorData<Float32Array>;
  /** int64 (BigInt64Array) or float32/float64, as diffusers' `scheduler.timesteps`. */
  timesteps?: TensorData<BigInt64Array | Float32Array | Float64Array>;
  initNoiseSigma?: number;
  sigmas?: TensorData<Float32Array>;
}


export interface SchedulersAddon {
  createScheduler(className: string, configJson: string): SchedulerHandle;
  schedulerSetTimesteps(scheduler: SchedulerHandle, numInferenceSteps: number): void;
  schedulerState(scheduler: SchedulerHandle): NativeSchedulerState;
  schedulerScaleModelInput(scheduler: SchedulerHandle, sample: AnyTensorData, timestep: number): TensorData;
  schedulerStep(scheduler: SchedulerHandle, modelOutput: AnyTensorData, timestep: number, sample: AnyTensorData,
    generator: GeneratorHandle | null, eta: number): { prevSample: TensorData; predOriginalSample?: TensorData };
  schedulerAddNoise(scheduler: SchedulerHandle, original: AnyTensorData, noise: AnyTensorData, timestep: number): TensorData;
  schedulerSetBeginIndex(scheduler: SchedulerHandle, beginIndex: number): void;
  createGenerator(seed: bigint): GeneratorHandle;
  generatorRandn(generator: GeneratorHandle, shape: number[]): TensorData;
}

export interface SchedulersTestingAddon {
  /** The scheduler class names the core implements (the tests compare it with lib's list). */
  schedulerNames(): string[];
}
