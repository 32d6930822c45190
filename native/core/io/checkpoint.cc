// Checkpoint loading after diffusers v0.30.3 pipelines/pipeline_utils.py (model_index.json, variants),
// models/model_loading_utils.py (sharded index) and loaders/single_file_utils.py
// (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint,
// convert_open_clip_checkpoint). The LDM → diffusers mapping is built from the diffusers configs as
// a table of block prefixes (input_blocks.4.0 → down_blocks.1.resnets.0, ...) and applied to every
// key once; a key no rule claims is an error, never silently dropped.
#include "io/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>

#include "config/config_reader.h"
#include "models/unet_2d_condition.h"
#include "util/error.h"
#include "util/json.h"

namespace sd::io {

namespace fs = std::filesystem;

namespace {

// ---- small helpers ---------------------------------------------------------------------------

bool isDir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool isFile(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
std::string join(const std::string& a, const std::string& b) { return (fs::path(a) / b).string(); }
bool startsWith(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool endsWith(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
bool isPickleName(const std::string& name) {
  const std::string l = lower(name);
  return endsWith(l, ".bin") || endsWith(l, ".ckpt") || endsWith(l, ".pt") || endsWith(l, ".pth");
}

/// "a, b, c, … (N more)" for messages.
std::string listSome(const std::vector<std::string>& items, size_t max = 12) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < max; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > max) out += ", … (" + std::to_string(items.size() - max) + " more)";
  return out.empty() ? "(none)" : out;
}

/// Sorted names of the regular files in `dir`.
std::vector<std::string> listFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::error_code ec2;
    if (e.is_regular_file(ec2)) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Parses a decimal index at the start of `s` (digits up to '.' or end); false if none.
bool parseIndex(const std::string& s, size_t& pos, int64_t& out) {
  size_t start = pos;
  int64_t v = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    if (pos - start >= 9) return false;  // absurd index: refuse rather than overflow
    v = v * 10 + (s[pos] - '0');
    ++pos;
  }
  if (pos == start || (pos < s.size() && s[pos] != '.')) return false;
  if (pos - start > 1 && s[start] == '0') return false;  // no leading zeros ("01")
  out = v;
  return true;
}

/// If `s` is "<prefix><int>.<rest>", sets idx and rest.
bool matchIndexed(const std::string& s, const std::string& prefix, int64_t& idx, std::string& rest) {
  if (!startsWith(s, prefix)) return false;
  size_t pos = prefix.size();
  if (!parseIndex(s, pos, idx) || pos >= s.size()) return false;
  rest = s.substr(pos + 1);
  return true;
}

bool isWeightOrBias(const std::string& s) { return s == "weight" || s == "bias"; }

/// If `s` is "<name>.weight" or "<name>.bias" with name in `names`, returns name.
bool splitParam(const std::string& s, std::string& module, std::string& param) {
  size_t dot = s.rfind('.');
  if (dot == std::string::npos) return false;
  module = s.substr(0, dot);
  param = s.substr(dot + 1);
  return isWeightOrBias(param);
}

// ---- pickle refusal --------------------------------------------------------------------------

/// True when the first bytes of `path` are a torch zip archive or a raw pickle stream.
bool looksLikePickle(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char b[4] = {0, 0, 0, 0};
  size_t n = std::fread(b, 1, 4, f);
  std::fclose(f);
  if (n >= 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4) return true;  // torch.save zip
  if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return true;                // pickle PROTO opcode
  return false;
}

std::shared_ptr<SafetensorsFile> openWeights(const std::string& path) {
  if (isFile(path) && looksLikePickle(path)) fail(codes::kBadCheckpoint, pickleRefusalMessage(path));
  return SafetensorsFile::open(path);
}

}  // namespace

std::string pickleRefusalMessage(const std::string& path) {
  std::string out = fs::path(path).replace_extension(".safetensors").string();
  if (out == path) out = path + ".converted.safetensors";
  return path +
         ": refusing to load a pickle checkpoint (.ckpt/.bin/.pt/.pth or a torch.save archive). Loading a pickle "
         "can execute arbitrary code hidden in the file, so sd-native reads only .safetensors. Convert it once, in a "
         "Python environment you trust with this file, e.g.:\n"
         "  python -c \"import torch; from safetensors.torch import save_file; "
         "sd = torch.load('" + path + "', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); "
         "save_file({k: v.clone().contiguous() for k, v in sd.items() if isinstance(v, torch.Tensor)}, '" + out + "')\"\n"
         "or, for a diffusers folder: DiffusionPipeline.from_pretrained(folder).save_pretrained(folder, "
         "safe_serialization=True).";
}

// ---- model_index.json ------------------------------------------------------------------------

const ModelIndexComponent* ModelIndex::component(const std::string& name) const {
  auto it = components.find(name);
  return (it == components.end() || !it->second.present) ? nullptr : &it->second;
}

ModelIndex readModelIndex(const std::string& dir) {
  if (!isDir(dir)) fail(codes::kModelNotFound, "model folder " + dir + " does not exist (or is not a folder)");
  const std::string file = join(dir, "model_index.json");
  if (!isFile(file))
    fail(codes::kModelNotFound, file + " not found: " + dir +
                                    " is not a diffusers pipeline folder (expected model_index.json next to unet/, vae/, ...)");
  Json j = Json::parseFile(file);
  if (!j.isObject()) fail(codes::kBadConfig, file + ": expected a JSON object");
  ModelIndex mi;
  mi.dir = dir;
  const Json* cls = j.find("_class_name");
  if (!cls || !cls->isString()) fail(codes::kBadConfig, file + ": field \"_class_name\" is required and must be a string");
  mi.className = cls->string();
  if (const Json* v = j.find("_diffusers_version"); v && v->isString()) mi.diffusersVersion = v->string();
  for (const auto& [key, value] : j.object()) {
    if (key.empty() || key[0] == '_') continue;  // _class_name, _diffusers_version, _name_or_path
    if (key == "force_zeros_for_empty_prompt") {
      if (!value.isBool()) fail(codes::kBadConfig, file + ": field \"" + key + "\" must be true or false");
      mi.forceZerosForEmptyPrompt = value.boolean();
      continue;
    }
    if (!value.isArray()) continue;  // requires_safety_checker and other pipeline options
    const auto& a = value.array();
    ModelIndexComponent c;
    if (a.size() == 2 && a[0].isNull() && a[1].isNull()) {
      c.present = false;
    } else if (a.size() == 2 && a[0].isString() && a[1].isString()) {
      c.present = true;
      c.library = a[0].string();
      c.className = a[1].string();
    } else {
      fail(codes::kBadConfig, file + ": component \"" + key + "\" must be [library, class] or [null, null]");
    }
    mi.components[key] = c;
  }
  return mi;
}

// ---- component folders -----------------------------------------------------------------------

std::string weightsBaseName(const std::string& componentDir) {
  if (!isDir(componentDir)) fail(codes::kModelNotFound, "component folder " + componentDir + " does not exist");
  const std::string cfg = join(componentDir, "config.json");
  if (!isFile(cfg)) fail(codes::kModelNotFound, cfg + " not found");
  Json j = Json::parseFile(cfg);
  // diffusers configs carry "_class_name"; transformers configs carry "architectures"/"model_type".
  const bool diffusers = j.isObject() && j.has("_class_name");
  return diffusers ? "diffusion_pytorch_model" : "model";
}

namespace {

void addAll(nn::StateDict& out, const SafetensorsFile& f, const std::string& where) {
  for (const auto& info : f.header().tensors) {
    if (!out.emplace(info.name, f.tensor(info)).second)
      fail(codes::kBadCheckpoint, where + ": tensor \"" + info.name + "\" appears in more than one shard");
  }
}

nn::StateDict loadSharded(const std::string& dir, const std::string& indexPath) {
  Json j;
  try {
    j = Json::parseFile(indexPath);
  } catch (const SdException& e) {
    if (e.code() == codes::kBadConfig) fail(codes::kBadCheckpoint, e.what());
    throw;
  }
  const Json* map = j.find("weight_map");
  if (!map || !map->isObject()) fail(codes::kBadCheckpoint, indexPath + ": no \"weight_map\" object");
  std::map<std::string, std::vector<std::string>> byShard;  // shard → names
  for (const auto& [name, shard] : map->object()) {
    if (!shard.isString()) fail(codes::kBadCheckpoint, indexPath + ": weight_map[\"" + name + "\"] is not a file name");
    const std::string& s = shard.string();
    // A shard must be a plain file next to the index: no paths, no "..", safetensors only.
    if (s.empty() || s.find('/') != std::string::npos || s.find('\\') != std::string::npos || s == "." || s == "..")
      fail(codes::kBadCheckpoint, indexPath + ": weight_map[\"" + name + "\"] = \"" + s + "\" is not a file name in " + dir);
    if (isPickleName(s)) fail(codes::kBadCheckpoint, pickleRefusalMessage(join(dir, s)));
    byShard[s].push_back(name);
  }
  if (byShard.empty()) fail(codes::kBadCheckpoint, indexPath + ": weight_map is empty");
  nn::StateDict out;
  for (const auto& [shard, names] : byShard) {
    const std::string p = join(dir, shard);
    if (!isFile(p)) fail(codes::kModelNotFound, p + " (a shard listed in " + indexPath + ") not found");
    auto f = openWeights(p);
    std::set<std::string> listed(names.begin(), names.end());
    for (const auto& n : names)
      if (!f->find(n)) fail(codes::kBadCheckpoint, indexPath + " says \"" + n + "\" is in " + shard + " but it is not");
    for (const auto& info : f->header().tensors)
      if (!listed.count(info.name))
        fail(codes::kBadCheckpoint, p + " holds tensor \"" + info.name + "\" that " + indexPath + " does not list");
    addAll(out, *f, p);
  }
  return out;
}

}  // namespace

nn::StateDict loadComponentWeights(const std::string& componentDir, const std::string& baseName,
                                   const std::string& variant, std::string* source) {
  if (!isDir(componentDir)) fail(codes::kModelNotFound, "component folder " + componentDir + " does not exist");
  for (char c : variant)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
      fail(codes::kInvalidArgument, "variant \"" + variant + "\" may hold only letters, digits, '_' and '-'");
  const std::string single = variant.empty() ? baseName + ".safetensors" : baseName + "." + variant + ".safetensors";
  const std::string index =
      variant.empty() ? baseName + ".safetensors.index.json" : baseName + ".safetensors.index." + variant + ".json";
  const std::string singlePath = join(componentDir, single);
  const std::string indexPath = join(componentDir, index);
  if (isFile(singlePath)) {
    if (source) *source = singlePath;
    auto f = openWeights(singlePath);
    nn::StateDict out;
    addAll(out, *f, singlePath);
    return out;
  }
  if (isFile(indexPath)) {
    if (source) *source = indexPath;
    return loadSharded(componentDir, indexPath);
  }

  // Nothing to load: say why, in the most useful order.
  const std::vector<std::string> files = listFiles(componentDir);
  std::vector<std::string> weights, pickles;
  for (const auto& f : files) {
    if (endsWith(f, ".safetensors") || endsWith(f, ".index.json") || (startsWith(f, baseName + ".") && endsWith(f, ".json")))
      weights.push_back(f);
    if (isPickleName(f)) {
      weights.push_back(f);
      pickles.push_back(f);
    }
  }
  // The pickle counterparts of the requested weights: <base>[.<variant>].bin (diffusers),
  // pytorch_model[.<variant>].bin (transformers, whose safetensors base is "model"), and shards.
  std::vector<std::string> bases = {baseName};
  if (baseName == "model") bases.push_back("pytorch_model");
  for (const auto& p : pickles)
    for (const auto& b : bases) {
      const std::string stem = variant.empty() ? b : b + "." + variant;
      if (startsWith(p, stem + ".") || startsWith(p, stem + "-"))
        fail(codes::kBadCheckpoint, pickleRefusalMessage(join(componentDir, p)));
    }
  if (!variant.empty())
    fail(codes::kModelNotFound, "variant \"" + variant + "\" not found: neither " + singlePath + " nor " + indexPath +
                                    " exists; weight files in " + componentDir + ": " + listSome(weights) +
                                    " (load without a variant to use the default weights)");
  if (!pickles.empty()) fail(codes::kBadCheckpoint, pickleRefusalMessage(join(componentDir, pickles.front())));
  fail(codes::kModelNotFound, "no weights in " + componentDir + ": looked for " + single + " and " + index +
                                  "; files present: " + listSome(files));
}

// ---- single-file checkpoints: family ---------------------------------------------------------

const char* familyName(CheckpointFamily f) {
  switch (f) {
    case CheckpointFamily::SD1: return "Stable Diffusion 1.x";
    case CheckpointFamily::SD2: return "Stable Diffusion 2.x";
    case CheckpointFamily::SDXL: return "Stable Diffusion XL";
  }
  return "?";
}

const nn::StateDict& SingleFileCheckpoint::component(const std::string& name) const {
  if (name == "unet") return unet;
  if (name == "vae") return vae;
  if (name == "text_encoder") return textEncoder;
  if (name == "text_encoder_2") return textEncoder2;
  fail(codes::kInvalidArgument, "single-file checkpoints hold components \"unet\", \"vae\", \"text_encoder\" and "
                                "\"text_encoder_2\" (SDXL), not \"" + name + "\"");
}

nn::StateDict& SingleFileCheckpoint::component(const std::string& name) {
  return const_cast<nn::StateDict&>(static_cast<const SingleFileCheckpoint&>(*this).component(name));
}

namespace {
constexpr const char* kUnetPrefix = "model.diffusion_model.";
constexpr const char* kVaePrefix = "first_stage_model.";
constexpr const char* kClipPrefix = "cond_stage_model.transformer.";
constexpr const char* kOpenClipPrefix = "cond_stage_model.model.";
// SDXL (sgm GeneralConditioner): base = OpenAI CLIP ViT-L (embedders.0) + OpenCLIP bigG (embedders.1);
// refiner = OpenCLIP bigG alone (embedders.0).
constexpr const char* kXlClipPrefix = "conditioner.embedders.0.transformer.";
constexpr const char* kXlOpenClipPrefix = "conditioner.embedders.1.model.";
constexpr const char* kXlRefinerPrefix = "conditioner.embedders.0.model.";
}  // namespace

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

// ---- single-file checkpoints: the key mapping ------------------------------------------------

namespace {

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

const Rule* findRule(const RuleTable& rules, const std::string& key, std::string& rest) {
  for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
    auto it = rules.find(key.substr(0, dot));
    if (it != rules.end()) {
      rest = key.substr(dot + 1);
      return &it->second;
    }
  }
  return nullptr;
}

bool validTransformerBlockSuffix(const std::string& s) {
  // BasicTransformerBlock: norm1..3, attn1/attn2 (to_q, to_k, to_v, to_out.0), ff.net.0.proj, ff.net.2
  static const std::set<std::string> modules = {
      "norm1", "norm2", "norm3", "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
      "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2"};
  std::string module, param;
  return splitParam(s, module, param) && modules.count(module);
}

/// Renames `rest` (the part after the block prefix); "" when it is not a parameter of that block.
std::string mapSuffix(const Rule& rule, const std::string& rest) {
  std::string module, param;
  switch (rule.suffix) {
    case Suffix::Param:
      return isWeightOrBias(rest) ? rest : "";
    case Suffix::UnetResnet: {
      if (!splitParam(rest, module, param)) return "";
      static const std::map<std::string, std::string> names = {
          {"in_layers.0", "norm1"},  {"in_layers.2", "conv1"},          {"emb_layers.1", "time_emb_proj"},
          {"out_layers.0", "norm2"}, {"out_layers.3", "conv2"},         {"skip_connection", "conv_shortcut"}};
      auto it = names.find(module);
      return it == names.end() ? "" : it->second + "." + param;
    }
    case Suffix::UnetAttention: {
      if (!splitParam(rest, module, param)) return "";
      if (module == "norm" || module == "proj_in" || module == "proj_out") return rest;
      int64_t idx;
      std::string inner;
      if (matchIndexed(rest, "transformer_blocks.", idx, inner) && idx < rule.transformerBlocks &&
          validTransformerBlockSuffix(inner))
        return rest;
      return "";
    }
    case Suffix::VaeResnet: {
      if (!splitParam(rest, module, param)) return "";
      if (module == "norm1" || module == "conv1" || module == "norm2" || module == "conv2") return rest;
      if (module == "nin_shortcut") return "conv_shortcut." + param;
      return "";
    }
    case Suffix::VaeAttention: {
      if (!splitParam(rest, module, param)) return "";
      static const std::map<std::string, std::string> names = {
          {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};
      auto it = names.find(module);
      return it == names.end() ? "" : it->second + "." + param;
    }
  }
  return "";
}

/// The inverse of mapSuffix: a diffusers parameter name after the block prefix → the LDM one; "" when
/// it is not a parameter of that block.
std::string unmapSuffix(const Rule& rule, const std::string& rest) {
  std::string module, param;
  switch (rule.suffix) {
    case Suffix::Param:
    case Suffix::UnetAttention:
      return mapSuffix(rule, rest);  // same names on both sides
    case Suffix::UnetResnet: {
      if (!splitParam(rest, module, param)) return "";
      static const std::map<std::string, std::string> names = {
          {"norm1", "in_layers.0"},  {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
          {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"}};
      auto it = names.find(module);
      return it == names.end() ? "" : it->second + "." + param;
    }
    case Suffix::VaeResnet: {
      if (!splitParam(rest, module, param)) return "";
      if (module == "norm1" || module == "conv1" || module == "norm2" || module == "conv2") return rest;
      if (module == "conv_shortcut") return "nin_shortcut." + param;
      return "";
    }
    case Suffix::VaeAttention: {
      if (!splitParam(rest, module, param)) return "";
      static const std::map<std::string, std::string> names = {
          {"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out.0", "proj_out"}};
      auto it = names.find(module);
      return it == names.end() ? "" : it->second + "." + param;
    }
  }
  return "";
}

void checkRange(const ConfigReader& c, const std::string& key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) c.error(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
}

/// UNet2DConditionModel (diffusers) ↔ openaimodel.UNetModel (LDM) block prefixes.
/// LDM numbers input_blocks 1.. as: for each level, `layers` resnet(+attention) blocks, then one
/// downsampler (all but the last level); output_blocks as: for each level from the bottom,
/// `layers + 1` resnet(+attention) blocks, the last carrying the upsampler (all but the top level).
RuleTable unetRules(const ConfigReader& c) {
  const auto down = c.requireStringList("down_block_types");
  const auto up = c.requireStringList("up_block_types");
  const size_t n = down.size();
  if (n == 0 || n > 16) c.error("down_block_types", "must list 1 to 16 blocks");
  if (up.size() != n) c.error("up_block_types", "must list as many blocks as down_block_types");
  const auto layers = c.intOrList("layers_per_block", n);
  for (auto l : layers) checkRange(c, "layers_per_block", l, 1, 64);
  // transformer_layers_per_block (int | per block | per layer, and the up blocks' reverse list) as
  // the model reads it: the number of transformer_blocks.N of every attention.
  const auto model = models::UNet2DConditionConfig::fromJson(c.json(), c.file());
  auto blocksOf = [&](const models::PerLayerCount& plc, int64_t count, const std::string& where) {
    std::vector<int64_t> v = plc.expand(count, c.file() + ": transformer layers of " + where);
    for (auto b : v) checkRange(c, "transformer_layers_per_block", b, 1, 1024);
    return v;
  };

  RuleTable r;
  r["time_embed.0"] = {"time_embedding.linear_1", Suffix::Param};
  r["time_embed.2"] = {"time_embedding.linear_2", Suffix::Param};
  r["input_blocks.0.0"] = {"conv_in", Suffix::Param};
  r["out.0"] = {"conv_norm_out", Suffix::Param};
  r["out.2"] = {"conv_out", Suffix::Param};
  if (c.getString("addition_embed_type", "") == "text_time") {  // SDXL: label_emb → add_embedding
    r["label_emb.0.0"] = {"add_embedding.linear_1", Suffix::Param};
    r["label_emb.0.2"] = {"add_embedding.linear_2", Suffix::Param};
  }

  int64_t in = 1;
  for (size_t b = 0; b < n; ++b) {
    bool attn;
    if (down[b] == "CrossAttnDownBlock2D") attn = true;
    else if (down[b] == "DownBlock2D") attn = false;
    else fail(codes::kUnsupportedModel, c.file() + ": down block type \"" + down[b] + "\" has no single-file mapping");
    const std::string db = "down_blocks." + std::to_string(b);
    const auto tb = attn ? blocksOf(model.transformerLayersPerBlock.at(b), layers[b], db) : std::vector<int64_t>();
    for (int64_t l = 0; l < layers[b]; ++l, ++in) {
      const std::string ib = "input_blocks." + std::to_string(in);
      r[ib + ".0"] = {db + ".resnets." + std::to_string(l), Suffix::UnetResnet};
      if (attn) r[ib + ".1"] = {db + ".attentions." + std::to_string(l), Suffix::UnetAttention, tb[l]};
    }
    if (b + 1 < n) {
      r["input_blocks." + std::to_string(in) + ".0.op"] = {db + ".downsamplers.0.conv", Suffix::Param};
      ++in;
    }
  }

  const Json* mid = c.json().find("mid_block_type");
  const std::string midType = !mid ? "UNetMidBlock2DCrossAttn" : mid->isNull() ? "" : mid->isString() ? mid->string() : "?";
  if (midType == "UNetMidBlock2DCrossAttn") {
    r["middle_block.0"] = {"mid_block.resnets.0", Suffix::UnetResnet};
    r["middle_block.1"] = {"mid_block.attentions.0", Suffix::UnetAttention,
                           blocksOf(model.transformerLayersPerBlock.at(n - 1), 1, "mid_block")[0]};
    r["middle_block.2"] = {"mid_block.resnets.1", Suffix::UnetResnet};
  } else if (!midType.empty()) {
    fail(codes::kUnsupportedModel, c.file() + ": mid_block_type \"" + midType + "\" has no single-file mapping");
  }

  int64_t out = 0;
  for (size_t u = 0; u < n; ++u) {
    bool attn;
    if (up[u] == "CrossAttnUpBlock2D") attn = true;
    else if (up[u] == "UpBlock2D") attn = false;
    else fail(codes::kUnsupportedModel, c.file() + ": up block type \"" + up[u] + "\" has no single-file mapping");
    const std::string ub = "up_blocks." + std::to_string(u);
    const int64_t count = layers[n - 1 - u] + 1;  // reversed layers_per_block, + 1
    const models::PerLayerCount& plc = model.reverseTransformerLayersPerBlock.empty()
                                           ? model.transformerLayersPerBlock.at(n - 1 - u)
                                           : model.reverseTransformerLayersPerBlock.at(u);
    const auto tb = attn ? blocksOf(plc, count, ub) : std::vector<int64_t>();
    for (int64_t l = 0; l < count; ++l, ++out) {
      const std::string ob = "output_blocks." + std::to_string(out);
      r[ob + ".0"] = {ub + ".resnets." + std::to_string(l), Suffix::UnetResnet};
      if (attn) r[ob + ".1"] = {ub + ".attentions." + std::to_string(l), Suffix::UnetAttention, tb[l]};
      if (l + 1 == count && u + 1 < n)
        r[ob + (attn ? ".2.conv" : ".1.conv")] = {ub + ".upsamplers.0.conv", Suffix::Param};
    }
  }
  return r;
}

/// AutoencoderKL (diffusers) ↔ ldm.modules.diffusionmodules.model Encoder/Decoder prefixes.
/// The decoder's `up` list is stored bottom-up: LDM up.i is diffusers up_blocks[n-1-i].
RuleTable vaeRules(const ConfigReader& c) {
  const auto down = c.requireStringList("down_block_types");
  const auto up = c.requireStringList("up_block_types");
  if (down.empty() || down.size() > 16) c.error("down_block_types", "must list 1 to 16 blocks");
  if (up.size() != down.size()) c.error("up_block_types", "must list as many blocks as down_block_types");
  for (const auto& t : down)
    if (t != "DownEncoderBlock2D") fail(codes::kUnsupportedModel, c.file() + ": VAE down block type \"" + t + "\" is not supported");
  for (const auto& t : up)
    if (t != "UpDecoderBlock2D") fail(codes::kUnsupportedModel, c.file() + ": VAE up block type \"" + t + "\" is not supported");
  const int64_t layers = c.getInt("layers_per_block", 1);  // AutoencoderKL default 1
  checkRange(c, "layers_per_block", layers, 1, 64);
  const bool midAttention = c.getBool("mid_block_add_attention", true);
  const int64_t n = static_cast<int64_t>(down.size());

  RuleTable r;
  for (const char* part : {"encoder", "decoder"}) {
    const std::string p = part;
    r[p + ".conv_in"] = {p + ".conv_in", Suffix::Param};
    r[p + ".conv_out"] = {p + ".conv_out", Suffix::Param};
    r[p + ".norm_out"] = {p + ".conv_norm_out", Suffix::Param};
    r[p + ".mid.block_1"] = {p + ".mid_block.resnets.0", Suffix::VaeResnet};
    r[p + ".mid.block_2"] = {p + ".mid_block.resnets.1", Suffix::VaeResnet};
    if (midAttention) r[p + ".mid.attn_1"] = {p + ".mid_block.attentions.0", Suffix::VaeAttention};
  }
  r["quant_conv"] = {"quant_conv", Suffix::Param};
  r["post_quant_conv"] = {"post_quant_conv", Suffix::Param};
  for (int64_t i = 0; i < n; ++i) {
    const std::string e = "encoder.down." + std::to_string(i), de = "encoder.down_blocks." + std::to_string(i);
    for (int64_t j = 0; j < layers; ++j)
      r[e + ".block." + std::to_string(j)] = {de + ".resnets." + std::to_string(j), Suffix::VaeResnet};
    if (i + 1 < n) r[e + ".downsample.conv"] = {de + ".downsamplers.0.conv", Suffix::Param};

    const int64_t u = n - 1 - i;  // diffusers index of LDM decoder.up.i
    const std::string d = "decoder.up." + std::to_string(i), du = "decoder.up_blocks." + std::to_string(u);
    for (int64_t j = 0; j < layers + 1; ++j)
      r[d + ".block." + std::to_string(j)] = {du + ".resnets." + std::to_string(j), Suffix::VaeResnet};
    if (u + 1 < n) r[d + ".upsample.conv"] = {du + ".upsamplers.0.conv", Suffix::Param};
  }
  return r;
}

/// The 1x1-conv weight [C, C, 1, 1] (or conv1d [C, C, 1]) of LDM's AttnBlock as a Linear [C, C] view.
at::Tensor convToLinear(const at::Tensor& t, const std::string& key, const std::string& path) {
  if (t.dim() == 2) return t;
  if ((t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) || (t.dim() == 3 && t.size(2) == 1))
    return t.dim() == 4 ? t.select(3, 0).select(2, 0) : t.select(2, 0);  // [C, C]
  fail(codes::kBadCheckpoint, path + ": \"" + key + "\" should be a 1x1 conv weight [C, C, 1, 1], got " +
                                  nn::shapeString(t.sizes()));
}

/// transformers CLIPTextModel parameter names under "text_model." (checks the layer index).
bool validClipSuffix(const std::string& s, int64_t numLayers) {
  static const std::set<std::string> top = {
      "embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
      "final_layer_norm.weight", "final_layer_norm.bias"};
  if (top.count(s)) return true;
  static const std::set<std::string> layerModules = {"layer_norm1", "layer_norm2", "self_attn.q_proj",
                                                     "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                                                     "mlp.fc1", "mlp.fc2"};
  int64_t idx;
  std::string rest, module, param;
  return matchIndexed(s, "encoder.layers.", idx, rest) && idx < numLayers && splitParam(rest, module, param) &&
         layerModules.count(module);
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

  void put(nn::StateDict& dict, const std::string& name, at::Tensor t, const std::string& from) {
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
  void clipKey(const char* prefix, nn::StateDict& dict, int64_t layers, const std::string& key, const TensorInfo& info) {
    const std::string name = key.substr(std::string(prefix).size());  // text_model.*
    if (!startsWith(name, "text_model.") || !validClipSuffix(name.substr(11), layers)) return unmapped.push_back(key);
    put(dict, name, file.tensor(info), key);
  }

  /// OpenCLIP (open_clip.model.CLIP text tower under `prefix`) → transformers CLIPTextModel names in
  /// `dict`; with `projection` (CLIPTextModelWithProjection, SDXL's text_encoder_2) OpenCLIP's
  /// `text_projection` [D, P] (x @ P) becomes `text_projection.weight` [P, D] (nn.Linear).
  void openClipKey(const char* prefix, nn::StateDict& dict, int64_t layers, int64_t hidden, bool projection,
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

ConfigReader componentConfig(const std::string& configDir, const std::string& component) {
  const std::string p = join(join(configDir, component), "config.json");
  if (!isFile(p))
    fail(codes::kModelNotFound, p + " not found: the config folder of a single-file checkpoint must be a diffusers "
                                    "folder with unet/, vae/ and text_encoder/ (SDXL: and text_encoder_2/) config.json");
  return ConfigReader::fromFile(p);
}

/// A text encoder's config: num_hidden_layers and hidden_size, range-checked.
struct TextConfig {
  int64_t layers = 0, hidden = 0;
};
TextConfig textConfig(const std::string& configDir, const std::string& component) {
  const ConfigReader te = componentConfig(configDir, component);
  TextConfig t;
  t.layers = te.requireInt("num_hidden_layers");
  checkRange(te, "num_hidden_layers", t.layers, 1, 1024);
  t.hidden = te.requireInt("hidden_size");
  checkRange(te, "hidden_size", t.hidden, 1, 1 << 20);
  return t;
}

bool isXlClassName(const std::string& cls) { return cls.find("StableDiffusionXL") == 0; }

/// E_INVALID_ARGUMENT when configDir's model_index.json (if any) names a pipeline of another family
/// than the checkpoint's (an SDXL file with an SD 1.x folder, or the reverse).
void checkConfigFamily(const std::string& path, CheckpointFamily family, const std::string& configDir) {
  if (!isFile(join(configDir, "model_index.json"))) return;
  const std::string cls = readModelIndex(configDir).className;
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
  if (isPickleName(path) || looksLikePickle(path)) fail(codes::kBadCheckpoint, pickleRefusalMessage(path));
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

// ---- the inverse: diffusers names → the original layout --------------------------------------

namespace {

/// Inverts a rule table: diffusers prefix → (LDM prefix, rule).
std::map<std::string, std::pair<std::string, Rule>> invert(const RuleTable& rules) {
  std::map<std::string, std::pair<std::string, Rule>> out;
  for (const auto& [ldm, rule] : rules) out.emplace(rule.target, std::make_pair(ldm, rule));
  return out;
}

struct Unmapper {
  nn::StateDict& out;
  std::vector<std::string> unmapped;  // "component: key"

  void put(const std::string& name, at::Tensor t) {
    if (!out.emplace(name, std::move(t)).second)
      fail(codes::kInternal, "two diffusers weights map to the original key \"" + name + "\"");
  }

  /// UNet or VAE: the block prefix is found among the inverted rules, the suffix renamed back.
  void blocks(const nn::StateDict& dict, const RuleTable& rules, const char* prefix, const char* component) {
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
  void clip(const nn::StateDict& dict, const std::string& configDir, const char* prefix) {
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
  void openClip(const nn::StateDict& dict, const TextConfig& tc, const char* prefix, const char* component,
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

nn::StateDict toOriginalLayout(const SingleFileCheckpoint& components, const std::string& configDir) {
  if (!isDir(configDir)) fail(codes::kModelNotFound, "config folder " + configDir + " does not exist");
  const CheckpointFamily family = components.family;
  const bool xl = family == CheckpointFamily::SDXL;
  const bool refiner = xl && components.textEncoder.empty();
  nn::StateDict out;
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
  const ModelIndex mi = readModelIndex(modelDir);
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
  const ModelIndex mi = readModelIndex(modelDir);
  auto load = [&](const char* name) {
    const std::string dir = join(modelDir, name);
    return loadComponentWeights(dir, weightsBaseName(dir), variant);
  };
  c.unet = load("unet");
  c.vae = load("vae");
  if (mi.component("text_encoder")) c.textEncoder = load("text_encoder");
  if (c.family == CheckpointFamily::SDXL) {
    if (!mi.component("text_encoder_2"))
      fail(codes::kBadConfig, modelDir + "/model_index.json: an SDXL pipeline needs text_encoder_2");
    c.textEncoder2 = load("text_encoder_2");
  }
  const nn::StateDict sd = toOriginalLayout(c, modelDir);
  std::vector<std::pair<std::string, at::Tensor>> tensors(sd.begin(), sd.end());
  writeSafetensors(outFile, tensors);
  SingleFileSummary s;
  s.path = outFile;
  s.family = c.family;
  s.refiner = c.family == CheckpointFamily::SDXL && c.textEncoder.empty();
  s.tensors = static_cast<int64_t>(tensors.size());
  return s;
}

}  // namespace sd::io
