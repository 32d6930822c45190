// diffusers v0.30.3 pipeline_utils.py (`pipe.vae = …` component assignment; AutoencoderTiny as a pipeline's vae, retrieve_latents' `latents` branch) and the live previews of AUTOMATIC1111 (modules/sd_samplers_common.py, modules/sd_vae_approx.py cheap_approximation) / ComfyUI (latent_preview.py): swapping the VAE a pipeline decodes with, and preview images made on the generating thread.
#include <mutex>

#include "models/autoencoder_kl.h"
#include "models/autoencoder_tiny.h"
#include "pipelines/pipeline_base.h"
#include "pipelines/pipeline_common.h"
#include "util/error.h"

namespace sd::pipelines {

namespace {

// AUTOMATIC1111's "Approx cheap" latent → RGB coefficients, one row per latent channel, one column
// per R, G, B; source: AUTOMATIC1111/stable-diffusion-webui modules/sd_vae_approx.py,
// cheap_approximation (v1.6+: the `is_sdxl` branch), which credits
// https://discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204/2. They act on
// the scaled latents the UNet denoises (z · scaling_factor); SD 2.x shares SD 1.x's VAE.
constexpr float kLatentRgbSd1[4][3] = {
    {0.298f, 0.207f, 0.208f},
    {0.187f, 0.286f, 0.173f},
    {-0.158f, 0.189f, 0.264f},
    {-0.184f, -0.271f, -0.473f},
};
constexpr float kLatentRgbSdxl[4][3] = {
    {0.3448f, 0.4168f, 0.4395f},
    {-0.1953f, -0.0290f, 0.0250f},
    {0.1074f, 0.0886f, -0.0163f},
    {-0.3730f, -0.2499f, -0.2088f},
};

}  // namespace

std::string PipelineBase::vaeInUse() const {
  if (tinyVae_) return "AutoencoderTiny";
  return vae_ == ownVae_ ? "own" : "AutoencoderKL";
}

int64_t PipelineBase::vaeScaleFactor() const {
  return tinyVae_ ? tinyVae_->vaeScaleFactor() : vae_->vaeScaleFactor();
}

namespace {

void checkSwappable(const std::string& what, at::Device vaeDevice, int64_t latentChannels, at::Device device,
                    int64_t ownLatentChannels, const std::string& offload) {
  if (vaeDevice != device)
    detail::invalid(what + " is on " + vaeDevice.str() + " but the pipeline runs on " + device.str() +
                    " (load it with device \"" + device.str() + "\")");
  if (latentChannels != ownLatentChannels)
    detail::invalid(what + " has " + std::to_string(latentChannels) + " latent channels but this pipeline's latents have " +
                    std::to_string(ownLatentChannels) + " (latent-channel mismatch: a VAE for another model family?)");
  if (!offload.empty())
    detail::invalid(what + " cannot be set while CPU offload (\"" + offload + "\") is enabled; disable it first");
}

}  // namespace

void PipelineBase::setVae(std::shared_ptr<models::AutoencoderKL> vae) {
  std::lock_guard<std::mutex> lock(mutex_);  // not during a generation
  if (!vae) vae = ownVae_;
  const int64_t own = ownVae_->config().latentChannels;
  {
    std::lock_guard<std::mutex> optLock(optMutex_);
    if (vae != ownVae_)
      checkSwappable("the VAE (AutoencoderKL)", vae->device(), vae->config().latentChannels, device_, own,
                     pending_.offload.empty() ? applied_.offload : pending_.offload);  // on now or from the next call
    tinyVae_.reset();
    vae_ = vae;
    vaeDtype_ = vae_->dtype();
  }
  *vae_->attentionOptions() = applied_.attention;
  if (applied_.channelsLast) nn::setMemoryFormat(vae_->weights(), at::MemoryFormat::ChannelsLast);
  if (PipelineInfo* info = mutableInfo()) info->vaeScaleFactor = vaeScaleFactor();
}

void PipelineBase::setVae(std::shared_ptr<models::AutoencoderTiny> vae) {
  if (!vae) {
    setVae(std::shared_ptr<models::AutoencoderKL>());
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  {
    std::lock_guard<std::mutex> optLock(optMutex_);
    checkSwappable("the VAE (AutoencoderTiny)", vae->device(), vae->latentChannels(), device_,
                   ownVae_->config().latentChannels, pending_.offload.empty() ? applied_.offload : pending_.offload);
    tinyVae_ = std::move(vae);
    vaeDtype_ = tinyVae_->dtype();
  }
  if (PipelineInfo* info = mutableInfo()) info->vaeScaleFactor = vaeScaleFactor();
}

void PipelineBase::setPreviewDecoder(std::shared_ptr<models::AutoencoderTiny> decoder) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (decoder) {
    if (decoder->device() != device_)
      detail::invalid("the preview decoder is on " + decoder->device().str() + " but the pipeline runs on " +
                      device_.str());
    if (decoder->latentChannels() != ownVae_->config().latentChannels)
      detail::invalid("the preview decoder has " + std::to_string(decoder->latentChannels()) +
                      " latent channels but this pipeline's latents have " +
                      std::to_string(ownVae_->config().latentChannels));
  }
  hasPreviewDecoder_ = decoder != nullptr;
  previewDecoder_ = std::move(decoder);
}

bool PipelineBase::hasPreviewDecoder() const { return hasPreviewDecoder_; }

at::Tensor PipelineBase::previewImages(const at::Tensor& latents, PreviewKind kind) {
  if (!latents.defined() || latents.dim() != 4) detail::invalid("previews need latents [batch, channels, h, w]");
  at::NoGradGuard noGrad;
  if (kind == PreviewKind::kTaesd) {
    if (!previewDecoder_)
      detail::invalid("previews 'taesd' need a preview decoder (an AutoencoderTiny given at load or with setPreviewDecoder)");
    return detail::postprocessImages(detail::decodeLatents(*previewDecoder_, latents));  // [B, H·u, W·u, 3]
  }
  if (latents.size(1) != 4)
    detail::invalid("previews 'latent2rgb' need 4 latent channels; the latents have " + std::to_string(latents.size(1)));
  const auto& m = family_ == "sdxl" ? kLatentRgbSdxl : kLatentRgbSd1;
  at::Tensor coefs = at::from_blob(const_cast<float*>(&m[0][0]), {4, 3}, at::kFloat).clone();  // [4, 3]
  at::Tensor x = latents.to(at::kFloat).cpu();                           // [B, 4, h, w]
  at::Tensor rgb = at::tensordot(x, coefs, {1}, {0}).permute({0, 3, 1, 2});  // einsum "blxy,lr->brxy": [B, 3, h, w]
  return detail::postprocessImages(rgb);                                 // [B, h, w, 3] uint8
}

}  // namespace sd::pipelines
