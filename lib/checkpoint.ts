/**
 * Checkpoint inspection: diffusers folders (model_index.json, component weights and variants) and
 * original single-file checkpoints (SD 1.x / 2.x LDM layout) mapped to diffusers names natively.
 */
import { addon } from './native.js';
import { native, nativeSync } from './errors.js';
import type {
  ModelIndex, LoadStateDictOptions, TensorSummary, CheckpointComparison, SafetensorsValidation,
} from '../types/native.js';

export type { ModelIndex, LoadStateDictOptions, TensorSummary, CheckpointComparison, SafetensorsValidation } from '../types/native.js';

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
 * Single-file mode (`singleFile: true`): `path` is an original SD 1.x/2.x checkpoint, mapped to
 * diffusers names with the architecture of `configDir`'s configs.
 * @throws ModelNotFoundError for a missing folder/file or variant (the message lists what exists).
 * @throws BadCheckpointError for pickle files (.bin/.ckpt/.pt/.pth; refused because loading them
 *   can run code — the message says how to convert), invalid safetensors, or unmappable keys.
 * @throws UnsupportedModelError for SDXL or non-SD single files.
 */
export function loadStateDict(path: string, options: LoadStateDictOptions = {}): Promise<Record<string, TensorSummary>> {
  return native(() => addon().loadStateDict(path, options));
}

/**
 * Maps a single-file checkpoint with `configDir`'s configs and compares unet, vae and text_encoder
 * with the same components of the diffusers folder `folder` (names, shapes, dtypes, values).
 */
export function compareCheckpoints(
  singleFile: string, configDir: string, folder: string,
): Promise<Record<'unet' | 'vae' | 'text_encoder', CheckpointComparison>> {
  return native(() => addon().compareCheckpoints(singleFile, configDir, folder));
}

/**
 * Validates an in-memory safetensors image with the same checks as the file reader, then reads
 * every tensor. Synchronous.
 * @throws BadCheckpointError when the image is truncated, malformed or lies about its contents.
 */
export function validateSafetensorsBuffer(buf: Uint8Array): SafetensorsValidation {
  return nativeSync(() => addon().validateSafetensorsBuffer(buf));
}
