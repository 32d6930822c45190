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
export { AutoencoderTiny } from './autoencoder_tiny.js';
export type { AutoencoderTinyLoadOptions, AutoencoderTinyInfo, AutoencoderTinyForwardResult } from './autoencoder_tiny.js';
export { DiffusionPipeline } from './pipelines/pipeline_utils.js';
export { StableDiffusionPipeline } from './pipelines/stable_diffusion.js';
export { StableDiffusionImg2ImgPipeline } from './pipelines/stable_diffusion_img2img.js';
export { StableDiffusionInpaintPipeline } from './pipelines/stable_diffusion_inpaint.js';
export { StableDiffusionXLPipeline } from './pipelines/stable_diffusion_xl.js';
export { StableDiffusionXLImg2ImgPipeline } from './pipelines/stable_diffusion_xl_img2img.js';
export { ControlNetModel } from './controlnet_model.js';
export type { ControlNetLoadOptions, ControlNetInfo } from './controlnet_model.js';
export { StableDiffusionControlNetPipeline, ControlNetPipelineBase } from './pipelines/controlnet/pipeline_controlnet.js';
export type { ControlNetPipelineOptions } from './pipelines/controlnet/pipeline_controlnet.js';
export { StableDiffusionControlNetImg2ImgPipeline } from './pipelines/controlnet/pipeline_controlnet_img2img.js';
export { StableDiffusionControlNetInpaintPipeline } from './pipelines/controlnet/pipeline_controlnet_inpaint.js';
export { StableDiffusionXLControlNetPipeline } from './pipelines/controlnet/pipeline_controlnet_sd_xl.js';
export { AutoPipelineForText2Image, AutoPipelineForImage2Image, AutoPipelineForInpainting } from './pipelines/auto_pipeline.js';
export type { PipelineInfo, SchedulerInfo } from './pipelines/pipeline_utils.js';
export type { GenerateResult, GenerateTimings } from './pipelines/pipeline_output.js';
export {
  SUPPORTED_SCHEDULERS, generateOptionsSchema, img2imgOptionsSchema, inpaintOptionsSchema, xlGenerateOptionsSchema,
  xlImg2ImgOptionsSchema, controlnetOptionsSchema, controlnetImg2ImgOptionsSchema, controlnetInpaintOptionsSchema,
  xlControlnetOptionsSchema, parseControlNetOptions, loadOptionsSchema, parseLoadOptions, parseGenerateOptions, resolveGenerateOptions, randomSeed, DEFAULTS,
} from './options.js';
export type {
  GenerateOptions, Img2ImgOptions, InpaintOptions, XLGenerateOptions, XLImg2ImgOptions, XLConditioningOptions, LoadOptions,
  ResolvedLoadOptions, ResolvedGenerateOptions, ModelDefaults, GenerateMode, PromptInput, ImageInput, RawImageInput,
  RawMaskInput, LatentsInput, StepProgress, HubDownloadProgress, HubLoadOptions, ControlNetOptions, ControlNetImg2ImgOptions,
  ControlNetInpaintOptions, XLControlNetOptions, ResolvedControlOptions,
} from './options.js';
export {
  GeneratedImage, loadInputImage, formatA1111Parameters, formatControlNetUnit, samplerName, readPngText, insertPngText, checkOutputDir,
} from './image.js';
export type { GenerationParameters, ControlNetUnitParameters, DecodedImage, PngOptions, LossyOptions } from './image.js';
export type { ModelFamily, PipelineDtype, NativeComponentInfo as ComponentInfo, NativeOptimizations as PipelineOptimizations } from '../types/native.js';
export { canny } from './canny.js';
export type { CannyOptions } from './canny.js';
export { createModel } from './create-model.js';
export type { CreateModelOptions, CreatedModel, ModelPreset, ModelScale } from './create-model.js';
export { createScheduler, Generator, SCHEDULER_NAMES, A1111_SAMPLERS, resolveSchedulerName } from './schedulers.js';
export type { Scheduler, SchedulerName, SchedulerStepOptions, SchedulerStepOutput } from './schedulers.js';
export { readModelIndex, loadStateDict, compareCheckpoints, validateSafetensorsBuffer, saveSingleFile } from './loaders/single_file.js';
export type { ModelIndex, LoadStateDictOptions, TensorSummary, CheckpointComparison, CheckpointComparisons, SafetensorsValidation, SingleFileSummary } from './loaders/single_file.js';
export { extractLoraTags } from './loaders/lora.js';
export type { LoadLoraOptions, LoraLoadResult, LoraTag } from './loaders/lora.js';
export { maybeConvertPrompt } from './loaders/textual_inversion.js';
export type { LoadTextualInversionOptions, TextEncoderName } from './loaders/textual_inversion.js';
export { parsePromptAttention, promptChunks, weightedTokens, MAX_PROMPT_CHUNKS } from './prompt-weighting.js';
export type { PromptChunk } from './prompt-weighting.js';
export { downloadPipeline, downloadComponent, hubCacheDir, hubEndpoint, listCachedModels, parseHubId } from './loaders/hub.js';
export type { HubModelId, HubOptions, HubSnapshot, CachedModel, CachedRevision } from './loaders/hub.js';
