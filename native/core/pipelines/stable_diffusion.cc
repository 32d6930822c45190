// diffusers v0.30.3 StableDiffusionPipeline.__call__ and StableDiffusionImg2ImgPipeline.__call__
// (pipelines/stable_diffusion/pipeline_stable_diffusion{,_img2img}.py), numbered as there.
#include "pipelines/stable_diffusion.h"

#include <ATen/core/grad_mode.h>

#include <atomic>
#include <chrono>
#include <filesystem>

#include "io/checkpoint.h"
#include "loaders/single_file.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text_model.h"
#include "models/unet_2d_condition.h"
#include "pipelines/memory_guard.h"
#include "pipelines/pipeline_common.h"
#include "schedulers/scheduler.h"
#include "util/error.h"

namespace sd::pipelines {

namespace fs = std::filesystem;

using detail::invalid;
using detail::msSince;

namespace {
std::atomic<int64_t> liveInstances{0};
}

StableDiffusionPipeline::StableDiffusionPipeline() : PipelineBase(liveInstances) {}
StableDiffusionPipeline::~StableDiffusionPipeline() = default;
int64_t StableDiffusionPipeline::liveCount() { return liveInstances.load(); }

std::shared_ptr<StableDiffusionPipeline> StableDiffusionPipeline::load(const std::string& path,
                                                                       const LoadOptions& options) {
  auto pipe = std::shared_ptr<StableDiffusionPipeline>(new StableDiffusionPipeline());
  pipe->beginLoad(options);

  // The folder whose configs describe the model: the model itself, or configDir for a single file.
  const std::string root = configFolder(path, options,
                                        "a diffusers folder with the model's configs (model_index.json, unet/, vae/, "
                                        "text_encoder/, scheduler/, tokenizer/)");
  io::ModelIndex index = io::readModelIndex(root);
  if (index.className == "StableDiffusionXLPipeline" || index.className == "StableDiffusionXLImg2ImgPipeline")
    fail(codes::kUnsupportedModel, root + " is an SDXL model (" + index.className +
                                       "); StableDiffusionPipeline runs SD 1.x and 2.x: load it with StableDiffusionXLPipeline "
                                       "(or StableDiffusionXLImg2ImgPipeline)");

  const auto unetConfig = models::UNet2DConditionConfig::fromFile((fs::path(root) / "unet" / "config.json").string());
  const auto vaeConfig = models::AutoencoderKLConfig::fromFile((fs::path(root) / "vae" / "config.json").string());
  const auto clipConfig = models::CLIPTextConfig::fromFile((fs::path(root) / "text_encoder" / "config.json").string());

  nn::StateDict unetW, vaeW, clipW;
  if (options.singleFile) {
    loaders::SingleFileCheckpoint ckpt = loaders::loadSingleFile(path, options.configDir);
    unetW = std::move(ckpt.unet);
    vaeW = std::move(ckpt.vae);
    clipW = std::move(ckpt.textEncoder);
  } else {
    unetW = io::loadComponentWeights((fs::path(root) / "unet").string(), "diffusion_pytorch_model", options.variant);
    vaeW = io::loadComponentWeights((fs::path(root) / "vae").string(), "diffusion_pytorch_model", options.variant);
    clipW = io::loadComponentWeights((fs::path(root) / "text_encoder").string(), "model", options.variant);
  }
  const std::string unetSrc = options.singleFile ? "unet (" + path + ")" : "unet (" + root + "/unet)";
  const std::string vaeSrc = options.singleFile ? "vae (" + path + ")" : "vae (" + root + "/vae)";
  const std::string clipSrc = options.singleFile ? "text_encoder (" + path + ")" : "text_encoder (" + root + "/text_encoder)";
  pipe->unet_ = std::make_shared<models::UNet2DConditionModel>(unetConfig, std::move(unetW), unetSrc);
  pipe->vae_ = std::make_shared<models::AutoencoderKL>(vaeConfig, std::move(vaeW), vaeSrc);
  pipe->textEncoder_ = std::make_shared<models::CLIPTextModel>(clipConfig, std::move(clipW), clipSrc);

  PipelineInfo& info = pipe->info_;
  info.className = index.className;
  info.family = clipConfig.hiddenAct == "gelu" ? "sd2" : "sd1";
  info.tokenizerDirs = {(fs::path(root) / "tokenizer").string()};
  pipe->finishLoad(info, root, path, options);
  return pipe;
}

at::Tensor StableDiffusionPipeline::encodePrompt(const at::Tensor& ids, int64_t clipSkip,
                                                 int64_t numImagesPerPrompt) const {
  at::Tensor embeds;  // [P, 77, D]
  models::CLIPTextOutput out = textEncoder_->forward(ids.to(device_), /*outputHiddenStates=*/clipSkip > 0);
  if (clipSkip > 0) {
    const int64_t n = static_cast<int64_t>(out.hiddenStates.size());
    if (clipSkip + 1 > n - 1)
      invalid("clipSkip " + std::to_string(clipSkip) + " is larger than the text encoder allows (at most " +
              std::to_string(n - 2) + ")");
    // diffusers: final_layer_norm(hidden_states[-(clip_skip + 1)])
    embeds = textEncoder_->finalLayerNorm(out.hiddenStates[static_cast<size_t>(n - 1 - clipSkip)]);
  } else {
    embeds = out.lastHiddenState;
  }
  embeds = embeds.to(dtype_);
  // repeat(1, n, 1).view(P·n, 77, D): p0, p0, p1, p1
  return embeds.repeat_interleave(numImagesPerPrompt, 0);  // [P·n, 77, D]
}

bool StableDiffusionPipeline::checkCommonInputs(const GenerateRequest& req) const {
  if (!req.inputIds.defined() || req.inputIds.dim() != 2 || req.inputIds.scalar_type() != at::kLong)
    invalid("inputIds must be an int64 tensor [numPrompts, 77]");
  if (req.inputIds.size(0) < 1) invalid("at least one prompt is required");
  if (req.numInferenceSteps < 1) invalid("numInferenceSteps must be >= 1; received " + std::to_string(req.numInferenceSteps));
  if (req.numImagesPerPrompt < 1) invalid("numImagesPerPrompt must be >= 1");
  checkSize(req.height, req.width);
  if (!std::isfinite(req.guidanceScale)) invalid("guidanceScale must be a finite number");
  const bool cfg = req.guidanceScale > 1.0;
  if (cfg && (!req.negativeInputIds.defined() || req.negativeInputIds.sizes() != req.inputIds.sizes()))
    invalid("negativeInputIds must match inputIds [numPrompts, 77] when guidanceScale > 1");
  return cfg;
}

GenerateResult StableDiffusionPipeline::generate(const GenerateRequest& req, const StepCallback& onStep,
                                                 const AbortCheck& aborted) {
  if (req.mask.defined()) return inpaint(req, onStep, aborted);  // stable_diffusion_inpaint.cc
  GenerationScope scope(*this, aborted);  // one generation at a time per pipeline
  GenerateResult result;
  const bool img2img = req.image.defined();
  const int64_t f = info_.vaeScaleFactor;
  detail::ScopedLoraScale loraScale(loraScaleSlots(), req.loraScale);

  // 1. Check inputs
  const bool cfg = checkCommonInputs(req);
  const int64_t numPrompts = req.inputIds.size(0);
  if (img2img && !(req.strength >= 0.0 && req.strength <= 1.0)) invalid("strength must be in [0, 1]");

  // 2. Define call parameters
  const int64_t batch = numPrompts * req.numImagesPerPrompt;
  const runtime::Generators generator = requestGenerators(req.seed, req.seeds, batch);
  guardMemory({batch, cfg, req.height, req.width, req.inputIds.size(1), img2img,
               static_cast<int64_t>(req.controlnets.size())}, result);  // issue 19: E_OUT_OF_MEMORY up front

  // 3. Encode input prompt: [uncond…, cond…]
  auto tEncode = std::chrono::steady_clock::now();
  // Offload (either mode): the text encoder visits the GPU as a whole (its embedding lookup reads
  // the table directly).
  detail::OnDevice clipOnDevice(&textEncoder_->weights(), device_, !applied_.offload.empty());
  at::Tensor promptEmbeds = req.promptWeights.defined()
                               ? encodePromptWeighted(req.inputIds, req.promptWeights, req.clipSkip, req.numImagesPerPrompt)
                               : encodePrompt(req.inputIds, req.clipSkip, req.numImagesPerPrompt);  // [B, 77, D]
  if (cfg) {
    // diffusers' encode_prompt applies clip_skip to the prompt only: the negative embeds are
    // always the text encoder's last_hidden_state.
    at::Tensor negative = req.negativePromptWeights.defined()
                              ? encodePromptWeighted(req.negativeInputIds, req.negativePromptWeights, 0, req.numImagesPerPrompt)
                              : encodePrompt(req.negativeInputIds, 0, req.numImagesPerPrompt);
    promptEmbeds = at::cat({negative, promptEmbeds}, 0);  // [2B, 77, D]
  }
  clipOnDevice.release();
  result.encodeMs = msSince(tEncode);

  // 4. Prepare timesteps (img2img: get_timesteps, which sets the scheduler's begin index)
  auto scheduler = schedulers::createScheduler(req.schedulerName, req.schedulerConfig);
  scheduler->setTimesteps(req.numInferenceSteps);
  at::Tensor timesteps = scheduler->timesteps();
  if (img2img) {
    timesteps = strengthTimesteps(*scheduler, timesteps, req.numInferenceSteps, req.strength, /*setBeginIndex=*/true);
    if (timesteps.size(0) == 0)
      invalid("strength " + std::to_string(req.strength) + " with " + std::to_string(req.numInferenceSteps) +
              " steps leaves no denoising step; raise strength or numInferenceSteps");
  }

  // 5. Prepare latent variables
  const int64_t channels = unet_->config().inChannels;
  if (channels == 9)
    invalid("this is an inpainting model (9-channel UNet): use StableDiffusionInpaintPipeline with an image and a mask");
  at::Tensor latents;
  if (!img2img) {
    latents = initialNoiseLatents(req.latents, {batch, channels, req.height / f, req.width / f}, generator,
                                  scheduler->initNoiseSigma());
  } else {
    // Image → [-1, 1] NCHW; encode; sample from the latent distribution; scale; add noise.
    if (req.image.dim() != 3 || req.image.size(2) != 3 || req.image.size(0) != req.height || req.image.size(1) != req.width)
      invalid("image must be uint8 [height, width, 3] at the requested size");
    at::Tensor initLatents = encodeImageLatentsForBatch(imageToPixels(req.image), generator, batch);
    latents = addNoiseFromGenerator(*scheduler, initLatents, generator, timesteps[0].item<double>());
  }
  result.initialLatents = latents.to(at::kFloat).cpu();

  // 7. Denoising loop (with the ControlNets of a ControlNet pipeline: pipelines/controlnet.cc)
  const ControlHook control = controlHook(req, cfg, batch, promptEmbeds, nullptr);
  latents = denoiseLatents(result, *scheduler, latents, timesteps, promptEmbeds, nullptr, req.guidanceScale, generator,
                           req.eta, onStep, aborted, &control);
  // 8. Decode
  finishGeneration(result, latents, req.outputLatent, aborted, scope.t0);
  return result;
}

}  // namespace sd::pipelines
