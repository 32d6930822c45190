// diffusers v0.30.3 loaders/lora_pipeline.py (load_lora_weights: the file's keys routed to unet /
// text_encoder / text_encoder_2) and loaders/lora_conversion_utils.py
// (_convert_non_diffusers_lora_to_diffusers: kohya-ss / AUTOMATIC1111 names), resolved against the
// LoRA slots of nn::Weights stores the way peft v0.12.0 LoraLayer.update_layer checks shapes.
#include "loaders/lora.h"

#include <set>

#include "io/safetensors.h"
#include "util/error.h"
#include "util/strings.h"

namespace sd::loaders {

using nn::LoraDelta;
using nn::LoraSlot;
using nn::shapeString;
using nn::Weights;
using util::endsWith;
using util::startsWith;

namespace {

enum class Role { kDown, kUp, kAlpha };

struct SuffixRule {
  const char* suffix;
  Role role;
};

// Longest forms first where one suffix ends another.
const SuffixRule kSuffixes[] = {
    {".lora_down.weight", Role::kDown},              // kohya
    {".lora_up.weight", Role::kUp},
    {".lora_linear_layer.down.weight", Role::kDown},  // diffusers text encoder (LoRACompatible)
    {".lora_linear_layer.up.weight", Role::kUp},
    {".lora.down.weight", Role::kDown},               // diffusers UNet attention
    {".lora.up.weight", Role::kUp},
    {"_lora.down.weight", Role::kDown},               // old attention processors: processor.to_q_lora
    {"_lora.up.weight", Role::kUp},
    {".lora_A.weight", Role::kDown},                  // PEFT
    {".lora_B.weight", Role::kUp},
    {".alpha", Role::kAlpha},
};

struct Parsed {
  std::string component, module;
  bool kohya = false;
  Role role = Role::kDown;
};

// Splits a key into component, module and role; false when it is no LoRA key we know.
bool parseKey(const std::string& key, Parsed& out) {
  std::string stem;
  bool found = false;
  for (const SuffixRule& r : kSuffixes) {
    if (endsWith(key, r.suffix)) {
      stem = key.substr(0, key.size() - std::string(r.suffix).size());
      out.role = r.role;
      found = true;
      break;
    }
  }
  if (!found) {
    // PEFT with an adapter name: <module>.lora_A.<adapter>.weight
    for (const char* mid : {".lora_A.", ".lora_B."}) {
      const size_t p = key.rfind(mid);
      if (p != std::string::npos && endsWith(key, ".weight") && key.find('.', p + 8) == key.size() - 7) {
        stem = key.substr(0, p);
        out.role = mid[6] == 'A' ? Role::kDown : Role::kUp;
        found = true;
        break;
      }
    }
  }
  if (!found || stem.empty()) return false;
  struct Prefix {
    const char* prefix;
    const char* component;
    bool kohya;
  };
  static const Prefix kPrefixes[] = {
      {"lora_unet_", "unet", true},          {"lora_te1_", "text_encoder", true},
      {"lora_te2_", "text_encoder_2", true}, {"lora_te_", "text_encoder", true},
      {"unet.", "unet", false},              {"text_encoder_2.", "text_encoder_2", false},
      {"text_encoder.", "text_encoder", false},
  };
  out.component = "unet";
  out.kohya = false;
  out.module = stem;
  for (const Prefix& p : kPrefixes) {
    if (startsWith(stem, p.prefix)) {
      out.component = p.component;
      out.kohya = p.kohya;
      out.module = stem.substr(std::string(p.prefix).size());
      break;
    }
  }
  if (!out.kohya) {
    // old attention processors: <attn>.processor.to_{q,k,v,out}
    const size_t p = out.module.rfind(".processor.to_");
    if (p != std::string::npos) {
      const std::string which = out.module.substr(p + 11);  // "to_q" …
      out.module = out.module.substr(0, p) + "." + (which == "to_out" ? std::string("to_out.0") : which);
    }
  }
  return !out.module.empty();
}

std::string kohyaName(const std::string& module) {
  std::string s = module;
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

// The LoRA tensors in the layout the slot needs (reshaping 1×1 ⇄ 2-d forms), or undefined on mismatch.
at::Tensor fitDown(const LoraSlot& slot, at::Tensor t, int64_t rank) {
  if (slot.kernel == 0) {
    if (t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) t = t.flatten(1);
    return t.dim() == 2 && t.size(0) == rank && t.size(1) == slot.in ? t : at::Tensor();
  }
  if (t.dim() == 2 && slot.kernel == 1) t = t.unsqueeze(2).unsqueeze(3);
  return t.dim() == 4 && t.size(0) == rank && t.size(1) == slot.in && t.size(2) == slot.kernel &&
                 t.size(3) == slot.kernel
             ? t
             : at::Tensor();
}

at::Tensor fitUp(const LoraSlot& slot, at::Tensor t, int64_t rank) {
  if (slot.kernel == 0) {
    if (t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) t = t.flatten(1);
    return t.dim() == 2 && t.size(0) == slot.out && t.size(1) == rank ? t : at::Tensor();
  }
  if (t.dim() == 2) t = t.unsqueeze(2).unsqueeze(3);
  return t.dim() == 4 && t.size(0) == slot.out && t.size(1) == rank && t.size(2) == 1 && t.size(3) == 1 ? t
                                                                                                       : at::Tensor();
}

std::vector<int64_t> expectedDown(const LoraSlot& slot, int64_t rank) {
  if (slot.kernel == 0) return {rank, slot.in};
  return {rank, slot.in, slot.kernel, slot.kernel};
}
std::vector<int64_t> expectedUp(const LoraSlot& slot, int64_t rank) {
  if (slot.kernel == 0) return {slot.out, rank};
  return {slot.out, rank, 1, 1};
}

std::string describeSlot(const LoraSlot& slot) {
  return slot.kernel == 0 ? "Linear(" + std::to_string(slot.in) + " → " + std::to_string(slot.out) + ")"
                          : "Conv2d(" + std::to_string(slot.in) + " → " + std::to_string(slot.out) + ", " +
                                std::to_string(slot.kernel) + "×" + std::to_string(slot.kernel) + ")";
}

bool isComputeFloat(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble; }

}  // namespace

LoraFile readLoraFile(const std::string& path) {
  auto file = io::SafetensorsFile::open(path);
  LoraFile out;
  out.path = path;
  struct Partial {
    Parsed where;
    std::string downKey, upKey;
    at::Tensor down, up, alpha;
  };
  std::map<std::string, Partial> byStem;  // component + '\n' + module
  std::vector<std::string> unknown;
  for (const io::TensorInfo& info : file->header().tensors) {
    Parsed p;
    if (!parseKey(info.name, p)) {
      unknown.push_back(info.name);
      continue;
    }
    Partial& part = byStem[p.component + "\n" + p.module];
    part.where = p;
    at::Tensor t = file->tensor(info);
    if (!isComputeFloat(t.scalar_type()))
      fail(codes::kBadCheckpoint, path + ": LoRA tensor \"" + info.name + "\" has dtype " +
                                      std::string(c10::toString(t.scalar_type())) + " (expected a floating-point tensor)");
    switch (p.role) {
      case Role::kDown: part.down = t, part.downKey = info.name; break;
      case Role::kUp: part.up = t, part.upKey = info.name; break;
      case Role::kAlpha: part.alpha = t; break;
    }
  }
  if (!unknown.empty())
    fail(codes::kBadCheckpoint, path + ": " + std::to_string(unknown.size()) +
                                    " keys are not LoRA weights this loader knows (lora_down/lora_up/alpha, "
                                    "lora.down/lora.up, lora_linear_layer.down/up, lora_A/lora_B; LoHa/LoKr/DoRA are "
                                    "not supported): " + util::listSome(unknown, 20));
  for (auto& [id, part] : byStem) {
    const std::string stem = (part.downKey.empty() ? part.upKey : part.downKey);
    if (!part.down.defined() || !part.up.defined())
      fail(codes::kBadCheckpoint, path + ": LoRA module \"" + part.where.module + "\" (" + part.where.component +
                                      ") has " + (part.down.defined() ? "a down matrix but no up matrix"
                                                                      : "no down matrix") +
                                      (stem.empty() ? "" : " (key \"" + stem + "\")"));
    if (part.down.dim() < 2 || part.up.dim() < 2 || part.down.size(0) != part.up.size(1))
      fail(codes::kBadCheckpoint, path + ": LoRA key \"" + part.downKey + "\" has shape " +
                                      shapeString(part.down.sizes()) + " but \"" + part.upKey + "\" has shape " +
                                      shapeString(part.up.sizes()) + " (the rank, down dim 0 and up dim 1, must agree)");
    LoraPair pair;
    pair.key = part.downKey;
    pair.module = part.where.module;
    pair.kohya = part.where.kohya;
    pair.down = part.down.to(at::kFloat);
    pair.up = part.up.to(at::kFloat);
    pair.downKey = part.downKey;
    pair.upKey = part.upKey;
    const int64_t rank = part.down.size(0);
    if (part.alpha.defined()) {
      if (part.alpha.numel() != 1)
        fail(codes::kBadCheckpoint, path + ": LoRA alpha of \"" + part.where.module + "\" has shape " +
                                        shapeString(part.alpha.sizes()) + " (expected a scalar)");
      pair.alpha = part.alpha.to(at::kDouble).reshape({}).item<double>();
    } else {
      pair.alpha = static_cast<double>(rank);
    }
    out.components[part.where.component].push_back(std::move(pair));
  }
  return out;
}

std::vector<std::pair<LoraSlot*, const LoraPair*>> resolveLora(Weights& store, const std::vector<LoraPair>& pairs,
                                                              std::vector<std::string>& unmatched) {
  std::map<std::string, LoraSlot*> byKohya;
  std::set<std::string> ambiguous;
  for (auto& [name, slot] : store.loraSlots()) {
    const std::string k = kohyaName(name);
    if (byKohya.count(k)) ambiguous.insert(k);
    byKohya[k] = slot.get();
  }
  std::vector<std::pair<LoraSlot*, const LoraPair*>> out;
  for (const LoraPair& p : pairs) {
    LoraSlot* slot = nullptr;
    if (p.kohya) {
      auto it = byKohya.find(p.module);
      if (it != byKohya.end() && !ambiguous.count(p.module)) slot = it->second;
    } else {
      auto it = store.loraSlots().find(p.module);
      if (it != store.loraSlots().end()) slot = it->second.get();
    }
    if (!slot) {
      unmatched.push_back(p.downKey);
      continue;
    }
    const int64_t rank = p.down.size(0);
    if (!fitDown(*slot, p.down, rank).defined())
      fail(codes::kBadCheckpoint, "LoRA key \"" + p.downKey + "\" has shape " + shapeString(p.down.sizes()) + " but " +
                                      store.component() + " module \"" + slot->module + "\" (" + describeSlot(*slot) +
                                      ") needs " + shapeString(expectedDown(*slot, rank)) +
                                      " (a LoRA made for another model?)");
    if (!fitUp(*slot, p.up, rank).defined())
      fail(codes::kBadCheckpoint, "LoRA key \"" + p.upKey + "\" has shape " + shapeString(p.up.sizes()) + " but " +
                                      store.component() + " module \"" + slot->module + "\" (" + describeSlot(*slot) +
                                      ") needs " + shapeString(expectedUp(*slot, rank)) +
                                      " (a LoRA made for another model?)");
    out.emplace_back(slot, &p);
  }
  return out;
}

void attachLora(Weights& store, LoraSlot& slot, const LoraPair& pair, const std::string& adapter, double weight) {
  const at::Tensor& w = store.tensors().at(slot.module + ".weight");
  const at::ScalarType dtype = isComputeFloat(w.scalar_type()) ? w.scalar_type() : at::kFloat;
  const int64_t rank = pair.down.size(0);
  LoraDelta d;
  d.adapter = adapter;
  d.down = fitDown(slot, pair.down, rank).to(w.device(), dtype).contiguous();
  d.up = fitUp(slot, pair.up, rank).to(w.device(), dtype).contiguous();
  d.alpha = pair.alpha;
  d.rank = rank;
  d.weight = weight;
  slot.deltas.push_back(std::move(d));
}

std::vector<LoraMatch> matchLoraFile(const LoraFile& file, const std::function<Weights*(const std::string&)>& store,
                                    const std::string& family) {
  // Keys for a component this pipeline lacks (text_encoder_2 keys on an SD 1.x/2.x model,
  // text_encoder keys on a refiner) and keys that match no module are listed together; with keys
  // of a missing component, shape mismatches elsewhere are not what the message should be about.
  std::vector<std::string> unmatched, absent;
  for (auto& [component, pairs] : file.components) {
    if (component != "vae" && store(component)) continue;
    absent.push_back(component);
    for (const auto& p : pairs) unmatched.push_back(p.downKey);
  }
  std::vector<LoraMatch> matches;
  for (auto& [component, pairs] : file.components) {
    if (component == "vae" || !store(component)) continue;
    try {
      matches.push_back({component, resolveLora(*store(component), pairs, unmatched)});
    } catch (const SdException&) {
      if (absent.empty()) throw;  // a shape mismatch (naming the key and both shapes)
    }
  }
  if (!unmatched.empty()) {
    std::string names;
    for (const auto& c : absent) names += (names.empty() ? "" : ", ") + c;
    fail(codes::kBadCheckpoint, file.path + ": " + std::to_string(unmatched.size()) +
                                    " LoRA keys match no Linear/Conv2d module of this " + family + " model" +
                                    (absent.empty() ? "" : " (it has no " + names + ")") +
                                    " (a LoRA for another model family?): " + util::listSome(unmatched, 20));
  }
  return matches;
}

}  // namespace sd::loaders
