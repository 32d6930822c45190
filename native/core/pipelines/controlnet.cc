// diffusers v0.30.3 pipelines/controlnet/pipeline_controlnet{,_img2img,_inpaint,_sd_xl}.py: what the
// ControlNet pipelines add to their plain counterparts — check_inputs for the control arguments,
// prepare_image / prepare_control_image, controlnet_keep (the guidance window) and, at every
// step, the ControlNet call(s) whose residuals the UNet adds (MultiControlNetModel sums them).
#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/autoencoder_kl.h"
#include "models/controlnet_model.h"
#include "models/unet_2d_condition.h"
#include "pipelines/pipeline_common.h"
#include "pipelines/stable_diffusion.h"
#include "util/error.h"

namespace sd::pipelines {

using detail::invalid;

namespace {

// prepare_image: uint8 [H, W, 3] / [H, W] → float32 [1, 3, H, W] in [0, 1] (VaeImageProcessor with
// do_convert_rgb, do_normalize=False: a grayscale image is replicated to RGB).
at::Tensor controlImageToTensor(const at::Tensor& image, size_t k, int64_t height, int64_t width) {
  const std::string what = "controlnet " + std::to_string(k) + " image";
  if (!image.defined() || image.scalar_type() != at::kByte || (image.dim() != 3 && image.dim() != 2) ||
      (image.dim() == 3 && image.size(2) != 3))
    invalid(what + " must be uint8 [height, width, 3] (RGB) or [height, width] (grayscale)");
  if (image.size(0) != height || image.size(1) != width)
    invalid(what + " is " + std::to_string(image.size(1)) + "x" + std::to_string(image.size(0)) +
            " but the generation is " + std::to_string(width) + "x" + std::to_string(height) +
            " (resize it first, as diffusers' prepare_image does)");
  at::Tensor x = image.dim() == 2 ? image.unsqueeze(2).expand({height, width, 3}) : image;
  return x.to(at::kFloat).div(255.0).permute({2, 0, 1}).unsqueeze(0).contiguous();  // [1, 3, H, W]
}

struct PreparedNet {
  std::shared_ptr<models::ControlNetModel> model;
  at::Tensor cond;  // [B or 2B, 3, H, W] in the model dtype, on its device
  double scale, start, end;
};

}  // namespace

ControlHook PipelineBase::controlHook(const GenerateRequest& req, bool cfg, int64_t batch,
                                      const at::Tensor& promptEmbeds, const models::UNetAddedCond* added) const {
  if (req.controlnets.empty()) return {};
  // check_inputs (the control arguments)
  const int64_t f = vae_->vaeScaleFactor();
  bool guessMode = req.guessMode;
  std::vector<PreparedNet> nets;
  for (size_t k = 0; k < req.controlnets.size(); ++k) {
    const ControlNetUnit& u = req.controlnets[k];
    const std::string what = "controlnet " + std::to_string(k);
    if (!u.model) invalid(what + " is missing (disposed?)");
    if (!std::isfinite(u.scale)) invalid(what + ": controlnetConditioningScale must be a finite number");
    if (!(u.start >= 0.0)) invalid(what + ": controlGuidanceStart " + std::to_string(u.start) + " can't be smaller than 0");
    if (!(u.end <= 1.0)) invalid(what + ": controlGuidanceEnd " + std::to_string(u.end) + " can't be larger than 1.0");
    if (!(u.start < u.end))
      invalid(what + ": controlGuidanceStart " + std::to_string(u.start) + " cannot be larger than or equal to "
                     "controlGuidanceEnd " + std::to_string(u.end));
    u.model->checkCompatible(*unet_, what);
    const int64_t d = u.model->config().conditioningDownscale();
    if (d != f)
      invalid(what + ": its conditioning embedding downsamples by " + std::to_string(d) +
              " but this pipeline's VAE scale factor is " + std::to_string(f) +
              " (the residuals would not match the latents)");
    guessMode = guessMode || u.model->config().globalPoolConditions;
    // prepare_image: one image → repeat_interleave(batch); CFG and not guess mode → cat([img, img])
    at::Tensor cond = controlImageToTensor(u.image, k, req.height, req.width)
                          .to(u.model->device(), u.model->dtype())
                          .repeat_interleave(batch, 0);
    if (cfg && !guessMode) cond = at::cat({cond, cond}, 0);
    nets.push_back({u.model, cond, u.scale, u.start, u.end});
  }
  if (guessMode && cfg) {  // the ControlNet runs on the cond half only: undo the doubling made above
    for (auto& n : nets)
      if (n.cond.size(0) == 2 * batch) n.cond = n.cond.narrow(0, batch, batch);
  }

  // What the ControlNet is fed (guess mode with CFG: the cond halves).
  const bool condHalf = guessMode && cfg;
  at::Tensor embeds = condHalf ? promptEmbeds.chunk(2, 0)[1] : promptEmbeds;
  auto addedCopy = std::make_shared<models::UNetAddedCond>();
  const bool hasAdded = added != nullptr;
  if (added) {
    addedCopy->textEmbeds = condHalf ? added->textEmbeds.chunk(2, 0)[1] : added->textEmbeds;
    addedCopy->timeIds = condHalf ? added->timeIds.chunk(2, 0)[1] : added->timeIds;
  }
  auto prepared = std::make_shared<std::vector<PreparedNet>>(std::move(nets));
  return [prepared, embeds, addedCopy, hasAdded, condHalf, guessMode](int64_t i, int64_t numSteps,
                                                                      const at::Tensor& modelInput, const at::Tensor& t,
                                                                      models::UNetControlResiduals& out) {
    // guess mode + CFG: scale_model_input(latents, t) = the cond half of the (elementwise) scaled input
    at::Tensor sample = condHalf ? modelInput.chunk(2, 0)[1] : modelInput;
    const double n = static_cast<double>(numSteps);
    for (size_t k = 0; k < prepared->size(); ++k) {
      const PreparedNet& net = (*prepared)[k];
      // controlnet_keep[i] = 1 − float(i/N < start or (i+1)/N > end)
      const double keep = 1.0 - static_cast<double>(static_cast<double>(i) / n < net.start ||
                                                    static_cast<double>(i + 1) / n > net.end);
      models::UNetControlResiduals r = net.model->forward(sample, t, embeds, net.cond, net.scale * keep, guessMode,
                                                          hasAdded ? addedCopy.get() : nullptr);
      if (k == 0) {
        out = std::move(r);
      } else {  // MultiControlNetModel: summed in net order
        for (size_t j = 0; j < out.down.size(); ++j) out.down[j] = out.down[j] + r.down[j];
        out.mid = out.mid + r.mid;
      }
    }
    if (condHalf) {  // the uncond half gets no control
      for (auto& d : out.down) d = at::cat({at::zeros_like(d), d}, 0);
      out.mid = at::cat({at::zeros_like(out.mid), out.mid}, 0);
    }
  };
}

}  // namespace sd::pipelines
