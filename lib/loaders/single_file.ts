/**
 * Checkpoint inspection: diffusers folders (model_index.json, component weights and variants) and
 * original single-file checkpoints (SD 1.x / 2.x LDM layout) mapped to diffusers names natively.
 */
import { addon } from '../native.js';
import { native, nativeSync } from '../errors.js';
import type {
  ModelIndex, LoadStateDictOptions, TensorSummary, CheckpointComparisons, SafetensorsValidation, SingleFileSummary,
} from '../../types/native.js';

export type {
  ModelIndex, LoadStateDictOptions, TensorSummary, CheckpointComparison, CheckpointComparisons, SafetensorsValidation,
  SingleFileSummary,
} from '../../types/native.js';

/**
 * Reads `<dir>/model_index.json` (diffusers `DiffusionPipeline` folder index).
 * @throws ModelNotFoundError when the folder or model_index.json is missing.
 * @throws BadConfigError when the JSON is malformed, lacks `_class_name`, or a component entry is
 *   not `[library, class]` / `[null, null]`.
 */
export function readModelIndex(dir: string): Promise<ModelIndex> {
  return native(() => addon().readModelIndex(dir));
}

/**
 * Loads a state dict natively and returns each tensor's shape and dtype (the data stays native).
 * Folder mode: `path` is a pipeline folder with `component`, or a component folder; weights are
 * `<base>.safetensors`, `<base>.<variant>.safetensors` or a sharded `.safetensors.index.json`.
 * Single-file mode (`singleFile: true`): `path` is an original SD 1.x/2.x/XL checkpoint, mapped to
 * diffusers names with the architecture of `configDir`'s configs (`component` 'text_encoder_2' for SDXL).
 * @throws ModelNotFoundError for a missing folder/file or variant (the message lists what exists).
 * @throws BadCheckpointError for pickle files (.bin/.ckpt/.pt/.pth; refused because loading them
 *   can run code — the message says how to convert), invalid safetensors, or unmappable keys.
 * @throws UnsupportedModelError for single files that are not SD 1.x/2.x/XL checkpoints.
 * @throws InvalidArgumentError when configDir's model_index.json is of another family than the file.
 */
export function loadStateDict(path: string, options: LoadStateDictOptions = {}): Promise<Record<string, TensorSummary>> {
  return native(() => addon().loadStateDict(path, options));
}

/**
 * Maps a single-file checkpoint with `configDir`'s configs and compares unet, vae, text_encoder
 * (and for SDXL text_encoder_2) with the same components of the diffusers folder `folder`
 * (names, shapes, dtypes, values).
 */
export function compareCheckpoints(
  singleFile: string, configDir: string, folder: string,
): Promise<CheckpointComparisons> {
  return native(() => addon().compareCheckpoints(singleFile, configDir, folder));
}

/**
 * Writes the diffusers folder `modelDir` as one original-layout single-file checkpoint
 * (safetensors; tensors keep their stored dtype) — the inverse of the single-file loader, after
 * diffusers' scripts/convert_diffusers_to_original_{stable_diffusion,sdxl}.py:
 * SD 1.x → `cond_stage_model.transformer.*`; SD 2.x → `cond_stage_model.model.*` (OpenCLIP, q/k/v
 * fused into `in_proj_weight` [3·D, D]); SDXL → `conditioner.embedders.0.transformer.*` +
 * `conditioner.embedders.1.model.*` (`text_projection` [D, P] = text_projection.weightᵀ), refiner →
 * `conditioner.embedders.0.model.*`; always `model.diffusion_model.*` and `first_stage_model.*`.
 * The family comes from model_index.json (`StableDiffusionXL*`) or text_encoder's hidden_act
 * (`quick_gelu` SD 1.x, `gelu` SD 2.x). `fromSingleFile(outFile, { configDir: modelDir })` loads
 * back every tensor unchanged.
 * @param options.variant weight variant to read (e.g. 'fp16'); default the plain weights.
 * @throws ModelNotFoundError / BadConfigError for a missing folder, config or weights.
 * @throws BadCheckpointError listing diffusers weights with no original name.
 * @throws InvalidArgumentError when outFile cannot be written.
 * @example await saveSingleFile('./my-sdxl', './my-sdxl.safetensors');
 */
export function saveSingleFile(modelDir: string, outFile: string, options: { variant?: string } = {}): Promise<SingleFileSummary> {
  return native(() => addon().saveSingleFile(modelDir, outFile, options));
}

/**
 * Validates an in-memory safetensors image with the same checks as the file reader, then reads
 * every tensor. Synchronous.
 * @throws BadCheckpointError when the image is truncated, malformed or lies about its contents.
 */
export function validateSafetensorsBuffer(buf: Uint8Array): SafetensorsValidation {
  return nativeSync(() => addon().validateSafetensorsBuffer(buf));
}
