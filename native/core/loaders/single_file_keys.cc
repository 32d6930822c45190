// diffusers v0.30.3 loaders/single_file_utils.py: the LDM ↔ diffusers block-prefix tables of
// convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint, built from the diffusers configs (never
// guessed from tensor shapes), and the per-block suffix renames both directions use.
#include "loaders/single_file_keys.h"

#include <set>
#include <vector>

#include "models/unet_2d_condition.h"
#include "util/error.h"
#include "util/strings.h"

namespace sd::loaders::detail {

using util::isFile;
using util::startsWith;

namespace {

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

}  // namespace

bool matchIndexed(const std::string& s, const std::string& prefix, int64_t& idx, std::string& rest) {
  if (!startsWith(s, prefix)) return false;
  size_t pos = prefix.size();
  if (!parseIndex(s, pos, idx) || pos >= s.size()) return false;
  rest = s.substr(pos + 1);
  return true;
}

bool isWeightOrBias(const std::string& s) { return s == "weight" || s == "bias"; }

bool splitParam(const std::string& s, std::string& module, std::string& param) {
  size_t dot = s.rfind('.');
  if (dot == std::string::npos) return false;
  module = s.substr(0, dot);
  param = s.substr(dot + 1);
  return isWeightOrBias(param);
}

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

namespace {
bool validTransformerBlockSuffix(const std::string& s) {
  // BasicTransformerBlock: norm1..3, attn1/attn2 (to_q, to_k, to_v, to_out.0), ff.net.0.proj, ff.net.2
  static const std::set<std::string> modules = {
      "norm1", "norm2", "norm3", "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
      "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2"};
  std::string module, param;
  return splitParam(s, module, param) && modules.count(module);
}

}  // namespace

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

ConfigReader componentConfig(const std::string& configDir, const std::string& component) {
  const std::string p = util::joinPath(util::joinPath(configDir, component), "config.json");
  if (!isFile(p))
    fail(codes::kModelNotFound, p + " not found: the config folder of a single-file checkpoint must be a diffusers "
                                    "folder with unet/, vae/ and text_encoder/ (SDXL: and text_encoder_2/) config.json");
  return ConfigReader::fromFile(p);
}

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

}  // namespace sd::loaders::detail
