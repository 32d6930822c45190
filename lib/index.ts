/**
 * sd-native: Stable Diffusion inference for Node.js on a native libtorch core.
 * @packageDocumentation
 */
export * from './errors.js';
export { readSafetensorsHeader, readSafetensors, writeSafetensors } from './safetensors.js';
export type { SafetensorsHeader, SafetensorsTensorInfo } from './safetensors.js';
export type { TensorData } from '../types/native.js';
export { buildInfo } from './info.js';
export { backends } from './backends.js';
export type { CudnnBackend, CudaBackend } from './backends.js';
export { CLIPTokenizer } from './tokenizer.js';
export type { TokenizeOptions, DecodeOptions } from './tokenizer.js';
export { AutoencoderKL } from './autoencoder_kl.js';
export type { VaeLoadOptions, VaeInfo, VaeEncodeResult } from './autoencoder_kl.js';
export {
  StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline,
} from './pipeline.js';
export type { InpaintOptions } from './pipeline.js';
export type { PipelineInfo, SchedulerInfo, GenerateResult, GenerateTimings } from './pipeline.js';
export { StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline } from './pipeline_xl.js';
export type { XLGenerateOptions, XLImg2ImgOptions, XLConditioningOptions } from './pipeline_xl.js';
export {
  SUPPORTED_SCHEDULERS, generateOptionsSchema, img2imgOptionsSchema, loadOptionsSchema,
  parseLoadOptions, parseGenerateOptions, resolveGenerateOptions, randomSeed,
} from './options.js';
export type {
  GenerateOptions, Img2ImgOptions, LoadOptions, ResolvedLoadOptions, ResolvedGenerateOptions, ModelDefaults,
  PromptInput, ImageInput, RawImageInput, LatentsInput, StepProgress,
} from './options.js';
export {
  GeneratedImage, loadInputImage, formatA1111Parameters, samplerName, readPngText, insertPngText,
} from './image.js';
export type { GenerationParameters, DecodedImage, PngOptions, LossyOptions } from './image.js';
export type { ModelFamily, PipelineDtype, NativeComponentInfo as ComponentInfo, NativeOptimizations as PipelineOptimizations } from '../types/native.js';
export { createModel } from './create-model.js';
export type { CreateModelOptions, CreatedModel, ModelPreset, ModelScale } from './create-model.js';
export { createScheduler, Generator, SCHEDULER_NAMES } from './schedulers.js';
export type { Scheduler, SchedulerName, SchedulerStepOptions, SchedulerStepOutput } from './schedulers.js';
export { readModelIndex, loadStateDict, compareCheckpoints, validateSafetensorsBuffer, saveSingleFile } from './checkpoint.js';
export type { ModelIndex, LoadStateDictOptions, TensorSummary, CheckpointComparison, CheckpointComparisons, SafetensorsValidation, SingleFileSummary } from './checkpoint.js';
export { extractLoraTags, maybeConvertPrompt } from './lora.js';
export type { LoadLoraOptions, LoraLoadResult, LoadTextualInversionOptions, LoraTag, TextEncoderName } from './lora.js';
export { parsePromptAttention, promptChunks, weightedTokens } from './prompt-weighting.js';
export type { PromptChunk } from './prompt-weighting.js';
