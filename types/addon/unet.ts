/** native/addon/unet.cc: diffusers' UNet2DConditionModel on its own (used by the tests: parity and attention paths). */
import type { AnyTensorData, Handle, TensorData, PipelineDtype } from './tensor.js';

/** A loaded UNet2DConditionModel. */
export type UNetHandle = Handle<'UNet2DConditionModel'>;

/** loadUNet options (native/addon/unet.cc). dtype default 'float32', device default 'cpu'. */
export interface UNetLoadOptions { dtype?: PipelineDtype; device?: string; variant?: string }
/** unetForward inputs: sample [B,C,h,w], timestep 0-d/[B] (a number is a 0-d tensor), encoderHiddenStates [B,M,D]; SDXL: textEmbeds [B,k], timeIds [B,6]. */
export interface UNetForwardInputs {
  sample: TensorData; timestep: number | AnyTensorData; encoderHiddenStates: TensorData;
  textEmbeds?: TensorData; timeIds?: TensorData;
  /** ControlNet residuals (diffusers down_block_additional_residuals / mid_block_additional_residual); both or neither. */
  downBlockAdditionalResiduals?: TensorData[]; midBlockAdditionalResidual?: TensorData;
}
/** Attention settings (diffusers enable_attention_slicing / SDPA); 0 or null turns slicing off. */
/** sdpa: true = always SDPA (libtorch >= 2.0), false = the math path, 'flash' = sd-native's memory-efficient CPU kernel, 'auto' = the faster kernel per device, dtype and shape (CUDA: SDPA; CPU float32: SDPA on libtorch >= 2.0, else flash or math). */
export interface AttentionSettings { sliceSize?: number | 'auto' | 'max' | null; sdpa?: boolean | 'auto' | 'flash' }

/** The UNet bindings, all test-only. */
export interface UNetTestingAddon {
  loadUNet(dir: string, options?: UNetLoadOptions): Promise<UNetHandle>;
  unetForward(unet: UNetHandle, inputs: UNetForwardInputs): Promise<TensorData>;
  /** Applies from the next unetForward; returns the settings in effect (sdpa false where libtorch < 2.0 or slicing is on). */
  unetSetAttention(unet: UNetHandle, settings: AttentionSettings): { sliceSize: number | 'auto' | 'max'; sdpa: boolean };
  disposeUNet(unet: UNetHandle): void;
  /**
   * GroupNorm(groups, eps) of x [N, C, *] (then SiLU unless `silu` is false) computed in `dtype` (default
   * 'float32'; channelsLast: a 4-D x in that layout) by sd-native's fused CPU kernel ('fused', default;
   * native/core/nn/group_norm_silu.h) or by at::group_norm + at::silu ('aten'); the result as float32.
   * gamma, beta [C]. Errors (fused): E_INVALID_ARGUMENT for a layout or group count it does not take.
   */
  groupNormSilu(x: TensorData, groups: number, gamma: TensorData, beta: TensorData,
    options: { eps?: number; dtype?: 'float32' | 'bfloat16'; impl?: 'fused' | 'aten'; silu?: boolean; channelsLast?: boolean }): Promise<TensorData>;
  /**
   * diffusers GEGLU after its projection: proj [..., 2F] → hidden · gelu(gate) [..., F] computed in `dtype`
   * by sd-native's one-pass CPU kernel ('fused', default) or by chunk + at::gelu + mul ('aten'); the result
   * as float32. Errors (fused): E_INVALID_ARGUMENT for an odd last dimension.
   */
  geglu(proj: TensorData, options: { dtype?: 'float32' | 'bfloat16'; impl?: 'fused' | 'aten' }): Promise<TensorData>;
  /** Whether models use the fused GroupNorm (+ SiLU) and GEGLU CPU kernels (default true; process-wide); returns the previous setting. */
  setFusedGroupNorm(on: boolean): boolean;
}
