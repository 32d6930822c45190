/** native/addon/checkpoint.cc: diffusers folders (io/checkpoint) and single files (loaders/single_file). */

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
  /** Component folder name ('unet', 'vae', 'text_encoder', ...); with singleFile: 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2' (SDXL). */
  component?: string;
  /** Weight variant, e.g. 'fp16' → `<base>.fp16.safetensors`. */
  variant?: string;
  /** 'diffusion_pytorch_model' | 'model'; default from the component's config.json. */
  baseName?: string;
  /** `path` is an original single-file checkpoint (mapped to diffusers names). */
  singleFile?: boolean;
  /** With singleFile: a diffusers folder whose unet/vae/text_encoder(/text_encoder_2) config.json fix the architecture. */
  configDir?: string;
}

/** One tensor of a state dict: its shape and torch dtype name ('float32', 'float16', 'int64', ...). */
export interface TensorSummary {
  shape: number[];
  dtype: string;
}

/** Per component: unet, vae, text_encoder (absent for an SDXL refiner), text_encoder_2 (SDXL only). */
export type CheckpointComparisons = Record<'unet' | 'vae' | 'text_encoder', CheckpointComparison> & { text_encoder_2?: CheckpointComparison };

/** Result of {@link NativeAddon.saveSingleFile}. */
export interface SingleFileSummary {
  /** The file written. */
  path: string;
  /** Layout written: 'sd1' (cond_stage_model.transformer), 'sd2' (cond_stage_model.model), 'sdxl' (conditioner.embedders). */
  family: 'sd1' | 'sd2' | 'sdxl';
  /** SDXL refiner layout (no text_encoder; OpenCLIP bigG as conditioner.embedders.0.model). */
  refiner: boolean;
  /** Number of tensors written. */
  tensors: number;
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


export interface CheckpointAddon {
  readModelIndex(dir: string): Promise<ModelIndex>;
  loadStateDict(path: string, options?: LoadStateDictOptions): Promise<Record<string, TensorSummary>>;
  compareCheckpoints(singleFile: string, configDir: string, folder: string): Promise<CheckpointComparisons>;
  saveSingleFile(modelDir: string, outFile: string, options?: { variant?: string }): Promise<SingleFileSummary>;
  /** Synchronous; throws a coded Error (E_BAD_CHECKPOINT) when the image is invalid. */
  validateSafetensorsBuffer(buf: Uint8Array): SafetensorsValidation;
}
