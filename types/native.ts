/**
 * The contract between the TypeScript facade and the native addon: what `sd_native.node`
 * exports, one file per addon source file (types/addon/<file>.ts ↔ native/addon/<file>.cc),
 * after node-llama-cpp's AddonTypes. Hand-written; keep it in step with native/addon/*.cc.
 *
 * {@link NativeAddon} is what lib/ may call; {@link TestingAddon} adds the bindings that exist
 * for the tests (lib/native.ts `testingAddon()`). Handles are branded per native class.
 * (.ts files holding only types, so that the published declarations include them.)
 */
import type { AutoencoderTinyAddon } from './addon/autoencoder_tiny.js';
import type { BackendsAddon } from './addon/backends.js';
import type { CannyAddon } from './addon/canny.js';
import type { CheckpointAddon } from './addon/checkpoint.js';
import type { ControlNetAddon, ControlNetTestingAddon } from './addon/controlnet.js';
import type { IoAddon, IoTestingAddon } from './addon/io.js';
import type { LoraAddon, LoraTestingAddon } from './addon/lora.js';
import type { ModelsAddon } from './addon/models.js';
import type { PipelineAddon, PipelineTestingAddon } from './addon/pipeline.js';
import type { PipelineVaeAddon } from './addon/pipeline_vae.js';
import type { SchedulersAddon, SchedulersTestingAddon } from './addon/schedulers.js';
import type { TextEncoderAddon } from './addon/text_encoder.js';
import type { UNetTestingAddon } from './addon/unet.js';
import type { VaeAddon } from './addon/vae.js';

export type * from './addon/autoencoder_tiny.js';
export type * from './addon/backends.js';
export type * from './addon/canny.js';
export type * from './addon/checkpoint.js';
export type * from './addon/controlnet.js';
export type * from './addon/io.js';
export type * from './addon/lora.js';
export type * from './addon/models.js';
export type * from './addon/pipeline.js';
export type * from './addon/pipeline_vae.js';
export type * from './addon/schedulers.js';
export type * from './addon/tensor.js';
export type * from './addon/text_encoder.js';
export type * from './addon/unet.js';
export type * from './addon/vae.js';

/** The bindings lib/ uses (no index signature: every call is type-checked). */
export interface NativeAddon extends IoAddon, TextEncoderAddon, VaeAddon, SchedulersAddon, CheckpointAddon, PipelineAddon,
  ModelsAddon, BackendsAddon, LoraAddon, ControlNetAddon, AutoencoderTinyAddon,
  PipelineVaeAddon, CannyAddon {}

/** {@link NativeAddon} plus the bindings that exist only for the tests (UNet alone, fp8 codecs, encodeText, …). */
export interface TestingAddon extends NativeAddon, IoTestingAddon, UNetTestingAddon, SchedulersTestingAddon, PipelineTestingAddon,
  LoraTestingAddon, ControlNetTestingAddon {}
