// diffusers v0.30.3 StableDiffusionXLPipeline.__call__ / encode_prompt / _get_add_time_ids and
// StableDiffusionXLImg2ImgPipeline.__call__ / get_timesteps / prepare_latents
// (pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl{,_img2img}.py), numbered as there.
#include "pipelines/stable_diffusion_xl.h"

#include <ATen/core/grad_mode.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>

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

std::atomic<int64_t> liveXl{0};

bool validFraction(double v) { return std::isfinite(v) && v > 0.0 && v < 1.0; }

const std::vector<double>& finitePair(const std::vector<double>& v, const char* field) {
  if (v.size() != 2 || !std::isfinite(v[0]) || !std::isfinite(v[1]))
    invalid(std::string(field) + " must be two finite numbers");
  return v;
}

}  // namespace

int64_t discreteTimestepCutoff(double fraction, int64_t numTrainTimesteps) {
  const double t = static_cast<double>(numTrainTimesteps);
  return static_cast<int64_t>(std::nearbyint(t - fraction * t));  // Python round(): half to even
}

StableDiffusionXLPipeline::StableDiffusionXLPipeline() : PipelineBase(liveXl) {}
StableDiffusionXLPipeline::~StableDiffusionXLPipeline() = default;
int64_t StableDiffusionXLPipeline::liveCount() { return liveXl.load(); }

std::shared_ptr<StableDiffusionXLPipeline> StableDiffusionXLPipeline::load(const std::string& path,
                                                                           const LoadOptions& options) {
  auto pipe = std::shared_ptr<StableDiffusionXLPipeline>(new StableDiffusionXLPipeline());
  pipe->beginLoad(options);
  const std::string folder =
      configFolder(path, options,
                   "an SDXL diffusers folder with the model's configs (model_index.json, unet/, vae/, text_encoder/, "
                   "text_encoder_2/, scheduler/, tokenizer/, tokenizer_2/)");

  io::ModelIndex index = io::readModelIndex(folder);
  if (index.className != "StableDiffusionXLPipeline" && index.className != "StableDiffusionXLImg2ImgPipeline") {
    if (index.className == "StableDiffusionPipeline" || index.className == "StableDiffusionImg2ImgPipeline")
      fail(codes::kUnsupportedModel, folder + " is an SD 1.x/2.x model (" + index.className +
                                         "); load it with StableDiffusionPipeline (or StableDiffusionImg2ImgPipeline)");
    fail(codes::kUnsupportedModel, folder + ": model_index.json _class_name \"" + index.className +
                                       "\" is not an SDXL pipeline (StableDiffusionXLPipeline)");
  }
  if (!index.component("text_encoder_2") || !index.component("unet") || !index.component("vae"))
    fail(codes::kBadConfig, folder + "/model_index.json: an SDXL pipeline needs text_encoder_2, unet and vae");
  const bool hasTe1 = index.component("text_encoder") != nullptr;

  const fs::path root(folder);

  const auto unetConfig = models::UNet2DConditionConfig::fromFile((root / "unet" / "config.json").string());
  if (unetConfig.additionEmbedType != "text_time")
    fail(codes::kBadConfig, (root / "unet" / "config.json").string() +
                                ": addition_embed_type must be \"text_time\" for an SDXL UNet");
  const auto vaeConfig = models::AutoencoderKLConfig::fromFile((root / "vae" / "config.json").string());
  const auto clip2Config = models::CLIPTextConfig::fromFile((root / "text_encoder_2" / "config.json").string());
  if (!clip2Config.withProjection)
    fail(codes::kBadConfig, (root / "text_encoder_2" / "config.json").string() +
                                ": text_encoder_2 must be CLIPTextModelWithProjection (architectures)");

  std::optional<loaders::SingleFileCheckpoint> single;
  if (options.singleFile) single = loaders::loadSingleFile(path, options.configDir);
  auto loadW = [&](const char* comp, const char* base) {
    if (single) return std::move(single->component(comp));
    return io::loadComponentWeights((root / comp).string(), base, options.variant);
  };
  pipe->unet_ = std::make_shared<models::UNet2DConditionModel>(unetConfig, loadW("unet", "diffusion_pytorch_model"),
                                                               "unet (" + path + "/unet)");
  pipe->vae_ = std::make_shared<models::AutoencoderKL>(vaeConfig, loadW("vae", "diffusion_pytorch_model"),
                                                       "vae (" + path + "/vae)");
  pipe->textEncoder2_ = std::make_shared<models::CLIPTextModel>(clip2Config, loadW("text_encoder_2", "model"),
                                                                "text_encoder_2 (" + path + "/text_encoder_2)");
  if (hasTe1) {
    const auto clipConfig = models::CLIPTextConfig::fromFile((root / "text_encoder" / "config.json").string());
    pipe->textEncoder_ = std::make_shared<models::CLIPTextModel>(clipConfig, loadW("text_encoder", "model"),
                                                                 "text_encoder (" + path + "/text_encoder)");
  }
  XLPipelineInfo& info = pipe->info_;
  info.family = "sdxl";
  info.className = index.className;
  if (hasTe1) info.tokenizerDirs.push_back((root / "tokenizer").string());
  info.tokenizerDirs.push_back((root / "tokenizer_2").string());
  info.forceZerosForEmptyPrompt = index.forceZerosForEmptyPrompt.value_or(true);
  const Json modelIndex = Json::parseFile((root / "model_index.json").string());
  if (const Json* r = modelIndex.find("requires_aesthetics_score"); r && r->isBool()) info.requiresAestheticsScore = r->boolean();
  info.hasTextEncoder = hasTe1;
  pipe->finishLoad(info, folder, path, options);
  return pipe;
}

StableDiffusionXLPipeline::Encoded StableDiffusionXLPipeline::encodePrompt(const at::Tensor& ids1, const at::Tensor& ids2,
                                                                           const at::Tensor& weights1,
                                                                           const at::Tensor& weights2, int64_t clipSkip,
                                                                           int64_t n) const {
  // encode_prompt: hidden_states[-2] (clip_skip k: hidden_states[-(k + 2)]) of each encoder, no
  // final LN, concatenated; pooled = text_encoder_2(...)[0] = text_embeds.
  auto penultimate = [clipSkip](const models::CLIPTextOutput& out, const char* which) {
    const int64_t count = static_cast<int64_t>(out.hiddenStates.size());  // L + 1
    const int64_t idx = count - 2 - clipSkip;
    if (idx < 0)
      invalid("clipSkip " + std::to_string(clipSkip) + " is larger than " + which + " allows (at most " +
              std::to_string(count - 2) + ")");
    return out.hiddenStates[static_cast<size_t>(idx)];  // [P, 77, D]
  };
  // A refiner has only text_encoder_2: the first ids (and weights) feed it.
  const at::Tensor& te2Ids = textEncoder_ ? ids2 : ids1;
  const at::Tensor& te2Weights = textEncoder_ ? weights2 : weights1;
  const bool weighted = weights1.defined();
  constexpr int64_t kChunk = 77;
  const int64_t chunks = weighted ? ids1.size(1) / kChunk : 1;
  if (weighted) {
    auto check = [&](const at::Tensor& ids, const at::Tensor& w, const char* which) {
      if (ids.dim() != 2 || ids.size(1) % kChunk != 0 || ids.size(1) / kChunk != chunks || ids.size(0) != ids1.size(0))
        invalid(std::string(which) + ": weighted prompts need ids [P, 77·k] with the same k for both tokenizers");
      if (!w.defined() || w.sizes() != ids.sizes())
        invalid(std::string(which) + ": prompt weights must have the shape of the ids " + nn::shapeString(ids.sizes()));
    };
    check(ids1, weights1, "text_encoder");
    if (textEncoder_) check(ids2, weights2, "text_encoder_2");
  }
  std::vector<at::Tensor> chunkEmbeds;
  at::Tensor pooled;
  for (int64_t c = 0; c < chunks; ++c) {
    auto part = [&](const at::Tensor& t) { return weighted ? t.slice(1, c * kChunk, (c + 1) * kChunk).contiguous() : t; };
    std::vector<at::Tensor> parts;
    if (textEncoder_) {
      at::Tensor z = penultimate(textEncoder_->forward(part(ids1).to(device_), true), "text_encoder").to(dtype_);
      parts.push_back(weighted ? detail::applyEmphasis(z, part(weights1)) : z);
    }
    models::CLIPTextOutput out2 = textEncoder2_->forward(part(te2Ids).to(device_), true);
    at::Tensor z2 = penultimate(out2, "text_encoder_2").to(dtype_);
    parts.push_back(weighted ? detail::applyEmphasis(z2, part(te2Weights)) : z2);
    if (c == 0) pooled = out2.textEmbeds.to(dtype_);  // AUTOMATIC1111: the first chunk's pooled output
    chunkEmbeds.push_back(at::cat(parts, -1));         // [P, 77, D1 + D2]
  }
  Encoded e;
  e.embeds = at::cat(chunkEmbeds, 1).repeat_interleave(n, 0);  // [P·n, 77·k, D1 + D2]: p0, p0, p1, p1
  e.pooled = pooled.repeat_interleave(n, 0);                    // [P·n, projection_dim]
  return e;
}

StableDiffusionXLPipeline::Encoded StableDiffusionXLPipeline::encodeText(const at::Tensor& ids1, const at::Tensor& ids2,
                                                                         const at::Tensor& weights1,
                                                                         const at::Tensor& weights2, int64_t clipSkip) {
  std::lock_guard<std::mutex> lock(mutex_);
  at::NoGradGuard noGrad;
  at::InferenceMode inference;
  auto checkIds = [](const at::Tensor& t, const char* what) {
    if (!t.defined() || t.dim() != 2 || t.scalar_type() != at::kLong)
      invalid(std::string(what) + " must be an int64 tensor [P, 77·k]");
  };
  checkIds(ids1, "ids");
  if (textEncoder_) {
    checkIds(ids2, "ids2");
    if (ids2.sizes() != ids1.sizes()) invalid("ids2 must have the shape of ids");
  }
  if (!weights1.defined() && ids1.size(1) != 77) invalid("unweighted ids must be [P, 77]");
  Encoded e = encodePrompt(ids1, ids2, weights1, weights2, clipSkip, 1);
  return {e.embeds.to(at::kCPU, at::kFloat).contiguous(), e.pooled.to(at::kCPU, at::kFloat).contiguous()};
}

GenerateResult StableDiffusionXLPipeline::generate(const XLGenerateRequest& req, const StepCallback& onStep,
                                                   const AbortCheck& aborted) {
  GenerationScope scope(*this, aborted);
  GenerateResult result;
  const int64_t f = info_.vaeScaleFactor;
  const bool img2img = req.img2img;
  detail::ScopedLoraScale loraScale(loraScaleSlots(), req.loraScale);  // UNet and both text encoders
  const bool fromLatents = req.imageLatents.defined();

  // 1. Check inputs
  auto checkIds = [](const at::Tensor& t, const char* what) {
    if (!t.defined() || t.dim() != 2 || t.scalar_type() != at::kLong)
      invalid(std::string(what) + " must be an int64 tensor [numPrompts, 77] (77·k with prompt weights)");
  };
  checkIds(req.inputIds, "inputIds");
  if (textEncoder_) {
    checkIds(req.inputIds2, "inputIds2");
    if (req.inputIds2.sizes() != req.inputIds.sizes()) invalid("inputIds2 must match inputIds [numPrompts, 77]");
  }
  const int64_t numPrompts = req.inputIds.size(0);
  if (numPrompts < 1) invalid("at least one prompt is required");
  if (req.numInferenceSteps < 1) invalid("numInferenceSteps must be >= 1; received " + std::to_string(req.numInferenceSteps));
  if (req.numImagesPerPrompt < 1) invalid("numImagesPerPrompt must be >= 1");
  if (!std::isfinite(req.guidanceScale)) invalid("guidanceScale must be a finite number");
  const bool cfg = req.guidanceScale > 1.0;
  const bool zeroUncond = cfg && req.negativePromptIsNone && info_.forceZerosForEmptyPrompt;
  if (cfg && !zeroUncond) {
    if (!req.negativeInputIds.defined() || req.negativeInputIds.sizes() != req.inputIds.sizes())
      invalid("negativeInputIds must match inputIds [numPrompts, 77] when guidanceScale > 1");
    if (textEncoder_ && (!req.negativeInputIds2.defined() || req.negativeInputIds2.sizes() != req.inputIds.sizes()))
      invalid("negativeInputIds2 must match inputIds [numPrompts, 77] when guidanceScale > 1");
  }
  if (!std::isnan(req.denoisingEnd) && !validFraction(req.denoisingEnd))
    invalid("denoisingEnd must be in (0, 1); received " + std::to_string(req.denoisingEnd));
  if (!std::isnan(req.denoisingStart)) {
    if (!img2img) invalid("denoisingStart is for the img2img / refiner pipeline");
    if (!validFraction(req.denoisingStart)) invalid("denoisingStart must be in (0, 1); received " + std::to_string(req.denoisingStart));
    if (!std::isnan(req.denoisingEnd) && req.denoisingStart >= req.denoisingEnd)
      invalid("denoisingStart " + std::to_string(req.denoisingStart) + " must be smaller than denoisingEnd " +
              std::to_string(req.denoisingEnd));
  }
  // diffusers: with denoising_start the strength is ignored
  if (img2img && std::isnan(req.denoisingStart) && !(req.strength >= 0.0 && req.strength <= 1.0))
    invalid("strength must be in [0, 1]");
  if (img2img && !fromLatents && !req.image.defined()) invalid("img2img needs image or imageLatents");
  const int64_t channels = unet_->config().inChannels;
  int64_t height = req.height, width = req.width;
  if (fromLatents) {
    if (req.imageLatents.dim() != 4 || req.imageLatents.size(1) != channels)
      invalid("imageLatents must be float [batch, " + std::to_string(channels) + ", h, w]");
    height = req.imageLatents.size(2) * f;
    width = req.imageLatents.size(3) * f;
  } else if (img2img) {
    if (req.image.dim() != 3 || req.image.size(2) != 3) invalid("image must be uint8 [height, width, 3]");
    height = req.image.size(0);
    width = req.image.size(1);
  }
  checkSize(height, width);

  // 2. Define call parameters
  const int64_t batch = numPrompts * req.numImagesPerPrompt;
  const runtime::Generators generator = requestGenerators(req.seed, req.seeds, batch);
  guardMemory({batch, cfg, height, width, req.inputIds.size(1), img2img && !fromLatents,
               static_cast<int64_t>(req.controlnets.size())}, result);  // issue 19: E_OUT_OF_MEMORY up front

  // 3. Encode input prompt
  auto tEncode = std::chrono::steady_clock::now();
  // Offload (either mode): each text encoder visits the GPU as a whole.
  detail::OnDevice te1OnDevice(textEncoder_ ? &textEncoder_->weights() : nullptr, device_, !applied_.offload.empty());
  detail::OnDevice te2OnDevice(&textEncoder2_->weights(), device_, !applied_.offload.empty());
  Encoded cond = encodePrompt(req.inputIds, req.inputIds2, req.promptWeights, req.promptWeights2, req.clipSkip,
                              req.numImagesPerPrompt);
  at::Tensor promptEmbeds = cond.embeds, addTextEmbeds = cond.pooled;
  Encoded uncond;
  if (zeroUncond) {
    uncond.embeds = at::zeros_like(cond.embeds);
    uncond.pooled = at::zeros_like(cond.pooled);
  } else if (cfg) {
    // negative embeds always use hidden_states[-2] (clip_skip applies to the prompt only)
    uncond = encodePrompt(req.negativeInputIds, req.negativeInputIds2, req.negativePromptWeights,
                          req.negativePromptWeights2, 0, req.numImagesPerPrompt);
  }
  te1OnDevice.release();
  te2OnDevice.release();
  result.encodeMs = msSince(tEncode);

  // 4. Prepare timesteps (img2img: get_timesteps with strength or denoising_start)
  auto scheduler = schedulers::createScheduler(req.schedulerName, req.schedulerConfig);
  scheduler->setTimesteps(req.numInferenceSteps);
  at::Tensor timesteps = scheduler->timesteps();
  const int64_t T = scheduler->numTrainTimesteps();
  if (img2img) {
    if (std::isnan(req.denoisingStart)) {
      // diffusers 0.30.3's SDXL img2img does not call set_begin_index: the scheduler finds its
      // step index from the first timestep, as it does here without setBeginIndex().
      timesteps = strengthTimesteps(*scheduler, timesteps, req.numInferenceSteps, req.strength, /*setBeginIndex=*/false);
    } else {
      const int64_t cutoff = discreteTimestepCutoff(req.denoisingStart, T);
      int64_t n = timesteps.lt(static_cast<double>(cutoff)).sum().item<int64_t>();
      if (scheduler->order() == 2 && n % 2 == 0) n += 1;  // end after a 2nd-order step
      n = std::min<int64_t>(n, timesteps.size(0));
      timesteps = timesteps.slice(0, timesteps.size(0) - n);  // timesteps[-n:]
    }
  }
  if (!std::isnan(req.denoisingEnd)) {
    // 8.1 Apply denoising_end: keep the timesteps >= cutoff
    const int64_t cutoff = discreteTimestepCutoff(req.denoisingEnd, T);
    const int64_t n = timesteps.ge(static_cast<double>(cutoff)).sum().item<int64_t>();
    timesteps = timesteps.slice(0, 0, n);
  }
  if (timesteps.size(0) == 0)
    invalid("the options leave no denoising step (strength " + std::to_string(req.strength) + ", " +
            std::to_string(req.numInferenceSteps) + " steps); raise strength or numInferenceSteps");

  // 5. Prepare latent variables
  at::Tensor latents;
  if (!img2img) {
    latents = initialNoiseLatents(req.latents, {batch, channels, height / f, width / f}, generator,
                                  scheduler->initNoiseSigma());
  } else {
    // a 4-channel image (imageLatents) is used as is; else the image's latent sample
    at::Tensor initLatents = fromLatents ? repeatToBatch(req.imageLatents.to(device_, dtype_), batch)
                                         : encodeImageLatentsForBatch(imageToPixels(req.image), generator, batch);
    latents = std::isnan(req.denoisingStart)  // add_noise only without denoising_start
                  ? addNoiseFromGenerator(*scheduler, initLatents, generator, timesteps[0].item<double>())
                  : initLatents;
  }
  result.initialLatents = latents.to(at::kFloat).cpu();

  // 7. Prepare added time ids & embeddings
  const auto& uc = unet_->config();
  const auto& orig = finitePair(req.originalSize, "originalSize");
  const auto& crop = finitePair(req.cropsCoordsTopLeft, "cropsCoordsTopLeft");
  const auto& target = finitePair(req.targetSize, "targetSize");
  std::vector<double> ids, negIds;
  if (img2img && info_.requiresAestheticsScore) {
    if (!std::isfinite(req.aestheticScore) || !std::isfinite(req.negativeAestheticScore))
      invalid("aestheticScore and negativeAestheticScore must be finite numbers");
    ids = {orig[0], orig[1], crop[0], crop[1], req.aestheticScore};
    negIds = {orig[0], orig[1], crop[0], crop[1], req.negativeAestheticScore};
  } else {
    ids = {orig[0], orig[1], crop[0], crop[1], target[0], target[1]};
    negIds = ids;
  }
  const int64_t projDim = cond.pooled.size(1);
  const int64_t passed = uc.additionTimeEmbedDim * static_cast<int64_t>(ids.size()) + projDim;
  if (passed != uc.projectionClassEmbeddingsInputDim)
    fail(codes::kBadConfig, "the UNet expects an added time embedding vector of length " +
                                std::to_string(uc.projectionClassEmbeddingsInputDim) + " but " + std::to_string(ids.size()) +
                                " time ids give " + std::to_string(passed) +
                                (img2img ? " (check requires_aesthetics_score in model_index.json)" : ""));
  auto row = [](const std::vector<double>& v) {
    return at::tensor(std::vector<float>(v.begin(), v.end()), at::kFloat).unsqueeze(0);  // [1, k]
  };
  at::Tensor addTimeIds;
  if (img2img) {
    addTimeIds = row(ids).repeat({batch, 1});  // [B, k]
    if (cfg) addTimeIds = at::cat({row(negIds).repeat({batch, 1}), addTimeIds}, 0);  // [2B, k]
  } else {
    addTimeIds = cfg ? at::cat({row(negIds), row(ids)}, 0) : row(ids);
    addTimeIds = addTimeIds.repeat({batch, 1});  // [2B or B, 6] (diffusers' repeat order)
  }
  if (cfg) {
    promptEmbeds = at::cat({uncond.embeds, promptEmbeds}, 0);    // [2B, 77, D]
    addTextEmbeds = at::cat({uncond.pooled, addTextEmbeds}, 0);  // [2B, P2]
  }
  models::UNetAddedCond added{addTextEmbeds, addTimeIds.to(device_, dtype_)};

  // 8. Denoising loop (StableDiffusionXLControlNetPipeline: the ControlNets get the same added_cond_kwargs)
  const ControlHook control = controlHook(req, cfg, batch, promptEmbeds, &added);
  latents = denoiseLatents(result, *scheduler, latents, timesteps, promptEmbeds, &added, req.guidanceScale, generator,
                           req.eta, onStep, aborted, &control);
  finishGeneration(result, latents, req.outputLatent, aborted, scope.t0);
  return result;
}

}  // namespace sd::pipelines
