// diffusers v0.30.3 loaders/single_file_utils.py convert_ldm_vae_checkpoint, for a standalone VAE file (AutoencoderKL.from_single_file).
#include "loaders/single_file_vae.h"

#include <filesystem>
#include <vector>

#include "config/config_reader.h"
#include "io/safetensors.h"
#include "loaders/single_file_keys.h"
#include "nn/weights.h"
#include "runtime/dtype_support.h"
#include "util/error.h"
#include "util/strings.h"

namespace sd::loaders {

using namespace detail;  // the VAE rule table and prefixes of single_file_keys.h

std::shared_ptr<models::AutoencoderKL> loadSingleFileVae(const std::string& path, const std::string& vaeConfigDir,
                                                         at::Device device, at::ScalarType dtype) {
  const std::string configPath = (std::filesystem::path(vaeConfigDir) / "config.json").string();
  models::AutoencoderKLConfig config = models::AutoencoderKLConfig::fromFile(configPath);
  const RuleTable rules = vaeRules(ConfigReader::fromFile(configPath));
  runtime::checkDtypeSupported(device, dtype, "vae (" + path + ")");
  auto file = io::SafetensorsFile::open(path);

  io::StateDict weights;
  std::vector<std::string> unmapped;
  for (const auto& info : file->header().tensors) {
    std::string key = info.name;
    if (util::startsWith(key, kVaePrefix)) key = key.substr(std::string(kVaePrefix).size());
    if (util::startsWith(key, "model_ema.") || util::startsWith(key, "loss.")) continue;  // EMA copy / training loss
    std::string rest;
    const Rule* r = findRule(rules, key, rest);
    const std::string suffix = r ? mapSuffix(*r, rest) : "";
    if (suffix.empty()) {
      unmapped.push_back(info.name);
      continue;
    }
    at::Tensor t = file->tensor(info);
    if (r->suffix == Suffix::VaeAttention && util::endsWith(suffix, ".weight") && !util::startsWith(suffix, "group_norm")) {
      // LDM AttnBlock q/k/v/proj_out are 1x1 convs [C, C, 1, 1]: diffusers' Linear [C, C]
      if (t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) t = t.select(3, 0).select(2, 0);
      else if (t.dim() == 3 && t.size(2) == 1) t = t.select(2, 0);
      else if (t.dim() != 2)
        fail(codes::kBadCheckpoint, path + ": \"" + info.name + "\" should be a 1x1 conv weight [C, C, 1, 1], got " +
                                        nn::shapeString(t.sizes()));
    }
    const std::string name = r->target + "." + suffix;
    if (!weights.emplace(name, t).second)
      fail(codes::kBadCheckpoint, path + ": two keys map to \"" + name + "\" (second: \"" + info.name + "\")");
  }
  if (!unmapped.empty())
    fail(codes::kBadCheckpoint, path + ": " + std::to_string(unmapped.size()) +
                                    " key(s) map to no AutoencoderKL weight of the architecture in " + configPath + ": " +
                                    util::listSome(unmapped) + ". Is it a VAE file of this model's family?");
  if (weights.empty()) fail(codes::kBadCheckpoint, path + ": no VAE tensors (encoder.*, decoder.*)");
  auto vae = std::make_shared<models::AutoencoderKL>(std::move(config), std::move(weights), "vae (" + path + ")");
  vae->to(device, dtype);
  return vae;
}

}  // namespace sd::loaders
