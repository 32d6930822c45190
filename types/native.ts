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

/** Options of `loadVae`. */
export interface NativeVaeLoadOptions {
  /** Weight and compute dtype (default 'float32'). */
  dtype?: 'float32' | 'float16' | 'bfloat16';
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

export interface NativeAddon {
  readSafetensorsHeader(path: string): Promise<SafetensorsHeader>;
  readSafetensors(path: string): Promise<Record<string, TensorData<any>>>;
  writeSafetensors(path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>): Promise<void>;
  buildInfo(): BuildInfo;
  loadVae(dir: string, options?: NativeVaeLoadOptions): Promise<NativeHandle>;
  vaeInfo(handle: NativeHandle): NativeVaeInfo;
  vaeDecode(handle: NativeHandle, latents: TensorData): Promise<TensorData>;
  vaeEncode(handle: NativeHandle, image: TensorData, seed?: number): Promise<NativeVaeEncodeResult>;
  vaeSetOptions(handle: NativeHandle, options: NativeVaeOptions): NativeVaeInfo;
  disposeVae(handle: NativeHandle): void;
  [key: string]: any;
}
