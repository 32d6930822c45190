// Random-weight instantiation of UNet2DConditionModel / AutoencoderKL / CLIPTextModel from their configs.
#include "models/random_weights.h"

#include "models/autoencoder_kl.h"
#include "models/clip_text_model.h"
#include "models/unet_2d_condition.h"
#include "util/error.h"

namespace sd::models {

nn::StateDict createRandomWeights(const std::string& component, const std::string& configPath, uint64_t seed,
                                  at::ScalarType dtype, at::Device device) {
  if (device.is_cuda() && !at::hasCUDA())
    fail(codes::kDeviceUnavailable, "createRandomWeights: device \"" + device.str() +
                                        "\" requested but this build of sd-native has no CUDA (libtorch is CPU-only "
                                        "or no GPU is visible); use device \"cpu\" or build against a CUDA libtorch");
  if (!device.is_cpu() && !device.is_cuda())
    fail(codes::kInvalidArgument, "createRandomWeights: device \"" + device.str() + "\" is not supported (expected cpu or cuda)");
  nn::RandomInitScope init(seed, dtype, device);
  if (component == "unet") {
    UNet2DConditionModel m(UNet2DConditionConfig::fromFile(configPath), nn::StateDict{}, "random " + component);
    return m.weights().tensors();
  }
  if (component == "vae") {
    AutoencoderKL m(AutoencoderKLConfig::fromFile(configPath), nn::StateDict{}, "random " + component);
    return m.weights().tensors();
  }
  if (component == "text_encoder" || component == "text_encoder_2") {
    CLIPTextModel m(CLIPTextConfig::fromFile(configPath), nn::StateDict{}, "random " + component);
    return m.weights().tensors();
  }
  fail(codes::kInvalidArgument, "createRandomWeights: unknown component \"" + component +
                                    "\" (expected unet, vae, text_encoder)");
}

}  // namespace sd::models
