// Internal to loaders/single_file*.cc: the LDM ↔ diffusers block-prefix rule tables and the key
// helpers both directions share (diffusers v0.30.3 loaders/single_file_utils.py). Not a public header.
#pragma once

#include <map>
#include <string>

#include "config/config_reader.h"

namespace sd::loaders::detail {

// Component prefixes of original checkpoints.
constexpr const char* kUnetPrefix = "model.diffusion_model.";
constexpr const char* kVaePrefix = "first_stage_model.";
constexpr const char* kClipPrefix = "cond_stage_model.transformer.";
constexpr const char* kOpenClipPrefix = "cond_stage_model.model.";
// SDXL (sgm GeneralConditioner): base = OpenAI CLIP ViT-L (embedders.0) + OpenCLIP bigG (embedders.1);
// refiner = OpenCLIP bigG alone (embedders.0).
constexpr const char* kXlClipPrefix = "conditioner.embedders.0.transformer.";
constexpr const char* kXlOpenClipPrefix = "conditioner.embedders.1.model.";
constexpr const char* kXlRefinerPrefix = "conditioner.embedders.0.model.";

/// If `s` is "<prefix><int>.<rest>" (no leading zeros), sets idx and rest.
bool matchIndexed(const std::string& s, const std::string& prefix, int64_t& idx, std::string& rest);
/// "weight" | "bias".
bool isWeightOrBias(const std::string& s);
/// Splits "<module>.weight" / "<module>.bias"; false for another last component.
bool splitParam(const std::string& s, std::string& module, std::string& param);

/// How the part of a key after a block prefix is renamed.
enum class Suffix {
  Param,          // "weight" | "bias" only
  UnetResnet,     // in_layers.0 → norm1, in_layers.2 → conv1, emb_layers.1 → time_emb_proj, out_layers.0 → norm2,
                  // out_layers.3 → conv2, skip_connection → conv_shortcut
  UnetAttention,  // Transformer2DModel: same names (norm, proj_in, proj_out, transformer_blocks.N.*)
  VaeResnet,      // norm1, conv1, norm2, conv2 unchanged; nin_shortcut → conv_shortcut
  VaeAttention,   // norm → group_norm, q/k/v → to_q/to_k/to_v, proj_out → to_out.0; 1x1 conv → Linear
};

struct Rule {
  std::string target;  // diffusers prefix
  Suffix suffix;
  int64_t transformerBlocks = 0;  // UnetAttention: number of transformer_blocks (from the config)
};

/// Block prefix (LDM, without the component prefix) → rule. Prefixes never nest, so a key has at
/// most one rule among its dot-separated prefixes.
using RuleTable = std::map<std::string, Rule>;

/// The rule of the longest dot-separated prefix of `key` in `rules` (sets `rest` to what follows), or nullptr.
const Rule* findRule(const RuleTable& rules, const std::string& key, std::string& rest);
/// Renames `rest` (the part after the block prefix) LDM → diffusers; "" when it is not a parameter of that block.
std::string mapSuffix(const Rule& rule, const std::string& rest);
/// The inverse of mapSuffix: diffusers → LDM; "" when it is not a parameter of that block.
std::string unmapSuffix(const Rule& rule, const std::string& rest);

/// E_BAD_CONFIG (naming the file and key) unless lo <= v <= hi.
void checkRange(const ConfigReader& c, const std::string& key, int64_t v, int64_t lo, int64_t hi);
/// UNet2DConditionModel ↔ openaimodel.UNetModel block prefixes from the UNet config.json.
/// E_UNSUPPORTED_MODEL for block types with no single-file mapping; E_BAD_CONFIG for bad counts.
RuleTable unetRules(const ConfigReader& c);
/// AutoencoderKL ↔ LDM Encoder/Decoder prefixes from the VAE config.json.
RuleTable vaeRules(const ConfigReader& c);
/// transformers CLIPTextModel parameter names under "text_model." (checks the layer index).
bool validClipSuffix(const std::string& s, int64_t numLayers);

/// `<configDir>/<component>/config.json`; E_MODEL_NOT_FOUND (saying what the folder must hold) when missing.
ConfigReader componentConfig(const std::string& configDir, const std::string& component);
/// A text encoder's config: num_hidden_layers and hidden_size, range-checked.
struct TextConfig {
  int64_t layers = 0, hidden = 0;
};
TextConfig textConfig(const std::string& configDir, const std::string& component);
/// model_index.json `_class_name` of an SDXL pipeline (StableDiffusionXL*).
bool isXlClassName(const std::string& cls);

}  // namespace sd::loaders::detail
