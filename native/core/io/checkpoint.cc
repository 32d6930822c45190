// Diffusers folder reading after diffusers v0.30.3 pipelines/pipeline_utils.py (model_index.json,
// weight file and variant selection) and models/model_loading_utils.py (sharded index). Pickle
// files are refused here; the original single-file layout is mapped in loaders/single_file*.cc.
#include "io/checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>

#include "util/error.h"
#include "util/json.h"
#include "util/strings.h"

namespace sd::io {

namespace fs = std::filesystem;

using util::endsWith;
using util::isDir;
using util::isFile;
using util::listSome;
using util::startsWith;

namespace {

std::string join(const std::string& a, const std::string& b) { return util::joinPath(a, b); }

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

std::shared_ptr<SafetensorsFile> openWeights(const std::string& path) {
  if (isFile(path) && looksLikePickle(path)) fail(codes::kBadCheckpoint, pickleRefusalMessage(path));
  return SafetensorsFile::open(path);
}

}  // namespace

bool isPickleName(const std::string& name) {
  const std::string l = util::lower(name);
  return endsWith(l, ".bin") || endsWith(l, ".ckpt") || endsWith(l, ".pt") || endsWith(l, ".pth");
}

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
  util::refuseSpecialFile(cfg, codes::kBadConfig);
  if (!isFile(cfg)) fail(codes::kModelNotFound, cfg + " not found");
  Json j = Json::parseFile(cfg);
  // diffusers configs carry "_class_name"; transformers configs carry "architectures"/"model_type".
  const bool diffusers = j.isObject() && j.has("_class_name");
  return diffusers ? "diffusion_pytorch_model" : "model";
}

namespace {

void addAll(StateDict& out, const SafetensorsFile& f, const std::string& where) {
  for (const auto& info : f.header().tensors) {
    if (!out.emplace(info.name, f.tensor(info)).second)
      fail(codes::kBadCheckpoint, where + ": tensor \"" + info.name + "\" appears in more than one shard");
  }
}

StateDict loadSharded(const std::string& dir, const std::string& indexPath) {
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
  StateDict out;
  for (const auto& [shard, names] : byShard) {
    const std::string p = join(dir, shard);
    util::refuseSpecialFile(p, codes::kBadCheckpoint, p + " (a shard listed in " + indexPath + ")");
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

StateDict loadComponentWeights(const std::string& componentDir, const std::string& baseName,
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
    StateDict out;
    addAll(out, *f, singlePath);
    return out;
  }
  if (isFile(indexPath)) {
    if (source) *source = indexPath;
    return loadSharded(componentDir, indexPath);
  }

  // A FIFO, socket or device under a weights name is refused, never opened (a FIFO blocks).
  for (const std::string& p : {singlePath, indexPath}) util::refuseSpecialFile(p, codes::kBadCheckpoint);

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
  // Only variant weights (e.g. an fp16-only download): name the variant option that loads them.
  std::string variants;
  for (const auto& f : files) {
    const std::string prefix = baseName + ".", suffix = ".safetensors";
    if (f.size() > prefix.size() + suffix.size() && startsWith(f, prefix) && endsWith(f, suffix)) {
      const std::string v = f.substr(prefix.size(), f.size() - prefix.size() - suffix.size());
      if (v.find('.') == std::string::npos) variants += (variants.empty() ? "" : ", ") + ("variant: '" + v + "'");
    }
  }
  fail(codes::kModelNotFound, "no weights in " + componentDir + ": looked for " + single + " and " + index +
                                  "; files present: " + listSome(files) +
                                  (variants.empty() ? "" : " (to load the variant weights there, pass " + variants + ")"));
}

}  // namespace sd::io
