// diffusers v0.30.3 StableDiffusionPipeline.__call__ and StableDiffusionImg2ImgPipeline.__call__
// (pipelines/stable_diffusion/pipeline_stable_diffusion{,_img2img}.py), numbered as there.
#include "pipelines/stable_diffusion.h"

#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "config/config_reader.h"
#include "io/checkpoint.h"
#include "loaders/single_file.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text_model.h"
#include "models/unet_2d_condition.h"
#include "nn/attention.h"
#include "nn/weight_storage.h"
#include "pipelines/pipeline_common.h"
#include "runtime/dtype_support.h"
#include "schedulers/scheduler.h"
#include "util/error.h"
#include "util/torch_compat.h"

namespace sd::pipelines {

namespace fs = std::filesystem;

using detail::invalid;
using detail::msSince;

namespace {
std::atomic<int64_t> liveInstances{0};
}

StableDiffusionPipeline::StableDiffusionPipeline() { ++liveInstances; }
StableDiffusionPipeline::~StableDiffusionPipeline() { --liveInstances; }
int64_t StableDiffusionPipeline::liveCount() { return liveInstances.load(); }

std::shared_ptr<StableDiffusionPipeline> StableDiffusionPipeline::load(const std::string& path,
                                                                       const LoadOptions& options) {
  const at::Device device = prepareLoad(options);

  auto pipe = std::shared_ptr<StableDiffusionPipeline>(new StableDiffusionPipeline());
  pipe->device_ = device;
  pipe->dtype_ = options.dtype;

  // The folder whose configs describe the model: the model itself, or configDir for a single file.
  std::string root = path;
  if (options.singleFile) {
    if (options.configDir.empty())
      invalid("loading the single file " + path + " needs configDir: a diffusers folder with the model's configs "
              "(model_index.json, unet/, vae/, text_encoder/, scheduler/, tokenizer/)");
    root = options.configDir;
  }
  if (!fs::exists(path)) fail(codes::kModelNotFound, "model not found: " + path);
  if (!fs::is_directory(root)) fail(codes::kModelNotFound, "model folder not found: " + root);

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
  pipe->unet_->to(device, options.dtype);
  pipe->textEncoder_->to(device, options.dtype);
  // force_upcast (SD/SDXL VAEs overflow in float16): keep the VAE in float32 and run encode and
  // decode there, as diffusers' upcast_vae does; otherwise the VAE computes in the pipeline dtype.
  pipe->vaeDtype_ = (options.dtype == at::kHalf && pipe->vae_->forceUpcast()) ? at::kFloat : options.dtype;
  pipe->vae_->to(device, pipe->vaeDtype_);

  PipelineInfo& info = pipe->info_;
  info.className = index.className;
  info.modelPath = path;
  info.family = clipConfig.hiddenAct == "gelu" ? "sd2" : "sd1";
  info.vaeScaleFactor = pipe->vae_->vaeScaleFactor();
  info.sampleSize = unetConfig.sampleSize;
  info.tokenizerDirs = {(fs::path(root) / "tokenizer").string()};
  const fs::path schedFile = fs::path(root) / "scheduler" / "scheduler_config.json";
  info.schedulerConfig = Json::parseFile(schedFile.string());
  const Json* cls = info.schedulerConfig.find("_class_name");
  if (!cls || !cls->isString()) fail(codes::kBadConfig, schedFile.string() + ": field \"_class_name\" is required");
  info.schedulerName = cls->string();
  info.device = device.str();
  info.dtype = runtime::dtypeName(options.dtype);
  info.components = pipe->recordComponents();
  pipe->family_ = info.family;
  pipe->loadPath_ = path;
  pipe->loadOptions_ = options;
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
  const int64_t f = info_.vaeScaleFactor;
  if (!req.inputIds.defined() || req.inputIds.dim() != 2 || req.inputIds.scalar_type() != at::kLong)
    invalid("inputIds must be an int64 tensor [numPrompts, 77]");
  if (req.inputIds.size(0) < 1) invalid("at least one prompt is required");
  if (req.numInferenceSteps < 1) invalid("numInferenceSteps must be >= 1; received " + std::to_string(req.numInferenceSteps));
  if (req.numImagesPerPrompt < 1) invalid("numImagesPerPrompt must be >= 1");
  if (req.height <= 0 || req.width <= 0 || req.height % f != 0 || req.width % f != 0)
    invalid("height and width must be positive multiples of " + std::to_string(f) + "; received " +
            std::to_string(req.width) + "x" + std::to_string(req.height));
  if (!std::isfinite(req.guidanceScale)) invalid("guidanceScale must be a finite number");
  const bool cfg = req.guidanceScale > 1.0;
  if (cfg && (!req.negativeInputIds.defined() || req.negativeInputIds.sizes() != req.inputIds.sizes()))
    invalid("negativeInputIds must match inputIds [numPrompts, 77] when guidanceScale > 1");
  return cfg;
}

GenerateResult StableDiffusionPipeline::generate(const GenerateRequest& req, const StepCallback& onStep,
                                                 const AbortCheck& aborted) {
  if (req.mask.defined()) return inpaint(req, onStep, aborted);  // stable_diffusion_inpaint.cc
  std::lock_guard<std::mutex> lock(mutex_);  // one generation at a time per pipeline
  const auto t0 = std::chrono::steady_clock::now();
  applyOptimizations();  // toggles set since the last call
  const bool channelsLast = applied_.channelsLast;
  const bool modelOffload = applied_.offload == "model";
  at::NoGradGuard noGrad;
  at::InferenceMode inference;
  GenerateResult result;
  const bool img2img = req.image.defined();
  const int64_t f = info_.vaeScaleFactor;
  detail::ScopedLoraScale loraScale({&unet_->weights().loraScale(), &textEncoder_->weights().loraScale()},
                                    req.loraScale);

  // 1. Check inputs
  const bool cfg = checkCommonInputs(req);
  const int64_t numPrompts = req.inputIds.size(0);
  if (img2img && !(req.strength >= 0.0 && req.strength <= 1.0)) invalid("strength must be in [0, 1]");

  // 2. Define call parameters
  const int64_t batch = numPrompts * req.numImagesPerPrompt;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(req.seed);

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

  // 4. Prepare timesteps
  auto scheduler = schedulers::createScheduler(req.schedulerName, req.schedulerConfig);
  scheduler->setTimesteps(req.numInferenceSteps);
  at::Tensor timesteps = scheduler->timesteps();
  int64_t tStart = 0;
  if (img2img) {
    // get_timesteps: init_timestep = min(int(steps·strength), steps); t_start = steps − init_timestep
    const int64_t initTimestep = std::min<int64_t>(static_cast<int64_t>(req.numInferenceSteps * req.strength), req.numInferenceSteps);
    tStart = std::max<int64_t>(req.numInferenceSteps - initTimestep, 0);
    timesteps = timesteps.slice(0, tStart * scheduler->order());
    scheduler->setBeginIndex(tStart * scheduler->order());
    if (timesteps.size(0) == 0)
      invalid("strength " + std::to_string(req.strength) + " with " + std::to_string(req.numInferenceSteps) +
              " steps leaves no denoising step; raise strength or numInferenceSteps");
  }

  // 5. Prepare latent variables
  const int64_t channels = unet_->config().inChannels;
  if (channels == 9)
    invalid("this is an inpainting model (9-channel UNet): use StableDiffusionInpaintPipeline with an image and a mask");
  const std::vector<int64_t> latentShape = {batch, channels, req.height / f, req.width / f};
  at::Tensor latents;
  if (!img2img) {
    if (req.latents.defined()) {
      if (req.latents.sizes() != at::IntArrayRef(latentShape))
        invalid("latents must have shape [" + std::to_string(batch) + ", " + std::to_string(channels) + ", " +
                std::to_string(req.height / f) + ", " + std::to_string(req.width / f) + "]");
      latents = req.latents.to(at::kFloat);
    } else {
      latents = at::randn(latentShape, generator, at::TensorOptions().dtype(at::kFloat));  // CPU draw
    }
    latents = latents.to(device_, dtype_) * scheduler->initNoiseSigma();
  } else {
    // Image → [-1, 1] NCHW; encode; sample from the latent distribution; scale; add noise.
    if (req.image.dim() != 3 || req.image.size(2) != 3 || req.image.size(0) != req.height || req.image.size(1) != req.width)
      invalid("image must be uint8 [height, width, 3] at the requested size");
    at::Tensor image = req.image.to(at::kFloat).div(255.0).mul(2.0).sub(1.0).permute({2, 0, 1}).unsqueeze(0);  // [1, 3, H, W]
    image = image.to(device_, vaeDtype_);
    if (channelsLast) image = image.contiguous(at::MemoryFormat::ChannelsLast);
    detail::OnDevice vaeOnDevice(&vae_->weights(), device_, modelOffload);
    at::Tensor initLatents = vae_->encode(image).sample(&generator).to(dtype_) * vae_->scalingFactor();  // [1, C, h, w]
    if (batch > initLatents.size(0)) initLatents = initLatents.repeat({batch, 1, 1, 1});
    at::Tensor noise = at::randn(initLatents.sizes(), generator, at::TensorOptions().dtype(at::kFloat)).to(device_, dtype_);
    latents = scheduler->addNoise(initLatents, noise, timesteps[0].item<double>());
  }
  result.initialLatents = latents.to(at::kFloat).cpu();

  // 7. Denoising loop
  auto tDenoise = std::chrono::steady_clock::now();
  {
    detail::OnDevice unetOnDevice(&unet_->weights(), device_, modelOffload);
    latents = detail::denoise(*unet_, *scheduler, latents, timesteps, promptEmbeds, nullptr, req.guidanceScale,
                              generator, req.eta, onStep, aborted, result.timesteps, channelsLast);
  }
  result.denoiseMs = msSince(tDenoise);
  // 8. Decode
  finishGeneration(result, latents, req.outputLatent, aborted, t0);
  return result;
}

}  // namespace sd::pipelines

// ---- disableFp8Storage: the UNet weights as the model file holds them ---------------------------

namespace sd::pipelines {

nn::StateDict StableDiffusionPipeline::readUnetWeights() const {
  if (loadOptions_.singleFile) return std::move(loaders::loadSingleFile(loadPath_, loadOptions_.configDir).unet);
  return io::loadComponentWeights((fs::path(loadPath_) / "unet").string(), "diffusion_pytorch_model",
                                  loadOptions_.variant);
}

}  // namespace sd::pipelines
