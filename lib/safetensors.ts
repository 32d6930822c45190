/** safetensors inspection and I/O, backed by the validating native reader. */
import { addon } from './native.js';
import { native } from './errors.js';
import type { SafetensorsHeader, TensorData, AnyTensorData } from '../types/native.js';

export type { SafetensorsHeader, SafetensorsTensorInfo } from '../types/native.js';

/**
 * Reads and validates the header of a `.safetensors` file (the data is memory-mapped, not read).
 * @param path - file path
 * @returns metadata (`__metadata__`) and the tensor infos: name, dtype, shape, byte offsets.
 * @throws ModelNotFoundError when the file cannot be opened.
 * @throws BadCheckpointError when the file is truncated, its header is malformed, names an
 *   unknown dtype, or its offsets disagree with the shapes, overlap or leave holes.
 */
export function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  return native(() => addon().readSafetensorsHeader(path));
}

/**
 * Reads every tensor of a `.safetensors` file into memory (F16/BF16 are widened to float32,
 * F8 tensors come back as raw bytes). Meant for tests and tools; models load natively.
 * @throws the same errors as {@link readSafetensorsHeader}.
 */
export function readSafetensors(path: string): Promise<Record<string, TensorData<any>>> {
  return native(() => addon().readSafetensors(path));
}

/**
 * Writes tensors to a `.safetensors` file (keys sorted, header padded to 8 bytes).
 * @param tensors - name → `{ data, shape }` with Float32Array (F32), Float64Array (F64),
 *   BigInt64Array (I64), Int32Array (I32) or Uint8Array (U8) data.
 */
export function writeSafetensors(
  path: string, tensors: Record<string, AnyTensorData>, metadata?: Record<string, string>,
): Promise<void> {
  return native(() => addon().writeSafetensors(path, tensors, metadata));
}
