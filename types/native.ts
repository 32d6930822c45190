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

/** Opaque handle to a native object. */
export type NativeHandle = { readonly __nativeHandle: unique symbol };

/** loadUNet options (native/addon/unet.cc). dtype default 'float32', device default 'cpu'. */
export interface UNetLoadOptions { dtype?: 'float32' | 'float16' | 'bfloat16'; device?: string; variant?: string }
/** unetForward inputs: sample [B,C,h,w], timestep 0-d/[B] (a number is a 0-d tensor), encoderHiddenStates [B,M,D]; SDXL: textEmbeds [B,k], timeIds [B,6]. */
export interface UNetForwardInputs {
  sample: TensorData; timestep: number | AnyTensorData; encoderHiddenStates: TensorData;
  textEmbeds?: TensorData; timeIds?: TensorData;
}
/** Attention settings (diffusers enable_attention_slicing / SDPA); 0 or null turns slicing off. */
export interface AttentionSettings { sliceSize?: number | 'auto' | 'max' | null; sdpa?: boolean }

export interface NativeAddon {
  readSafetensorsHeader(path: string): Promise<SafetensorsHeader>;
  readSafetensors(path: string): Promise<Record<string, TensorData<any>>>;
  writeSafetensors(path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>): Promise<void>;
  buildInfo(): BuildInfo;
  loadUNet(dir: string, options?: UNetLoadOptions): Promise<NativeHandle>;
  unetForward(unet: NativeHandle, inputs: UNetForwardInputs): Promise<TensorData>;
  /** Applies from the next unetForward; returns the settings in effect (sdpa false where libtorch < 2.0 or slicing is on). */
  unetSetAttention(unet: NativeHandle, settings: AttentionSettings): { sliceSize: number | 'auto' | 'max'; sdpa: boolean };
  disposeUNet(unet: NativeHandle): void;
  [key: string]: any;
}
