/**
 * The contract between the TypeScript facade and the native addon: what `sd_native.node`
 * exports. Hand-written; keep it in step with native/addon/*.cc.
 * (A .ts file holding only types, so that the published declarations include it.)
 */

/** A dense tensor crossing the boundary: row-major data and its shape. */
export interface TensorData<A extends ArrayLike<number | bigint> = Float32Array> {
  data: A;
  shape: number[];
  /** Set on tensors coming from native code: 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool'. */
  dtype?: string;
}

export type AnyTensorData = TensorData<Float32Array> | TensorData<Float64Array> | TensorData<BigInt64Array>
  | TensorData<Int32Array> | TensorData<Uint8Array>;

/** One tensor entry of a safetensors header. */
export interface SafetensorsTensorInfo {
  name: string;
  /** safetensors dtype: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL */
  dtype: string;
  shape: number[];
  /** [begin, end) relative to the data section. */
  dataOffsets: [number, number];
  /** [begin, end) from the start of the file. */
  fileOffsets: [number, number];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: SafetensorsTensorInfo[];
  headerSize: number;
}

export interface BuildInfo {
  libtorchVersion: string;
  sdpa: boolean;
  cuda: boolean;
  threads: number;
}

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

/** Opaque handle to a native object. */
export type NativeHandle = { readonly __nativeHandle: unique symbol };

export interface NativeAddon {
  readSafetensorsHeader(path: string): Promise<SafetensorsHeader>;
  readSafetensors(path: string): Promise<Record<string, TensorData<any>>>;
  writeSafetensors(path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>): Promise<void>;
  buildInfo(): BuildInfo;
  // schedulers.cc (synchronous)
  schedulerNames(): string[];
  createScheduler(className: string, configJson: string): NativeHandle;
  schedulerSetTimesteps(scheduler: NativeHandle, numInferenceSteps: number): void;
  schedulerState(scheduler: NativeHandle): NativeSchedulerState;
  schedulerScaleModelInput(scheduler: NativeHandle, sample: AnyTensorData, timestep: number): TensorData;
  schedulerStep(scheduler: NativeHandle, modelOutput: AnyTensorData, timestep: number, sample: AnyTensorData,
    generator: NativeHandle | null, eta: number): { prevSample: TensorData; predOriginalSample?: TensorData };
  schedulerAddNoise(scheduler: NativeHandle, original: AnyTensorData, noise: AnyTensorData, timestep: number): TensorData;
  schedulerSetBeginIndex(scheduler: NativeHandle, beginIndex: number): void;
  createGenerator(seed: bigint): NativeHandle;
  generatorRandn(generator: NativeHandle, shape: number[]): TensorData;
  [key: string]: any;
}
