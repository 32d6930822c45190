/** native/addon/lora.cc: LoRA adapters and textual-inversion rows of a loaded pipeline (either kind). */
import type { PipelineHandle } from './pipeline.js';
import type { TensorData } from './tensor.js';

/** What `loadLora` attached. */
export interface NativeLoraLoadResult {
  adapter: string;
  unetModules: number;
  textEncoderModules: number;
  textEncoder2Modules: number;
}

export interface LoraAddon {
  loadLora(h: PipelineHandle, path: string, opts: { adapterName?: string; weight: number }): Promise<NativeLoraLoadResult>;
  setLoraAdapters(h: PipelineHandle, names: string[], weights: number[]): Promise<void>;
  fuseLora(h: PipelineHandle, scale: number): Promise<number>;
  unfuseLora(h: PipelineHandle): Promise<number>;
  /** Removes adapter `adapterName`, or all when undefined. */
  unloadLora(h: PipelineHandle, adapterName?: string): Promise<void>;
  loraAdapters(h: PipelineHandle): Promise<string[]>;
  /** Textual inversion rows of `component`; resolves to its new vocabulary size. */
  setTokenEmbeddings(h: PipelineHandle, firstId: number, rows: TensorData, component: 'text_encoder' | 'text_encoder_2'): Promise<number>;
}

export interface LoraTestingAddon {
  /** A copy of a component's weight (float32, CPU; fp8-stored weights decoded). */
  pipelineWeight(h: PipelineHandle, component: 'unet' | 'text_encoder' | 'text_encoder_2' | 'vae', name: string): Promise<TensorData>;
}
