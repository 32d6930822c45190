/** native/addon/text_encoder.cc: transformers' CLIPTextModel / CLIPTextModelWithProjection. */
import type { Handle, TensorData, PipelineDtype } from './tensor.js';

/** A loaded CLIP text encoder. */
export type TextEncoderHandle = Handle<'CLIPTextModel'>;

/** Options of `loadTextEncoder`. */
export interface TextEncoderLoadOptions {
  /** Compute dtype (default 'float32'). 'float16' on CPU fails with E_UNSUPPORTED_MODEL where libtorch lacks the kernels (1.13). */
  dtype?: PipelineDtype;
  /** Weights file variant: 'fp16' reads model.fp16.safetensors. */
  variant?: string;
  /** 'cpu' (default), 'cuda', 'cuda:<index>'. */
  device?: string;
}

/** Outputs of transformers' CLIPTextModel(WithProjection) forward, as float32 data. */
export interface TextEncoderOutput {
  /** [B, S, D] after final_layer_norm. */
  lastHiddenState: TensorData;
  /** L+1 entries [B, S, D]: embeddings, then each layer's output (no final LN); empty with outputHiddenStates false. */
  hiddenStates: TensorData[];
  /** [B, D] final-LN'ed state at the EOS position (pooler_output). */
  pooled: TensorData;
  /** [B, projection_dim] = text_projection(pooled), CLIPTextModelWithProjection only. */
  textEmbeds?: TensorData;
}

/** Config and placement of a loaded text encoder. */
export interface TextEncoderInfo {
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  eosTokenId: number;
  hiddenAct: string;
  withProjection: boolean;
  projectionDim?: number;
  dtype: string;
  device: string;
}


export interface TextEncoderAddon {
  /** Loads a transformers CLIPTextModel(WithProjection) folder (config.json + model[.variant].safetensors). */
  loadTextEncoder(dir: string, options?: TextEncoderLoadOptions): Promise<TextEncoderHandle>;
  /** inputIds int64 [B, S] → outputs. */
  textEncoderForward(handle: TextEncoderHandle, inputIds: TensorData<BigInt64Array>,
    options?: { outputHiddenStates?: boolean }): Promise<TextEncoderOutput>;
  /** hidden_states[index] (python indexing: -2 = penultimate), running only the layers needed; optionally final-LN'ed. */
  textEncoderHiddenState(handle: TextEncoderHandle, inputIds: TensorData<BigInt64Array>, index: number,
    options?: { finalLayerNorm?: boolean }): Promise<TensorData>;
  /** text_model.final_layer_norm(x), x [..., D]. */
  textEncoderFinalLayerNorm(handle: TextEncoderHandle, x: TensorData): Promise<TensorData>;
  /** Overwrites token embedding rows firstId… with rows [n, D], growing the table as needed (textual inversion). */
  textEncoderSetTokenEmbeddings(handle: TextEncoderHandle, firstId: number, rows: TensorData): Promise<void>;
  textEncoderInfo(handle: TextEncoderHandle): TextEncoderInfo;
  disposeTextEncoder(handle: TextEncoderHandle): void;
}
