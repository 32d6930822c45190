// Original ControlNet files (lllyasviel's ControlNet 1.0/1.1 layout, e.g.
// control_v11p_sd15_canny.safetensors: `control_model.*` keys, or the same keys without that prefix)
// ↔ diffusers ControlNetModel names, after diffusers v0.30.3 loaders/single_file_utils.py
// convert_controlnet_checkpoint. The UNet-encoder part reuses the UNet's LDM rule tables
// (single_file_keys.h); the ControlNet's own modules map as
//   input_hint_block.0 → controlnet_cond_embedding.conv_in, input_hint_block.2(i+1) → …blocks.i,
//   the last input_hint_block conv → …conv_out, zero_convs.N.0 → controlnet_down_blocks.N,
//   middle_block_out.0 → controlnet_mid_block.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "io/state_dict.h"
#include "models/controlnet_model.h"
#include "util/json.h"

namespace sd::loaders {

/// Maps an original ControlNet state dict to diffusers names, with `config` the ControlNet's
/// diffusers config.json (it fixes blocks, layers and transformer depths; nothing is guessed from
/// shapes). `where` names the file in errors. E_BAD_CHECKPOINT listing (up to 8) keys that map to
/// no ControlNet parameter (e.g. a full SD checkpoint, a T2I-Adapter, a LoRA); E_BAD_CONFIG /
/// E_UNSUPPORTED_MODEL from the config.
io::StateDict controlNetFromOriginalLayout(const io::StateDict& original, const Json& config, const std::string& where);

/// The inverse (diffusers → original names with the `control_model.` prefix), tensors shared.
/// E_BAD_CHECKPOINT for a key with no original name.
io::StateDict controlNetToOriginalLayout(const io::StateDict& diffusers, const Json& config, const std::string& where);

/// ControlNetModel from an original-layout `.safetensors` file and a diffusers ControlNet config:
/// `configPath` is a config.json or a folder holding one. Errors: E_MODEL_NOT_FOUND (file or config
/// missing), E_BAD_CHECKPOINT (pickle, corrupt file, unknown keys, missing/mis-shaped weights),
/// E_BAD_CONFIG / E_UNSUPPORTED_MODEL, E_INVALID_ARGUMENT (dtype not computable on `device`).
std::unique_ptr<models::ControlNetModel> loadControlNetSingleFile(const std::string& path, const std::string& configPath,
                                                                  at::Device device, at::ScalarType dtype);

}  // namespace sd::loaders
