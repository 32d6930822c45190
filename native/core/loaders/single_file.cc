// diffusers v0.30.3 loaders/single_file_utils.py: an original (LDM / A1111 / ComfyUI) single-file
// checkpoint → diffusers names, once, at load (infer_diffusers_model_type's key test,
// convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint,
// convert_open_clip_checkpoint). Every key is claimed by a rule of single_file_keys.cc or is a
// known-unused one; anything else is an error, never silently dropped.
#include "loaders/single_file.h"

#include <set>

#include "io/checkpoint.h"
#include "loaders/single_file_keys.h"
#include "nn/weights.h"
#include "util/error.h"
#include "util/strings.h"

namespace sd::loaders {

using namespace detail;  // the rule tables and prefixes of single_file_keys.h
using io::SafetensorsFile;
using io::StateDict;
using io::TensorInfo;
using util::endsWith;
using util::isDir;
using util::isFile;
using util::listSome;
using util::startsWith;

const char* familyName(CheckpointFamily f) {
  switch (f) {
    case CheckpointFamily::SD1: return "Stable Diffusion 1.x";
    case CheckpointFamily::SD2: return "Stable Diffusion 2.x";
    case CheckpointFamily::SDXL: return "Stable Diffusion XL";
  }
  return "?";
}

const StateDict& SingleFileCheckpoint::component(const std::string& name) const {
  if (name == "unet") return unet;
  if (name == "vae") return vae;
  if (name == "text_encoder") return textEncoder;
  if (name == "text_encoder_2") return textEncoder2;
  fail(codes::kInvalidArgument, "single-file checkpoints hold components \"unet\", \"vae\", \"text_encoder\" and "
                                "\"text_encoder_2\" (SDXL), not \"" + name + "\"");
}

StateDict& SingleFileCheckpoint::component(const std::string& name) {
  return const_cast<StateDict&>(static_cast<const SingleFileCheckpoint&>(*this).component(name));
}

CheckpointFamily detectFamily(const SafetensorsFile& file) {
  bool sd1 = false, sd2 = false, sdxl = false, unet = false;
  for (const auto& t : file.header().tensors) {
    if (startsWith(t.name, "conditioner.embedders.")) sdxl = true;
    else if (startsWith(t.name, kOpenClipPrefix)) sd2 = true;
    else if (startsWith(t.name, kClipPrefix)) sd1 = true;
    else if (startsWith(t.name, kUnetPrefix)) unet = true;
  }
  if (sdxl) return CheckpointFamily::SDXL;
  if (sd1 && sd2)
    fail(codes::kBadCheckpoint, file.path() + ": holds both an OpenAI CLIP (cond_stage_model.transformer.*) and an "
                                              "OpenCLIP (cond_stage_model.model.*) text encoder");
  if (sd2) return CheckpointFamily::SD2;
  if (sd1) return CheckpointFamily::SD1;
  std::vector<std::string> first;
  for (size_t i = 0; i < file.header().tensors.size() && i < 5; ++i) first.push_back(file.header().tensors[i].name);
  fail(codes::kUnsupportedModel,
       file.path() + ": not an original Stable Diffusion 1.x/2.x/XL checkpoint: " +
           (unet ? std::string("it has UNet weights (model.diffusion_model.*) but no text encoder "
                               "(cond_stage_model.* / conditioner.embedders.*)")
                 : std::string("no model.diffusion_model.* / cond_stage_model.* / conditioner.embedders.* keys")) +
           " (first keys: " + listSome(first) + "). A diffusers component file is loaded from its folder instead.");
}

namespace {

/// The 1x1-conv weight [C, C, 1, 1] (or conv1d [C, C, 1]) of LDM's AttnBlock as a Linear [C, C] view.
at::Tensor convToLinear(const at::Tensor& t, const std::string& key, const std::string& path) {
  if (t.dim() == 2) return t;
  if ((t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) || (t.dim() == 3 && t.size(2) == 1))
    return t.dim() == 4 ? t.select(3, 0).select(2, 0) : t.select(2, 0);  // [C, C]
  fail(codes::kBadCheckpoint, path + ": \"" + key + "\" should be a 1x1 conv weight [C, C, 1, 1], got " +
                                  nn::shapeString(t.sizes()));
}

/// Keys original checkpoints carry that no diffusers model uses.
bool knownUnused(const std::string& key, CheckpointFamily family, int64_t textLayers, std::string& why) {
  auto yes = [&why](const char* reason) {
    why = reason;
    return true;
  };
  // LatentDiffusion's DDPM schedule buffers (the scheduler recomputes them from its config).
  static const std::set<std::string> schedule = {
      "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
      "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
      "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
      "logvar"};
  if (schedule.count(key)) return yes("DDPM schedule buffer");
  if (startsWith(key, "model_ema.")) return yes("EMA copy (the non-EMA weights are loaded, as diffusers does)");
  if (family == CheckpointFamily::SD1 && key == std::string(kClipPrefix) + "text_model.embeddings.position_ids")
    return yes("CLIP position_ids buffer");
  if (family == CheckpointFamily::SDXL) {
    if (key == std::string(kXlClipPrefix) + "text_model.embeddings.position_ids") return yes("CLIP position_ids buffer");
    if (key == std::string(kXlOpenClipPrefix) + "logit_scale" || key == std::string(kXlRefinerPrefix) + "logit_scale")
      return yes("OpenCLIP logit_scale (contrastive training only)");
  }
  if (family == CheckpointFamily::SD2) {
    if (key == std::string(kOpenClipPrefix) + "text_projection" || key == std::string(kOpenClipPrefix) + "logit_scale")
      return yes("OpenCLIP projection (the SD 2 text encoder has none)");
    int64_t idx;
    std::string rest;
    // SD 2 uses the penultimate OpenCLIP layer: diffusers' config has one layer fewer than the file.
    if (matchIndexed(key, std::string(kOpenClipPrefix) + "transformer.resblocks.", idx, rest) && idx == textLayers)
      return yes("unused last OpenCLIP layer");
  }
  return false;
}

struct Mapper {
  const SafetensorsFile& file;
  SingleFileCheckpoint& out;
  std::vector<std::string> unmapped;

  void put(StateDict& dict, const std::string& name, at::Tensor t, const std::string& from) {
    if (!dict.emplace(name, std::move(t)).second)
      fail(codes::kBadCheckpoint, file.path() + ": two keys map to \"" + name + "\" (second: \"" + from + "\")");
  }

  void unetKey(const RuleTable& rules, const std::string& key, const TensorInfo& info) {
    std::string rest;
    const Rule* r = findRule(rules, key.substr(std::string(kUnetPrefix).size()), rest);
    const std::string suffix = r ? mapSuffix(*r, rest) : "";
    if (suffix.empty()) return unmapped.push_back(key);
    put(out.unet, r->target + "." + suffix, file.tensor(info), key);
  }

  void vaeKey(const RuleTable& rules, const std::string& key, const TensorInfo& info) {
    std::string rest;
    const Rule* r = findRule(rules, key.substr(std::string(kVaePrefix).size()), rest);
    const std::string suffix = r ? mapSuffix(*r, rest) : "";
    if (suffix.empty()) return unmapped.push_back(key);
    at::Tensor t = file.tensor(info);
    if (r->suffix == Suffix::VaeAttention && endsWith(suffix, ".weight") && !startsWith(suffix, "group_norm"))
      t = convToLinear(t, key, file.path());
    put(out.vae, r->target + "." + suffix, t, key);
  }

  /// OpenAI CLIP (transformers CLIPTextModel under `prefix`) → the same names in `dict`.
  void clipKey(const char* prefix, StateDict& dict, int64_t layers, const std::string& key, const TensorInfo& info) {
    const std::string name = key.substr(std::string(prefix).size());  // text_model.*
    if (!startsWith(name, "text_model.") || !validClipSuffix(name.substr(11), layers)) return unmapped.push_back(key);
    put(dict, name, file.tensor(info), key);
  }

  /// OpenCLIP (open_clip.model.CLIP text tower under `prefix`) → transformers CLIPTextModel names in
  /// `dict`; with `projection` (CLIPTextModelWithProjection, SDXL's text_encoder_2) OpenCLIP's
  /// `text_projection` [D, P] (x @ P) becomes `text_projection.weight` [P, D] (nn.Linear).
  void openClipKey(const char* prefix, StateDict& dict, int64_t layers, int64_t hidden, bool projection,
                   const std::string& key, const TensorInfo& info) {
    const std::string k = key.substr(std::string(prefix).size());
    static const std::map<std::string, std::string> top = {
        {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
        {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
        {"ln_final.weight", "text_model.final_layer_norm.weight"},
        {"ln_final.bias", "text_model.final_layer_norm.bias"}};
    if (auto it = top.find(k); it != top.end()) return put(dict, it->second, file.tensor(info), key);
    if (projection && k == "text_projection") {
      at::Tensor t = file.tensor(info);  // [D, P]
      if (t.dim() != 2 || t.size(0) != hidden)
        fail(codes::kBadCheckpoint, file.path() + ": \"" + key + "\" has shape " + nn::shapeString(t.sizes()) +
                                        " but text_encoder_2 hidden_size " + std::to_string(hidden) + " implies [" +
                                        std::to_string(hidden) + ", projection_dim]");
      return put(dict, "text_projection.weight", t.t().contiguous(), key);  // [P, D]
    }
    int64_t idx;
    std::string rest;
    if (!matchIndexed(k, "transformer.resblocks.", idx, rest) || idx >= layers) return unmapped.push_back(key);
    const std::string layer = "text_model.encoder.layers." + std::to_string(idx) + ".";
    if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
      // in_proj = cat(q, k, v) on dim 0: [3 * hidden, hidden] / [3 * hidden]
      at::Tensor t = file.tensor(info);
      const bool weight = rest == "attn.in_proj_weight";
      const bool ok = t.dim() == (weight ? 2 : 1) && t.size(0) == 3 * hidden && (!weight || t.size(1) == hidden);
      if (!ok)
        fail(codes::kBadCheckpoint, file.path() + ": \"" + key + "\" has shape " + nn::shapeString(t.sizes()) +
                                        " but text_encoder hidden_size " + std::to_string(hidden) + " implies " +
                                        (weight ? nn::shapeString({3 * hidden, hidden}) : nn::shapeString({3 * hidden})));
      const std::string param = weight ? "weight" : "bias";
      const char* names[3] = {"q_proj", "k_proj", "v_proj"};
      for (int i = 0; i < 3; ++i)
        put(dict, layer + "self_attn." + names[i] + "." + param, t.narrow(0, i * hidden, hidden), key);
      return;
    }
    std::string module, param;
    if (!splitParam(rest, module, param)) return unmapped.push_back(key);
    static const std::map<std::string, std::string> names = {{"ln_1", "layer_norm1"},
                                                             {"ln_2", "layer_norm2"},
                                                             {"attn.out_proj", "self_attn.out_proj"},
                                                             {"mlp.c_fc", "mlp.fc1"},
                                                             {"mlp.c_proj", "mlp.fc2"}};
    auto it = names.find(module);
    if (it == names.end()) return unmapped.push_back(key);
    put(dict, layer + it->second + "." + param, file.tensor(info), key);
  }
};

/// E_INVALID_ARGUMENT when configDir's model_index.json (if any) names a pipeline of another family
/// than the checkpoint's (an SDXL file with an SD 1.x folder, or the reverse).
void checkConfigFamily(const std::string& path, CheckpointFamily family, const std::string& configDir) {
  if (!isFile(util::joinPath(configDir, "model_index.json"))) return;
  const std::string cls = io::readModelIndex(configDir).className;
  const bool xlFile = family == CheckpointFamily::SDXL;
  if (xlFile != isXlClassName(cls))
    fail(codes::kInvalidArgument,
         path + " is a " + familyName(family) + " checkpoint but the config folder " + configDir + " holds a " + cls +
             " (model_index.json): pass configDir = a diffusers folder of the same family (" +
             (xlFile ? "StableDiffusionXLPipeline" : "StableDiffusionPipeline") + ")");
}

}  // namespace

SingleFileCheckpoint loadSingleFile(const std::string& path, const std::string& configDir) {
  if (!isFile(path)) fail(codes::kModelNotFound, "checkpoint " + path + " not found");
  if (io::isPickleName(path) || io::looksLikePickle(path)) fail(codes::kBadCheckpoint, io::pickleRefusalMessage(path));
  if (!isDir(configDir)) fail(codes::kModelNotFound, "config folder " + configDir + " does not exist");
  auto file = SafetensorsFile::open(path);

  SingleFileCheckpoint out;
  out.path = path;
  out.metadata = file->header().metadata;
  out.family = detectFamily(*file);
  checkConfigFamily(path, out.family, configDir);
  const bool xl = out.family == CheckpointFamily::SDXL;
  // SDXL refiner layout: the OpenCLIP bigG encoder alone, as embedders.0 (→ text_encoder_2).
  bool refiner = false;
  if (xl)
    for (const auto& t : file->header().tensors)
      if (startsWith(t.name, kXlRefinerPrefix)) refiner = true;

  const RuleTable unet = unetRules(componentConfig(configDir, "unet"));
  const RuleTable vae = vaeRules(componentConfig(configDir, "vae"));
  const TextConfig te = refiner ? TextConfig{} : textConfig(configDir, "text_encoder");
  const TextConfig te2 = xl ? textConfig(configDir, "text_encoder_2") : TextConfig{};

  Mapper m{*file, out, {}};
  for (const auto& info : file->header().tensors) {
    const std::string& key = info.name;
    std::string why;
    if (knownUnused(key, out.family, te.layers, why)) {
      out.ignored.push_back(key);
      continue;
    }
    if (startsWith(key, kUnetPrefix)) m.unetKey(unet, key, info);
    else if (startsWith(key, kVaePrefix)) m.vaeKey(vae, key, info);
    else if (out.family == CheckpointFamily::SD1 && startsWith(key, kClipPrefix))
      m.clipKey(kClipPrefix, out.textEncoder, te.layers, key, info);
    else if (out.family == CheckpointFamily::SD2 && startsWith(key, kOpenClipPrefix))
      m.openClipKey(kOpenClipPrefix, out.textEncoder, te.layers, te.hidden, false, key, info);
    else if (xl && !refiner && startsWith(key, kXlClipPrefix))
      m.clipKey(kXlClipPrefix, out.textEncoder, te.layers, key, info);
    else if (xl && !refiner && startsWith(key, kXlOpenClipPrefix))
      m.openClipKey(kXlOpenClipPrefix, out.textEncoder2, te2.layers, te2.hidden, true, key, info);
    else if (xl && refiner && startsWith(key, kXlRefinerPrefix))
      m.openClipKey(kXlRefinerPrefix, out.textEncoder2, te2.layers, te2.hidden, true, key, info);
    else m.unmapped.push_back(key);
  }
  if (!m.unmapped.empty())
    fail(codes::kBadCheckpoint,
         path + ": " + std::to_string(m.unmapped.size()) + " key(s) of this " + familyName(out.family) +
             (refiner ? " refiner" : "") + " checkpoint map to no diffusers weight of the architecture in " +
             configDir + ": " + listSome(m.unmapped) + ". Is the config folder the right one for this checkpoint?");
  std::vector<std::string> empty;
  if (out.unet.empty()) empty.push_back(std::string("unet (") + kUnetPrefix + "*)");
  if (out.vae.empty()) empty.push_back(std::string("vae (") + kVaePrefix + "*)");
  if (out.textEncoder.empty() && !refiner)
    empty.push_back(std::string("text_encoder (") +
                    (xl ? kXlClipPrefix : out.family == CheckpointFamily::SD2 ? kOpenClipPrefix : kClipPrefix) + "*)");
  if (out.textEncoder2.empty() && xl)
    empty.push_back(std::string("text_encoder_2 (") + (refiner ? kXlRefinerPrefix : kXlOpenClipPrefix) + "*)");
  if (!empty.empty())
    fail(codes::kBadCheckpoint, path + ": incomplete " + familyName(out.family) + " checkpoint: no tensors for " +
                                    listSome(empty) + " (" + std::to_string(out.unet.size()) + " unet, " +
                                    std::to_string(out.vae.size()) + " vae, " + std::to_string(out.textEncoder.size()) +
                                    " text_encoder" +
                                    (xl ? ", " + std::to_string(out.textEncoder2.size()) + " text_encoder_2" : "") +
                                    " tensors mapped)");
  return out;
}

}  // namespace sd::loaders
