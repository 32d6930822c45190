// A standalone original-layout (LDM AutoencoderKL) VAE file — the `.safetensors` VAEs shared for
// civitai checkpoints, e.g. vae-ft-mse-840000-ema-pruned.safetensors — mapped to diffusers'
// AutoencoderKL names, after diffusers v0.30.3 loaders/single_file_utils.py convert_ldm_vae_checkpoint
// (AutoencoderKL.from_single_file).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "models/autoencoder_kl.h"

namespace sd::loaders {

/// Loads `path` (keys `encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`, optionally
/// under `first_stage_model.`; `model_ema.*` and the training-only `loss.*` keys are skipped) as an
/// AutoencoderKL whose config is `<vaeConfigDir>/config.json` (a diffusers VAE folder of the same
/// family: the file has no config), on `device` in `dtype`. The LDM mid-attention 1x1 conv weights
/// become Linear weights. Errors: E_MODEL_NOT_FOUND (file or config missing); E_BAD_CHECKPOINT for
/// an invalid safetensors file, keys that map to no AutoencoderKL weight (listed), no VAE tensors,
/// or the strict load's missing/mis-shaped weights; E_BAD_CONFIG / E_UNSUPPORTED_MODEL for the config.
std::shared_ptr<models::AutoencoderKL> loadSingleFileVae(const std::string& path, const std::string& vaeConfigDir,
                                                         at::Device device, at::ScalarType dtype);

}  // namespace sd::loaders
