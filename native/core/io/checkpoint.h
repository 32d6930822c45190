// Diffusers folder reading: model_index.json and the weights of one component folder (single
// file, variant or sharded index). Original single-file checkpoints (LDM / A1111 / ComfyUI layout)
// are mapped to these names in loaders/single_file.h, above models/.
//
// Follows diffusers v0.30.3: pipelines/pipeline_utils.py (model_index.json, weight file and
// variant selection) and models/model_loading_utils.py (sharded index).
//
// Only safetensors files are read. Pickle files (.bin/.ckpt/.pt/.pth) are refused with
// E_BAD_CHECKPOINT: unpickling can execute arbitrary code.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "io/state_dict.h"

namespace sd::io {

// ---- diffusers folders -----------------------------------------------------------------------

/// One entry of model_index.json: `"unet": ["diffusers", "UNet2DConditionModel"]`.
/// `[null, null]` (e.g. a disabled safety_checker) is recorded with `present == false`.
struct ModelIndexComponent {
  bool present = false;
  std::string library;    // "diffusers" | "transformers" | ...
  std::string className;  // "UNet2DConditionModel" | "CLIPTextModel" | ...
};

/// A parsed model_index.json.
struct ModelIndex {
  std::string dir;                 // the pipeline folder
  std::string className;           // `_class_name`, e.g. "StableDiffusionPipeline"
  std::string diffusersVersion;    // `_diffusers_version` ("" if absent)
  std::map<std::string, ModelIndexComponent> components;  // name → entry (metadata keys excluded)
  std::optional<bool> forceZerosForEmptyPrompt;           // SDXL pipelines; absent → pipeline default
  /// The component entry, or nullptr when absent or `[null, null]`.
  const ModelIndexComponent* component(const std::string& name) const;
};

/// Reads `<dir>/model_index.json`. E_MODEL_NOT_FOUND naming the folder or the file when either is
/// missing; E_BAD_CONFIG for malformed JSON, a missing `_class_name`, or a component entry that is
/// not `[library, class]`. `requires_safety_checker` and unknown keys are ignored.
ModelIndex readModelIndex(const std::string& dir);

/// The weights base name diffusers uses in a component folder: "model" for a transformers model
/// (config.json has "architectures" / no "_class_name", e.g. CLIPTextModel), else
/// "diffusion_pytorch_model". E_MODEL_NOT_FOUND if the folder or its config.json is missing.
std::string weightsBaseName(const std::string& componentDir);

/// Loads the weights of one component folder by diffusers name (tensors are mmapped CPU views).
///   `<base>.safetensors` (variant "") or `<base>.<variant>.safetensors` (e.g. variant "fp16"),
///   or a sharded `<base>.safetensors.index.json` / `<base>.safetensors.index.<variant>.json`
///   (`weight_map`: name → shard file in the same folder).
/// Errors: E_MODEL_NOT_FOUND — folder missing, or no weight file (message names the file looked
/// for and lists the weight files that exist, e.g. when the variant is missing);
/// E_BAD_CHECKPOINT — only pickle files present (.bin/.ckpt/.pt/.pth: refused, with how to
/// convert), an invalid safetensors file, an index that lies about its shards.
/// `source`, when given, receives the file read (the .safetensors file or the shard index).
StateDict loadComponentWeights(const std::string& componentDir, const std::string& baseName,
                                   const std::string& variant = "", std::string* source = nullptr);

/// The message used when refusing a pickle checkpoint at `path` (also for folder weights).
std::string pickleRefusalMessage(const std::string& path);

/// True when the file name ends in .bin / .ckpt / .pt / .pth (any case): a pickle by its name.
bool isPickleName(const std::string& name);

/// True when the first bytes of `path` are a torch.save zip archive ("PK\3\4") or a raw pickle
/// stream (PROTO opcode 0x80, protocol 2–5); false for an unreadable file.
bool looksLikePickle(const std::string& path);

}  // namespace sd::io
