// diffusers v0.30.3 StableDiffusionPipeline.__call__ / StableDiffusionXLPipeline.__call__: the
// shared denoising loop (step 7 / 8) and the decode + VaeImageProcessor.postprocess.
#include "pipelines/pipeline_common.h"

#include "models/autoencoder_kl.h"
#include "models/autoencoder_tiny.h"
#include "models/unet_2d_condition.h"
#include "schedulers/scheduler.h"
#include "util/error.h"

namespace sd::pipelines::detail {

at::Tensor denoise(const models::UNet2DConditionModel& unet, schedulers::Scheduler& scheduler, at::Tensor latents,
                   const at::Tensor& timesteps, const at::Tensor& encoderHiddenStates,
                   const models::UNetAddedCond* added, double guidanceScale, const runtime::Generators& generator, double eta,
                   const StepCallback& onStep, const AbortCheck& aborted, std::vector<double>& ran,
                   bool channelsLast, const ControlHook* control, UNetGraphs* graphs) {
  const bool cfg = guidanceScale > 1.0;
  const int64_t numSteps = timesteps.size(0);
  // a graph reads its timestep from device memory: all of them copied there once
  const at::Tensor graphTimesteps = graphs ? timesteps.to(unet.device()) : at::Tensor();
  // every step's noise drawn at the first draw, in the same order, and copied to the device once
  const runtime::NoiseBankScope noiseBank(generator, numSteps);
  for (int64_t i = 0; i < numSteps; ++i) {
    if (aborted && aborted()) fail(codes::kAborted, "generation aborted before step " + std::to_string(i + 1));
    at::Tensor t = timesteps[i];  // 0-d, int64 or float32 as the scheduler made it
    const double tValue = t.item<double>();
    at::Tensor modelInput = cfg ? at::cat({latents, latents}, 0) : latents;  // [2B or B, C, h, w]
    modelInput = scheduler.scaleModelInput(modelInput, tValue);
    if (channelsLast) modelInput = modelInput.contiguous(at::MemoryFormat::ChannelsLast);
    models::UNetControlResiduals residuals;
    const bool controlled = control && *control;
    if (controlled) (*control)(i, numSteps, modelInput, t, residuals);
    at::Tensor noisePred = graphs && !controlled
                               ? graphs->forward(unet, modelInput, graphTimesteps[i], encoderHiddenStates, added)
                               : unet.forward(modelInput, t, encoderHiddenStates, added,
                                              controlled ? &residuals : nullptr);  // [2B or B, C, h, w]
    if (channelsLast) noisePred = noisePred.contiguous();
    if (cfg) {
      auto chunks = noisePred.chunk(2, 0);
      noisePred = chunks[0] + guidanceScale * (chunks[1] - chunks[0]);
    }
    latents = scheduler.step(noisePred, tValue, latents, generator, eta);
    ran.push_back(tValue);
    if (onStep) onStep({i + 1, numSteps, ran.back(), latents});
  }
  return latents;
}

at::Tensor decodeLatents(models::AutoencoderKL& vae, const at::Tensor& latents, at::ScalarType vaeDtype,
                         bool channelsLast) {
  at::Tensor z = (latents / vae.scalingFactor()).to(vaeDtype);
  if (channelsLast) z = z.contiguous(at::MemoryFormat::ChannelsLast);
  return vae.decode(z).to(at::kFloat).contiguous();  // [B, 3, H, W]
}

at::Tensor decodeLatents(models::AutoencoderTiny& vae, const at::Tensor& latents) {
  at::Tensor z = (latents / vae.scalingFactor()).to(vae.dtype());  // [B, C, h, w]
  return vae.decode(z).to(at::kFloat).contiguous();                 // [B, 3, H, W]
}

bool allFinite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

at::Tensor postprocessImages(const at::Tensor& image) {
  // postprocess: (x / 2 + 0.5).clamp(0, 1) → NHWC → round(x · 255) as uint8
  at::Tensor x = (image / 2 + 0.5).clamp(0, 1).permute({0, 2, 3, 1}).cpu();
  return x.mul(255).round().to(at::kByte).contiguous();  // [B, H, W, 3]
}

}  // namespace sd::pipelines::detail
