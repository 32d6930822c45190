// diffusers v0.30.3 StableDiffusionInpaintPipeline.__call__
// (pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py), numbered as there.
#include <ATen/core/grad_mode.h>

#include <chrono>

#include "models/autoencoder_kl.h"
#include "models/clip_text_model.h"
#include "models/unet_2d_condition.h"
#include "pipelines/stable_diffusion.h"
#include "pipelines/pipeline_common.h"
#include "runtime/device_timer.h"
#include "schedulers/scheduler.h"
#include "util/error.h"

namespace sd::pipelines {

using detail::invalid;
using detail::msSince;

GenerateResult StableDiffusionPipeline::inpaint(const GenerateRequest& req, const StepCallback& onStep,
                                                const AbortCheck& aborted) {
  GenerationScope scope(*this, aborted);  // the toggles set since the last call apply to inpainting too
  GenerateResult result;
  const bool channelsLast = applied_.channelsLast;
  const bool modelOffload = applied_.offload == "model";
  const int64_t f = info_.vaeScaleFactor;
  detail::ScopedLoraScale loraScale(loraScaleSlots(), req.loraScale);

  // 1. Check inputs
  const bool cfg = checkCommonInputs(req);
  const int64_t numPrompts = req.inputIds.size(0);
  if (!req.image.defined() || req.image.dim() != 3 || req.image.size(2) != 3 || req.image.size(0) != req.height ||
      req.image.size(1) != req.width || req.image.scalar_type() != at::kByte)
    invalid("inpainting needs image: uint8 [height, width, 3] at the requested size");
  if (req.mask.dim() != 2 || req.mask.size(0) != req.height || req.mask.size(1) != req.width ||
      req.mask.scalar_type() != at::kByte)
    invalid("mask must be uint8 [height, width] (grayscale, white = repaint) at the image size");
  if (!(req.strength > 0.0 && req.strength <= 1.0)) invalid("strength must be in (0, 1]");
  const int64_t unetChannels = unet_->config().inChannels;
  const int64_t latentChannels = vae_->config().latentChannels;
  if (unetChannels != 4 && unetChannels != 9)
    fail(codes::kUnsupportedModel, "inpainting needs a UNet with 4 or 9 input channels; this one has " +
                                       std::to_string(unetChannels));

  // 2. Define call parameters
  const int64_t batch = numPrompts * req.numImagesPerPrompt;
  // With one seed per image, diffusers' _encode_vae_image encodes the (one-row) image and masked
  // image with generator[0] only; the noise and the scheduler draw row by row.
  const runtime::Generators generator = requestGenerators(req.seed, req.seeds, batch);

  // 3. Encode input prompt
  auto tEncode = std::chrono::steady_clock::now();
  auto encode = [&](const at::Tensor& ids, const at::Tensor& weights, int64_t clipSkip) {
    return weights.defined() ? encodePromptWeighted(ids, weights, clipSkip, req.numImagesPerPrompt)
                             : encodePrompt(ids, clipSkip, req.numImagesPerPrompt);  // [B, 77·k, D]
  };
  detail::OnDevice clipOnDevice(&textEncoder_->weights(), device_, !applied_.offload.empty());
  at::Tensor promptEmbeds = encode(req.inputIds, req.promptWeights, req.clipSkip);
  if (cfg) promptEmbeds = at::cat({encode(req.negativeInputIds, req.negativePromptWeights, 0), promptEmbeds}, 0);
  clipOnDevice.release();
  result.encodeMs = msSince(tEncode);

  // 4. Set timesteps (get_timesteps as img2img)
  auto scheduler = schedulers::createScheduler(req.schedulerName, req.schedulerConfig);
  scheduler->setTimesteps(req.numInferenceSteps);
  at::Tensor timesteps = scheduler->timesteps();
  timesteps = strengthTimesteps(*scheduler, timesteps, req.numInferenceSteps, req.strength, /*setBeginIndex=*/true);
  if (timesteps.size(0) < 1)
    invalid("strength " + std::to_string(req.strength) + " with " + std::to_string(req.numInferenceSteps) +
            " steps leaves no denoising step");
  const bool strengthMax = req.strength == 1.0;
  const double latentTimestep = timesteps[0].item<double>();

  // 5. Preprocess mask and image: [-1, 1] NCHW; mask binarised at 0.5 (white = 1 = repaint)
  at::Tensor initImage = imageToPixels(req.image);  // [1, 3, H, W]
  at::Tensor maskCondition = req.mask.to(at::kFloat).div(255.0).ge(0.5).to(at::kFloat).unsqueeze(0).unsqueeze(0);  // [1, 1, H, W]
  at::Tensor maskedImage = initImage * maskCondition.lt(0.5);  // [1, 3, H, W]; repaint area 0

  // 6. Prepare latent variables (RNG order: image latents, noise, masked-image latents, scheduler)
  const int64_t h = req.height / f, w = req.width / f;
  at::Tensor imageLatents;
  if (unetChannels == 4 || !strengthMax)
    imageLatents = repeatToBatch(encodeImageLatents(initImage, generator.forItem(0)), batch);  // [B, 4, h, w]
  at::Tensor noise = generator.randn({batch, latentChannels, h, w}, at::TensorOptions().dtype(at::kFloat), "noise")
                         .to(device_, dtype_);
  at::Tensor latents = strengthMax ? noise * scheduler->initNoiseSigma()
                                   : scheduler->addNoise(imageLatents, noise, latentTimestep);
  result.initialLatents = latents.to(at::kFloat).cpu();

  // 7. Prepare mask latent variables: nearest downsampling (source pixel floor(i·H/h))
  at::Tensor maskLatent = at::upsample_nearest2d(maskCondition, {h, w}).to(device_, dtype_);  // [1, 1, h, w]
  at::Tensor maskedImageLatents = repeatToBatch(encodeImageLatents(maskedImage, generator.forItem(0)), batch);  // [B, 4, h, w]
  maskLatent = maskLatent.repeat({batch, 1, 1, 1});
  at::Tensor maskIn = cfg ? at::cat({maskLatent, maskLatent}, 0) : maskLatent;
  at::Tensor maskedIn = cfg ? at::cat({maskedImageLatents, maskedImageLatents}, 0) : maskedImageLatents;

  // 9. Denoising loop (ControlNets: the UNet's 4-channel input before the mask concat, pipelines/controlnet.cc)
  const ControlHook control = controlHook(req, cfg, batch, promptEmbeds, nullptr);
  runtime::DeviceTimer tDenoise(device_);
  detail::OnDevice unetOnDevice(&unet_->weights(), device_, modelOffload);
  const int64_t numSteps = timesteps.size(0);
  const runtime::NoiseBankScope noiseBank(generator, numSteps);  // the steps' noise drawn at once, same order
  UNetGraphs* graphs = unetGraphs_.get();  // enableCudaGraphs: UNet calls without ControlNet residuals
  const at::Tensor graphTimesteps = graphs ? timesteps.to(device_) : at::Tensor();
  for (int64_t i = 0; i < numSteps; ++i) {
    if (aborted && aborted()) fail(codes::kAborted, "generation aborted before step " + std::to_string(i + 1));
    at::Tensor t = timesteps[i];
    const double tValue = t.item<double>();
    at::Tensor modelInput = cfg ? at::cat({latents, latents}, 0) : latents;
    modelInput = scheduler->scaleModelInput(modelInput, tValue);
    models::UNetControlResiduals residuals;
    if (control) control(i, numSteps, modelInput, t, residuals);
    if (unetChannels == 9) modelInput = at::cat({modelInput, maskIn, maskedIn}, 1);  // [2B, 9, h, w]
    if (channelsLast) modelInput = modelInput.contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor noisePred =
        (graphs && !control ? graphs->forward(*unet_, modelInput, graphTimesteps[i], promptEmbeds, nullptr)
                            : unet_->forward(modelInput, t, promptEmbeds, nullptr, control ? &residuals : nullptr))
            .contiguous();
    if (cfg) {
      auto chunks = noisePred.chunk(2, 0);
      noisePred = chunks[0] + req.guidanceScale * (chunks[1] - chunks[0]);
    }
    latents = scheduler->step(noisePred, tValue, latents, generator, req.eta);
    if (unetChannels == 4) {
      // keep the unmasked area: the image latents noised to the next timestep
      at::Tensor proper = imageLatents;
      if (i < numSteps - 1) proper = scheduler->addNoise(imageLatents, noise, timesteps[i + 1].item<double>());
      latents = (1 - maskLatent) * proper + maskLatent * latents;
    }
    result.timesteps.push_back(tValue);
    if (onStep) onStep({i + 1, numSteps, tValue, latents});
  }
  unetOnDevice.release();
  result.denoiseMs = tDenoise.stopMs();
  finishGeneration(result, latents, req.outputLatent, aborted, scope.t0);
  return result;
}

}  // namespace sd::pipelines
