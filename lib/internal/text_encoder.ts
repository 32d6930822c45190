/**
 * Internal: a CLIP text encoder held natively (transformers' CLIPTextModel /
 * CLIPTextModelWithProjection, v4.40). Pipelines use it to encode prompts; not exported publicly.
 */
import { addon } from '../native.js';
import { native, nativeSync, DisposedError } from '../errors.js';
import type {
  TextEncoderHandle, TensorData, TextEncoderInfo, TextEncoderLoadOptions, TextEncoderOutput,
} from '../../types/native.js';

export type { TextEncoderInfo, TextEncoderLoadOptions, TextEncoderOutput } from '../../types/native.js';

export class TextEncoder {
  #handle: TextEncoderHandle | undefined;

  private constructor(handle: TextEncoderHandle) {
    this.#handle = handle;
  }

  /**
   * Loads `<dir>/config.json` and `<dir>/model[.<variant>].safetensors`.
   * @throws ModelNotFoundError when the folder, config or weights file is missing.
   * @throws BadConfigError when config.json lacks a required field (named in the message).
   * @throws BadCheckpointError on a missing, unused or mis-shaped weight, or a pickle-only folder.
   * @throws UnsupportedModelError when the dtype cannot run on the device (float16 on CPU with libtorch 1.13).
   */
  static async load(dir: string, options: TextEncoderLoadOptions = {}): Promise<TextEncoder> {
    return new TextEncoder(await native(() => addon().loadTextEncoder(dir, options)));
  }

  private get handle(): TextEncoderHandle {
    if (!this.#handle) throw new DisposedError('text encoder has been disposed');
    return this.#handle;
  }

  /** Config and placement (dtype, device). */
  get info(): TextEncoderInfo {
    return nativeSync(() => addon().textEncoderInfo(this.handle));
  }

  /**
   * Runs the encoder on token ids.
   * @param inputIds - int64 [batch, seq ≤ max_position_embeddings] token ids.
   * @throws InvalidArgumentError for a wrong shape or an id outside the vocabulary.
   */
  forward(inputIds: TensorData<BigInt64Array>, options: { outputHiddenStates?: boolean } = {}): Promise<TextEncoderOutput> {
    return native(() => addon().textEncoderForward(this.handle, inputIds, options));
  }

  /**
   * hidden_states[index] (python indexing: 0 = embeddings, -1 = last layer, -2 = penultimate),
   * computing only the layers needed; with `finalLayerNorm` the final LayerNorm is applied
   * (SD 1.x/2.x clip skip).
   */
  hiddenState(inputIds: TensorData<BigInt64Array>, index: number, options: { finalLayerNorm?: boolean } = {}):
    Promise<TensorData> {
    return native(() => addon().textEncoderHiddenState(this.handle, inputIds, index, options));
  }

  /** text_model.final_layer_norm(x) for x [..., hidden_size]. */
  finalLayerNorm(x: TensorData): Promise<TensorData> {
    return native(() => addon().textEncoderFinalLayerNorm(this.handle, x));
  }

  /** Sets token embedding rows firstId… to `rows` [n, hidden_size], growing the vocabulary if needed. */
  setTokenEmbeddings(firstId: number, rows: TensorData): Promise<void> {
    return native(() => addon().textEncoderSetTokenEmbeddings(this.handle, firstId, rows));
  }

  /** Releases the native weights (once no call in flight uses them). */
  dispose(): void {
    if (this.#handle) addon().disposeTextEncoder(this.#handle);
    this.#handle = undefined;
  }
}
