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

/** model_index.json of a diffusers pipeline folder. */
export interface ModelIndex {
  dir: string;
  /** `_class_name`, e.g. 'StableDiffusionPipeline', 'StableDiffusionXLPipeline'. */
  className: string;
  /** `_diffusers_version` ('' when absent). */
  diffusersVersion: string;
  /** component name → [library, class], or null for `[null, null]` (e.g. a disabled safety_checker). */
  components: Record<string, [string, string] | null>;
  /** Present when model_index.json sets it (SDXL pipelines). */
  forceZerosForEmptyPrompt?: boolean;
}

/** Options of {@link NativeAddon.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Component folder name ('unet', 'vae', 'text_encoder', ...); with singleFile: 'unet' | 'vae' | 'text_encoder'. */
  component?: string;
  /** Weight variant, e.g. 'fp16' → `<base>.fp16.safetensors`. */
  variant?: string;
  /** 'diffusion_pytorch_model' | 'model'; default from the component's config.json. */
  baseName?: string;
  /** `path` is an original single-file checkpoint (mapped to diffusers names). */
  singleFile?: boolean;
  /** With singleFile: a diffusers folder whose unet/vae/text_encoder config.json fix the architecture. */
  configDir?: string;
}

/** One tensor of a state dict: its shape and torch dtype name ('float32', 'float16', 'int64', ...). */
export interface TensorSummary {
  shape: number[];
  dtype: string;
}

/** A single-file component compared with the same component loaded from a folder. */
export interface CheckpointComparison {
  /** In the folder, not in the mapped single file. */
  missing: string[];
  /** In the mapped single file, not in the folder. */
  unexpected: string[];
  /** Same name, different shape or dtype ("name: [shape] dtype vs [shape] dtype"). */
  mismatched: string[];
  /** Largest |single − folder| over the tensors compared. */
  maxAbsDiff: number;
  /** Number of tensors compared. */
  count: number;
}

/** Result of validating an in-memory safetensors image. */
export interface SafetensorsValidation {
  ok: true;
  tensors: number;
  /** Bytes read through the tensors (= the data section). */
  bytes: number;
  /** Sum of every byte read (a checksum over the data section). */
  byteSum: number;
}

/** Opaque handle to a native object. */
export type NativeHandle = { readonly __nativeHandle: unique symbol };

export interface NativeAddon {
  readSafetensorsHeader(path: string): Promise<SafetensorsHeader>;
  readSafetensors(path: string): Promise<Record<string, TensorData<any>>>;
  writeSafetensors(path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>): Promise<void>;
  buildInfo(): BuildInfo;
  readModelIndex(dir: string): Promise<ModelIndex>;
  loadStateDict(path: string, options?: LoadStateDictOptions): Promise<Record<string, TensorSummary>>;
  compareCheckpoints(singleFile: string, configDir: string, folder: string): Promise<Record<'unet' | 'vae' | 'text_encoder', CheckpointComparison>>;
  /** Synchronous; throws a coded Error (E_BAD_CHECKPOINT) when the image is invalid. */
  validateSafetensorsBuffer(buf: Uint8Array): SafetensorsValidation;
  [key: string]: any;
}
