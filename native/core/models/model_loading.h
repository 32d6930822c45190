// The steps every sd-native model's fromPretrained(componentDir) shares — diffusers'
// ModelMixin.from_pretrained(folder) (and transformers' PreTrainedModel.from_pretrained for the CLIP
// text encoder): check the folder, check the dtype before reading any weights, parse config.json,
// read the weights (`<weightsName>[.<variant>].safetensors` or its sharded index), build the model
// strictly from them, then move it to the device and dtype.
#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "io/checkpoint.h"
#include "runtime/dtype_support.h"
#include "util/error.h"

namespace sd::models {

/// Ptr: std::shared_ptr<Model> or std::unique_ptr<Model>; Model has a constructor
/// (Config, nn::StateDict, std::string component) and to(device, dtype); Config::fromFile(path).
/// `label` names the component in messages ("unet", "vae", "text_encoder", "controlnet",
/// "AutoencoderTiny"): errors read "<label>: folder not found: <dir>" and components read
/// "<label> (<weights file>)".
/// Errors: E_MODEL_NOT_FOUND (no such folder, config or weights), E_BAD_CONFIG (Config::fromFile),
/// E_INVALID_ARGUMENT (a dtype this libtorch cannot compute on `device`, checked before any weights
/// are read), E_BAD_CHECKPOINT (unreadable, mis-shaped, missing or unexpected weights).
template <typename Ptr, typename Config>
Ptr loadComponent(const std::string& componentDir, const std::string& label, const std::string& weightsName,
                  at::Device device, at::ScalarType dtype, const std::string& variant) {
  using Model = typename Ptr::element_type;
  std::error_code ec;
  if (!std::filesystem::is_directory(componentDir, ec))
    fail(codes::kModelNotFound, label + ": folder not found: " + componentDir);
  runtime::checkDtypeSupported(device, dtype, label + " (" + componentDir + ")");
  Config config = Config::fromFile((std::filesystem::path(componentDir) / "config.json").string());
  std::string source;
  nn::StateDict tensors = io::loadComponentWeights(componentDir, weightsName, variant, &source);
  Ptr model(new Model(std::move(config), std::move(tensors), label + " (" + source + ")"));
  model->to(device, dtype);
  return model;
}

}  // namespace sd::models
