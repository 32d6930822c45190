// diffusers v0.30.3 loaders/single_file_utils.py convert_controlnet_checkpoint, both directions.
#include "loaders/controlnet_single_file.h"

#include <filesystem>
#include <vector>

#include "config/config_reader.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "runtime/dtype_support.h"
#include "loaders/single_file_keys.h"
#include "models/controlnet_model.h"
#include "util/error.h"

namespace sd::loaders {

using detail::Rule;
using detail::RuleTable;
using detail::Suffix;

namespace {

constexpr const char* kControlPrefix = "control_model.";

// LDM prefix → diffusers prefix: the UNet encoder (no up path) plus the ControlNet's own modules.
RuleTable controlNetRules(const Json& config, const std::string& where) {
  const models::ControlNetConfig cn = models::ControlNetConfig::fromJson(config, where);
  ConfigReader unetConfig(models::ControlNetConfig::asUNetConfigJson(config), where);
  RuleTable all = detail::unetRules(unetConfig);
  RuleTable r;
  for (auto& [ldm, rule] : all)  // keep the encoder: output_blocks / out.* are the UNet's decoder
    if (ldm.rfind("output_blocks.", 0) != 0 && ldm.rfind("out.", 0) != 0) r[ldm] = rule;
  const size_t e = cn.conditioningEmbeddingOutChannels.size();
  r["input_hint_block.0"] = {"controlnet_cond_embedding.conv_in", Suffix::Param};
  for (size_t i = 0; i < 2 * (e - 1); ++i)
    r["input_hint_block." + std::to_string(2 * (i + 1))] = {"controlnet_cond_embedding.blocks." + std::to_string(i), Suffix::Param};
  r["input_hint_block." + std::to_string(2 * (2 * (e - 1) + 1))] = {"controlnet_cond_embedding.conv_out", Suffix::Param};
  // one zero conv per UNet skip: conv_in, `layers` per block, one per downsampler
  const auto& u = cn.unet;
  size_t skips = 1;
  for (size_t b = 0; b < u.layersPerBlock.size(); ++b) skips += static_cast<size_t>(u.layersPerBlock[b]) + (b + 1 < u.layersPerBlock.size() ? 1 : 0);
  for (size_t j = 0; j < skips; ++j)
    r["zero_convs." + std::to_string(j) + ".0"] = {"controlnet_down_blocks." + std::to_string(j), Suffix::Param};
  r["middle_block_out.0"] = {"controlnet_mid_block", Suffix::Param};
  return r;
}

[[noreturn]] void refuseKeys(const std::vector<std::string>& bad, const std::string& where, const std::string& what) {
  std::string list;
  for (size_t i = 0; i < bad.size() && i < 8; ++i) list += (i ? ", " : "") + bad[i];
  if (bad.size() > 8) list += ", … (" + std::to_string(bad.size()) + " in all)";
  fail(codes::kBadCheckpoint, where + ": " + std::to_string(bad.size()) + " key(s) " + what + ": " + list);
}

}  // namespace

io::StateDict controlNetFromOriginalLayout(const io::StateDict& original, const Json& config, const std::string& where) {
  const RuleTable rules = controlNetRules(config, where);
  io::StateDict out;
  std::vector<std::string> bad;
  for (const auto& [key, tensor] : original) {
    std::string k = key.rfind(kControlPrefix, 0) == 0 ? key.substr(std::string(kControlPrefix).size()) : key;
    std::string rest;
    const Rule* rule = detail::findRule(rules, k, rest);
    std::string mapped = rule ? detail::mapSuffix(*rule, rest) : "";
    if (mapped.empty()) {
      bad.push_back(key);
      continue;
    }
    out[rule->target + "." + mapped] = tensor;
  }
  if (!bad.empty())
    refuseKeys(bad, where, "are not ControlNet parameters of the original layout (control_model.input_blocks / "
                           "middle_block / input_hint_block / zero_convs / middle_block_out / time_embed)");
  return out;
}

io::StateDict controlNetToOriginalLayout(const io::StateDict& diffusers, const Json& config, const std::string& where) {
  const RuleTable rules = controlNetRules(config, where);
  RuleTable inverse;  // diffusers prefix → (LDM prefix, same suffix kind)
  for (const auto& [ldm, rule] : rules) inverse[rule.target] = Rule{ldm, rule.suffix, rule.transformerBlocks};
  io::StateDict out;
  std::vector<std::string> bad;
  for (const auto& [key, tensor] : diffusers) {
    std::string rest;
    const Rule* rule = detail::findRule(inverse, key, rest);
    std::string mapped = rule ? detail::unmapSuffix(*rule, rest) : "";
    if (mapped.empty()) {
      bad.push_back(key);
      continue;
    }
    out[std::string(kControlPrefix) + rule->target + "." + mapped] = tensor;
  }
  if (!bad.empty()) refuseKeys(bad, where, "have no original-layout name");
  return out;
}

std::unique_ptr<models::ControlNetModel> loadControlNetSingleFile(const std::string& path, const std::string& configPath,
                                                                  at::Device device, at::ScalarType dtype) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(codes::kModelNotFound, "ControlNet file " + path + " not found");
  if (io::isPickleName(path) || io::looksLikePickle(path)) fail(codes::kBadCheckpoint, io::pickleRefusalMessage(path));
  if (configPath.empty())
    fail(codes::kInvalidArgument, path + ": a single-file ControlNet needs its diffusers config (config.json or the folder "
                                         "holding it): nothing is guessed from tensor shapes");
  const std::string cfg = fs::is_directory(configPath, ec) ? (fs::path(configPath) / "config.json").string() : configPath;
  runtime::checkDtypeSupported(device, dtype, "controlnet (" + path + ")");
  const Json config = ConfigReader::fromFile(cfg).json();
  auto file = io::SafetensorsFile::open(path);
  io::StateDict original;
  for (const auto& info : file->header().tensors) original[info.name] = file->tensor(info);
  io::StateDict mapped = controlNetFromOriginalLayout(original, config, path);
  auto model = std::make_unique<models::ControlNetModel>(models::ControlNetConfig::fromJson(config, cfg), std::move(mapped),
                                                         "controlnet (" + path + ")");
  model->to(device, dtype);
  return model;
}

}  // namespace sd::loaders
