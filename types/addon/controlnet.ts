/** native/addon/controlnet.cc: diffusers' ControlNetModel (load, info, dispose; forward for the tests). */
import type { AnyTensorData, Handle, PipelineDtype, TensorData } from './tensor.js';

/** A loaded ControlNetModel; passed to generate requests ({@link NativeControlNetUnit}). */
export type ControlNetHandle = Handle<'ControlNetModel'>;

/** loadControlNet options (complete: lib/controlnet_model.ts fills them). */
/** config: for an original-layout single file, its diffusers ControlNet config.json (or the folder holding it). */
export interface NativeControlNetLoadOptions { dtype: PipelineDtype; device: string; variant?: string; config?: string }

/** What controlnetInfo reports. */
export interface NativeControlNetInfo {
  /** addition_embed_type "text_time": an SDXL ControlNet. */
  sdxl: boolean;
  crossAttentionDim: number;
  conditioningChannels: number;
  /** 2^(len(conditioning_embedding_out_channels) − 1): must equal the pipeline's VAE scale factor. */
  conditioningDownscale: number;
  globalPoolConditions: boolean;
  parameters: number;
}

/** One ControlNet of a generate request (`controlnets` of NativeGenerateRequest). */
export interface NativeControlNetUnit {
  controlnet: ControlNetHandle;
  /** uint8 [H, W, 3] RGB or [H, W] grayscale, at the request's height×width. */
  image: TensorData<Uint8Array>;
  /** controlnet_conditioning_scale, control_guidance_start / _end of this net. */
  scale: number; start: number; end: number;
}

/** controlnetForward inputs: sample [B,4,h,w], timestep 0-d or [B], encoderHiddenStates [B,M,D], controlnetCond [B,3,H,W] in [0,1]; SDXL textEmbeds, timeIds. */
export interface ControlNetForwardInputs {
  sample: TensorData; timestep: AnyTensorData; encoderHiddenStates: TensorData; controlnetCond: TensorData;
  conditioningScale: number; guessMode: boolean; textEmbeds?: TensorData; timeIds?: TensorData;
}

export interface ControlNetAddon {
  loadControlNet(dir: string, options: NativeControlNetLoadOptions): Promise<ControlNetHandle>;
  controlnetInfo(controlnet: ControlNetHandle): NativeControlNetInfo;
  disposeControlNet(controlnet: ControlNetHandle): void;
}

export interface ControlNetTestingAddon {
  /** Writes the diffusers ControlNet folder `dir` as an original-layout file (control_model.* keys); resolves the tensor count. */
  controlnetSaveOriginalLayout(dir: string, outFile: string): Promise<number>;
  /** The down residuals (one per UNet skip) and the mid residual, scaled, float32. */
  controlnetForward(controlnet: ControlNetHandle, inputs: ControlNetForwardInputs): Promise<{ down: TensorData[]; mid: TensorData }>;
}
