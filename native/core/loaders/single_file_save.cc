// The inverse of loaders/single_file.cc: diffusers names → the original single-file layout, after
// diffusers v0.30.3 scripts/convert_diffusers_to_original_{stable_diffusion,sdxl}.py (the same
// rule tables, inverted), and saveSingleFile (a diffusers folder written as one checkpoint).
#include "loaders/single_file.h"

#include <array>
#include <utility>

#include "io/checkpoint.h"
#include "loaders/single_file_keys.h"
#include "util/error.h"
#include "util/strings.h"

namespace sd::loaders {

using namespace detail;  // the rule tables and prefixes of single_file_keys.h
using io::StateDict;
using util::endsWith;
using util::isDir;
using util::listSome;
using util::startsWith;

namespace {

/// Inverts a rule table: diffusers prefix → (LDM prefix, rule).
std::map<std::string, std::pair<std::string, Rule>> invert(const RuleTable& rules) {
  std::map<std::string, std::pair<std::string, Rule>> out;
  for (const auto& [ldm, rule] : rules) out.emplace(rule.target, std::make_pair(ldm, rule));
  return out;
}

struct Unmapper {
  StateDict& out;
  std::vector<std::string> unmapped;  // "component: key"

  void put(const std::string& name, at::Tensor t) {
    if (!out.emplace(name, std::move(t)).second)
      fail(codes::kInternal, "two diffusers weights map to the original key \"" + name + "\"");
  }

  /// UNet or VAE: the block prefix is found among the inverted rules, the suffix renamed back.
  void blocks(const StateDict& dict, const RuleTable& rules, const char* prefix, const char* component) {
    const auto inverse = invert(rules);
    for (const auto& [key, tensor] : dict) {
      const std::pair<std::string, Rule>* hit = nullptr;
      std::string rest;
      for (size_t dot = key.find('.'); dot != std::string::npos && !hit; dot = key.find('.', dot + 1)) {
        auto it = inverse.find(key.substr(0, dot));
        if (it != inverse.end()) {
          hit = &it->second;
          rest = key.substr(dot + 1);
        }
      }
      const std::string suffix = hit ? unmapSuffix(hit->second, rest) : "";
      if (suffix.empty()) {
        unmapped.push_back(std::string(component) + ": " + key);
        continue;
      }
      at::Tensor t = tensor;
      // AutoencoderKL's attention Linear [C, C] → LDM AttnBlock's 1x1 conv [C, C, 1, 1]
      if (hit->second.suffix == Suffix::VaeAttention && endsWith(suffix, ".weight") && !startsWith(suffix, "norm") &&
          t.dim() == 2)
        t = t.view({t.size(0), t.size(1), 1, 1});
      put(std::string(prefix) + hit->first + "." + suffix, t);
    }
  }

  /// transformers CLIPTextModel → the same names under `prefix`, plus the position_ids buffer
  /// [1, max_position_embeddings] int64 that original CLIP checkpoints carry.
  void clip(const StateDict& dict, const std::string& configDir, const char* prefix) {
    const ConfigReader c = componentConfig(configDir, "text_encoder");
    const TextConfig tc = textConfig(configDir, "text_encoder");
    for (const auto& [key, tensor] : dict) {
      if (!startsWith(key, "text_model.") || !validClipSuffix(key.substr(11), tc.layers)) {
        unmapped.push_back("text_encoder: " + key);
        continue;
      }
      put(prefix + key, tensor);
    }
    const int64_t positions = c.getInt("max_position_embeddings", 77);
    checkRange(c, "max_position_embeddings", positions, 1, 1 << 20);
    put(std::string(prefix) + "text_model.embeddings.position_ids", at::arange(positions, at::kLong).unsqueeze(0));
  }

  /// transformers CLIPTextModel(WithProjection) → OpenCLIP under `prefix`: q/k/v re-fused into
  /// in_proj (cat on dim 0), `text_projection.weight` [P, D] → `text_projection` [D, P].
  void openClip(const StateDict& dict, const TextConfig& tc, const char* prefix, const char* component,
                bool projection) {
    static const std::map<std::string, std::string> top = {
        {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
        {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
        {"text_model.final_layer_norm.weight", "ln_final.weight"},
        {"text_model.final_layer_norm.bias", "ln_final.bias"}};
    static const std::map<std::string, std::string> layerNames = {{"layer_norm1", "ln_1"},
                                                                  {"layer_norm2", "ln_2"},
                                                                  {"self_attn.out_proj", "attn.out_proj"},
                                                                  {"mlp.fc1", "mlp.c_fc"},
                                                                  {"mlp.fc2", "mlp.c_proj"}};
    std::map<std::string, std::array<at::Tensor, 3>> qkv;  // "resblocks.N.attn.in_proj_<param>" → q, k, v
    for (const auto& [key, tensor] : dict) {
      if (auto it = top.find(key); it != top.end()) {
        put(prefix + it->second, tensor);
        continue;
      }
      if (projection && key == "text_projection.weight" && tensor.dim() == 2) {
        put(std::string(prefix) + "text_projection", tensor.t().contiguous());  // [D, P]
        continue;
      }
      int64_t idx;
      std::string rest, module, param;
      if (!matchIndexed(key, "text_model.encoder.layers.", idx, rest) || idx >= tc.layers ||
          !splitParam(rest, module, param)) {
        unmapped.push_back(std::string(component) + ": " + key);
        continue;
      }
      const std::string block = "transformer.resblocks." + std::to_string(idx) + ".";
      const int which = module == "self_attn.q_proj" ? 0 : module == "self_attn.k_proj" ? 1 : module == "self_attn.v_proj" ? 2 : -1;
      if (which >= 0) {
        qkv[block + "attn.in_proj_" + param][which] = tensor;
        continue;
      }
      auto it = layerNames.find(module);
      if (it == layerNames.end()) {
        unmapped.push_back(std::string(component) + ": " + key);
        continue;
      }
      put(prefix + block + it->second + "." + param, tensor);
    }
    for (const auto& [name, parts] : qkv) {
      for (int i = 0; i < 3; ++i)
        if (!parts[i].defined())
          fail(codes::kBadCheckpoint, std::string(component) + ": " + name + " needs q_proj, k_proj and v_proj; " +
                                          "\"" + "qkv"[i] + "_proj\" is missing");
      put(prefix + name, at::cat({parts[0], parts[1], parts[2]}, 0));  // [3·D, D] / [3·D]
    }
  }
};

}  // namespace

StateDict toOriginalLayout(const SingleFileCheckpoint& components, const std::string& configDir) {
  if (!isDir(configDir)) fail(codes::kModelNotFound, "config folder " + configDir + " does not exist");
  const CheckpointFamily family = components.family;
  const bool xl = family == CheckpointFamily::SDXL;
  const bool refiner = xl && components.textEncoder.empty();
  StateDict out;
  Unmapper u{out, {}};
  u.blocks(components.unet, unetRules(componentConfig(configDir, "unet")), kUnetPrefix, "unet");
  u.blocks(components.vae, vaeRules(componentConfig(configDir, "vae")), kVaePrefix, "vae");
  if (family == CheckpointFamily::SD1) u.clip(components.textEncoder, configDir, kClipPrefix);
  if (family == CheckpointFamily::SD2)
    u.openClip(components.textEncoder, textConfig(configDir, "text_encoder"), kOpenClipPrefix, "text_encoder", false);
  if (xl && !refiner) u.clip(components.textEncoder, configDir, kXlClipPrefix);
  if (xl)
    u.openClip(components.textEncoder2, textConfig(configDir, "text_encoder_2"),
               refiner ? kXlRefinerPrefix : kXlOpenClipPrefix, "text_encoder_2", true);
  if (!xl && !components.textEncoder2.empty())
    fail(codes::kInvalidArgument, std::string(familyName(family)) + " checkpoints have no text_encoder_2");
  if (!u.unmapped.empty())
    fail(codes::kBadCheckpoint, std::to_string(u.unmapped.size()) + " diffusers weight(s) have no name in the original " +
                                    familyName(family) + " layout for the architecture in " + configDir + ": " +
                                    listSome(u.unmapped));
  return out;
}

CheckpointFamily folderFamily(const std::string& modelDir) {
  const io::ModelIndex mi = io::readModelIndex(modelDir);
  if (isXlClassName(mi.className)) return CheckpointFamily::SDXL;
  if (!mi.component("text_encoder"))
    fail(codes::kUnsupportedModel, modelDir + "/model_index.json: a " + mi.className +
                                       " without text_encoder has no original single-file layout");
  const ConfigReader te = componentConfig(modelDir, "text_encoder");
  // OpenAI CLIP (SD 1.x) uses quick_gelu; OpenCLIP ViT-H (SD 2.x) uses gelu.
  return te.getString("hidden_act", "quick_gelu") == "quick_gelu" ? CheckpointFamily::SD1 : CheckpointFamily::SD2;
}

SingleFileSummary saveSingleFile(const std::string& modelDir, const std::string& outFile, const std::string& variant) {
  SingleFileCheckpoint c;
  c.family = folderFamily(modelDir);
  c.path = outFile;
  const io::ModelIndex mi = io::readModelIndex(modelDir);
  auto load = [&](const char* name) {
    const std::string dir = util::joinPath(modelDir, name);
    return io::loadComponentWeights(dir, io::weightsBaseName(dir), variant);
  };
  c.unet = load("unet");
  c.vae = load("vae");
  if (mi.component("text_encoder")) c.textEncoder = load("text_encoder");
  if (c.family == CheckpointFamily::SDXL) {
    if (!mi.component("text_encoder_2"))
      fail(codes::kBadConfig, modelDir + "/model_index.json: an SDXL pipeline needs text_encoder_2");
    c.textEncoder2 = load("text_encoder_2");
  }
  const StateDict sd = toOriginalLayout(c, modelDir);
  std::vector<std::pair<std::string, at::Tensor>> tensors(sd.begin(), sd.end());
  io::writeSafetensors(outFile, tensors);
  SingleFileSummary s;
  s.path = outFile;
  s.family = c.family;
  s.refiner = c.family == CheckpointFamily::SDXL && c.textEncoder.empty();
  s.tensors = static_cast<int64_t>(tensors.size());
  return s;
}

}  // namespace sd::loaders
