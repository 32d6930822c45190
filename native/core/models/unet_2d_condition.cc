// diffusers models/unets/unet_2d_condition.py UNet2DConditionModel (v0.30.3): __init__ (config →
// modules), forward (time embedding, SDXL add_embedding, down/mid/up with skips, output head).
#include "models/unet_2d_condition.h"

#include "models/model_loading.h"
#include "io/checkpoint.h"
#include "runtime/dtype_support.h"

#include <c10/util/Exception.h>

#include <filesystem>
#include <mutex>
#include <set>
#include <utility>

#include "config/config_reader.h"
#include "io/safetensors.h"
#include "runtime/cancellation.h"
#include "util/error.h"

namespace sd::models {

namespace fs = std::filesystem;

// ==== config ==================================================================================

std::vector<int64_t> PerLayerCount::expand(int64_t numLayers, const std::string& what) const {
  if (uniform) return std::vector<int64_t>(static_cast<size_t>(numLayers), values.at(0));
  if (static_cast<int64_t>(values.size()) != numLayers)
    fail(codes::kBadConfig, what + " has " + std::to_string(values.size()) + " entries for a block of " +
                                std::to_string(numLayers) + " layers");
  return values;
}

namespace {

[[noreturn]] void unsupported(const std::string& where, const std::string& field, const std::string& value,
                              const std::string& supported) {
  fail(codes::kUnsupportedModel, where + ": UNet2DConditionModel field \"" + field + "\" = " + value +
                                     " is not supported (sd-native runs " + supported + ")");
}

const Json* member(const Json& j, const std::string& key) {
  const Json* v = j.find(key);
  return (v && !v->isNull()) ? v : nullptr;
}

// A non-negative integer JSON value, or E_BAD_CONFIG.
int64_t asCount(const Json& v, const ConfigReader& r, const std::string& key) {
  if (!v.isNumber() || !v.isInteger() || v.integer() < 0) r.error(key, "must hold non-negative integers");
  if (v.integer() > ConfigReader::kMaxLayers)
    r.error(key, "must hold integers in [0, " + std::to_string(ConfigReader::kMaxLayers) + "], got " +
                     std::to_string(v.integer()));
  return v.integer();
}

// transformer_layers_per_block / reverse_transformer_layers_per_block: int | [int | [int]].
std::vector<PerLayerCount> readPerLayer(const ConfigReader& r, const std::string& key, size_t n, bool* nested) {
  const Json* v = member(r.json(), key);
  std::vector<PerLayerCount> out;
  if (!v) return out;
  if (v->isNumber()) {
    PerLayerCount c{{asCount(*v, r, key)}, true};
    return std::vector<PerLayerCount>(n, c);
  }
  if (!v->isArray()) r.error(key, "must be an integer or a list");
  if (v->array().size() != n)
    r.error(key, "has " + std::to_string(v->array().size()) + " entries, expected " + std::to_string(n) +
                     " (one per block)");
  for (const Json& e : v->array()) {
    if (e.isArray()) {
      PerLayerCount c;
      c.uniform = false;
      if (e.array().size() > static_cast<size_t>(ConfigReader::kMaxLayers))
        r.error(key, "has a list of more than " + std::to_string(ConfigReader::kMaxLayers) + " layers");
      for (const Json& x : e.array()) c.values.push_back(asCount(x, r, key));
      if (nested) *nested = true;
      out.push_back(c);
    } else {
      out.push_back(PerLayerCount{{asCount(e, r, key)}, true});
    }
  }
  return out;
}

// A ControlNet residual fits a skip when it has the skip's shape, or [B, C, 1, 1] (diffusers'
// global_pool_conditions residuals, broadcast over the skip as torch's `+` does).
bool fitsSkip(const at::Tensor& r, const at::Tensor& skip) {
  if (!r.defined() || r.dim() != 4 || r.size(0) != skip.size(0) || r.size(1) != skip.size(1)) return false;
  return (r.size(2) == skip.size(2) && r.size(3) == skip.size(3)) || (r.size(2) == 1 && r.size(3) == 1);
}

std::string stripUNetRes(const std::string& t) { return t.rfind("UNetRes", 0) == 0 ? t.substr(7) : t; }

}  // namespace

UNet2DConditionConfig UNet2DConditionConfig::fromFile(const std::string& path) {
  ConfigReader r = ConfigReader::fromFile(path);
  return fromJson(r.json(), path);
}

UNet2DConditionConfig UNet2DConditionConfig::fromJson(const Json& json, const std::string& where) {
  if (!json.isObject()) fail(codes::kBadConfig, where + ": expected a JSON object");
  ConfigReader r(json, where);
  UNet2DConditionConfig c;
  const std::string supported = "the SD 1.x / 2.x / SDXL UNet configurations";

  // ---- fields whose non-default values select features sd-native does not run ----
  if (r.has("num_attention_heads"))  // diffusers 0.30.3 itself refuses it (issue #2011)
    unsupported(where, "num_attention_heads", member(json, "num_attention_heads")->dump(),
                "configs that give heads through attention_head_dim, as diffusers 0.30.3 requires");
  for (const char* key : {"class_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type",
                          "time_cond_proj_dim"})
    if (r.has(key)) unsupported(where, key, member(json, key)->dump(), supported + ", where it is null");
  for (const char* key : {"dual_cross_attention", "class_embeddings_concat", "resnet_skip_time_act"})
    if (r.getBool(key, false)) unsupported(where, key, "true", supported + ", where it is false");
  if (const Json* v = member(json, "only_cross_attention")) {
    bool any = false;
    if (v->isBool()) any = v->boolean();
    else if (v->isArray()) for (const Json& e : v->array()) any = any || (e.isBool() && e.boolean());
    else r.error("only_cross_attention", "must be a boolean or a list of booleans");
    if (any) unsupported(where, "only_cross_attention", v->dump(), supported + ", where it is false");
  }
  auto requireString = [&](const char* key, const std::string& dflt, std::initializer_list<const char*> ok) {
    std::string v = r.getString(key, dflt);
    for (const char* o : ok)
      if (v == o) return v;
    unsupported(where, key, "\"" + v + "\"", supported + ", where it is \"" + dflt + "\"");
  };
  requireString("time_embedding_type", "positional", {"positional"});
  requireString("resnet_time_scale_shift", "default", {"default"});
  requireString("attention_type", "default", {"default"});
  c.actFn = requireString("act_fn", "silu", {"silu", "swish"});
  for (const char* key : {"resnet_out_scale_factor", "mid_block_scale_factor"}) {
    double v = r.getDouble(key, 1.0);
    if (v != 1.0) unsupported(where, key, member(json, key)->dump(), supported + ", where it is 1");
  }
  if (json.has("norm_num_groups") && !r.has("norm_num_groups"))
    unsupported(where, "norm_num_groups", "null", supported + ", which use group norm");

  // ---- shape of the network ----
  // Ranges: sizes are capped at ConfigReader::kMax* (far above released models) so a hostile
  // config fails here, before the layers allocate or loop over what it claims.
  constexpr int64_t kMaxCh = ConfigReader::kMaxChannels;
  c.sampleSize = (member(json, "sample_size") && member(json, "sample_size")->isNumber())
                     ? r.getIntIn("sample_size", 0, 0, ConfigReader::kMaxPositions)
                     : 0;
  c.inChannels = r.getIntIn("in_channels", 4, 1, kMaxCh);
  c.outChannels = r.getIntIn("out_channels", 4, 1, kMaxCh);
  c.centerInputSample = r.getBool("center_input_sample", false);
  c.flipSinToCos = r.getBool("flip_sin_to_cos", true);
  c.freqShift = r.getDoubleIn("freq_shift", 0, -1e6, 1e6);
  if (r.has("down_block_types")) c.downBlockTypes = r.requireStringList("down_block_types");
  if (r.has("up_block_types")) c.upBlockTypes = r.requireStringList("up_block_types");
  if (json.has("mid_block_type"))
    c.midBlockType = r.has("mid_block_type") ? r.requireString("mid_block_type") : "";
  if (r.has("block_out_channels")) c.blockOutChannels = r.requireIntList("block_out_channels");
  const size_t n = c.downBlockTypes.size();
  if (n == 0) r.error("down_block_types", "must not be empty");
  if (n > 16) r.error("down_block_types", "has more than 16 entries");
  if (c.upBlockTypes.size() != n)
    r.error("up_block_types", "has " + std::to_string(c.upBlockTypes.size()) + " entries but down_block_types has " +
                                  std::to_string(n));
  if (c.blockOutChannels.size() != n)
    r.error("block_out_channels", "has " + std::to_string(c.blockOutChannels.size()) +
                                      " entries but down_block_types has " + std::to_string(n));
  for (auto& t : c.downBlockTypes) {
    t = stripUNetRes(t);
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D")
      unsupported(where, "down_block_types", "[... \"" + t + "\" ...]", "CrossAttnDownBlock2D and DownBlock2D");
  }
  for (auto& t : c.upBlockTypes) {
    t = stripUNetRes(t);
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D")
      unsupported(where, "up_block_types", "[... \"" + t + "\" ...]", "CrossAttnUpBlock2D and UpBlock2D");
  }
  if (!c.midBlockType.empty() && c.midBlockType != "UNetMidBlock2DCrossAttn")
    unsupported(where, "mid_block_type", "\"" + c.midBlockType + "\"", "UNetMidBlock2DCrossAttn or null");
  for (int64_t ch : c.blockOutChannels)
    if (ch <= 0) r.error("block_out_channels", "must hold positive integers");
  r.checkIn("block_out_channels", c.blockOutChannels, 1, kMaxCh);

  c.layersPerBlock = r.intOrList("layers_per_block", n, 2);
  r.checkIn("layers_per_block", c.layersPerBlock, 1, ConfigReader::kMaxLayers);
  c.downsamplePadding = r.getIntIn("downsample_padding", 1, 0, ConfigReader::kMaxKernel);
  // GroupNorm splits every normalised tensor into norm_num_groups groups: conv_in's output,
  // each block's channels and the up blocks' concatenations of them, so it must divide them all.
  c.normNumGroups = r.getIntIn("norm_num_groups", 32, 1, kMaxCh);
  for (int64_t ch : c.blockOutChannels)
    if (ch % c.normNumGroups != 0)
      r.error("norm_num_groups", "(" + std::to_string(c.normNumGroups) + ") must divide every block_out_channels entry (" +
                                     std::to_string(ch) + " does not divide evenly)");
  c.normEps = r.getDoubleIn("norm_eps", 1e-5, 0, 1);
  c.crossAttentionDim = r.intOrList("cross_attention_dim", n, 1280);
  r.checkIn("cross_attention_dim", c.crossAttentionDim, 1, kMaxCh);
  c.numAttentionHeads = r.intOrList("attention_head_dim", n, 8);
  for (int64_t h : c.numAttentionHeads)
    if (h <= 0) r.error("attention_head_dim", "must hold positive integers");
  r.checkIn("attention_head_dim", c.numAttentionHeads, 1, kMaxCh);
  bool nested = false;
  c.transformerLayersPerBlock = readPerLayer(r, "transformer_layers_per_block", n, &nested);
  if (c.transformerLayersPerBlock.empty()) c.transformerLayersPerBlock.assign(n, PerLayerCount{{1}, true});
  c.reverseTransformerLayersPerBlock = readPerLayer(r, "reverse_transformer_layers_per_block", n, nullptr);
  if (nested && c.reverseTransformerLayersPerBlock.empty())
    r.error("reverse_transformer_layers_per_block",
            "is required when transformer_layers_per_block holds lists (an asymmetric UNet)");
  c.useLinearProjection = r.getBool("use_linear_projection", false);
  c.upcastAttention = r.getBool("upcast_attention", false);

  // ---- time embedding ----
  c.timeEmbeddingDim = r.getIntIn("time_embedding_dim", 0, 0, kMaxCh);  // 0 / null: 4 × block_out_channels[0]
  c.timeEmbeddingActFn = r.getString("time_embedding_act_fn", "");
  c.timestepPostAct = r.getString("timestep_post_act", "");
  for (const char* key : {"time_embedding_act_fn", "timestep_post_act"}) {
    const std::string name = r.getString(key, "");
    if (name.empty()) continue;
    try {
      (void)nn::activation(name, at::zeros({1}));
    } catch (const SdException&) {
      unsupported(where, key, "\"" + name + "\"", "gelu, quick_gelu, gelu_new, silu, swish, relu or null");
    }
  }
  c.convInKernel = r.getInt("conv_in_kernel", 3);
  c.convOutKernel = r.getInt("conv_out_kernel", 3);
  for (const char* key : {"conv_in_kernel", "conv_out_kernel"}) {
    int64_t k = r.getInt(key, 3);
    if (k <= 0 || k % 2 == 0) r.error(key, "must be a positive odd integer");
    r.checkIn(key, k, 1, ConfigReader::kMaxKernel);
  }

  // ---- SDXL micro-conditioning ----
  if (r.has("addition_embed_type")) {
    c.additionEmbedType = r.requireString("addition_embed_type");
    if (c.additionEmbedType != "text_time")
      unsupported(where, "addition_embed_type", "\"" + c.additionEmbedType + "\"", "null or \"text_time\" (SDXL)");
    c.additionTimeEmbedDim = r.requireInt("addition_time_embed_dim");
    c.projectionClassEmbeddingsInputDim = r.requireInt("projection_class_embeddings_input_dim");
    if (c.additionTimeEmbedDim <= 0) r.error("addition_time_embed_dim", "must be a positive integer");
    if (c.projectionClassEmbeddingsInputDim <= 0)
      r.error("projection_class_embeddings_input_dim", "must be a positive integer");
    r.checkIn("addition_time_embed_dim", c.additionTimeEmbedDim, 1, kMaxCh);
    r.checkIn("projection_class_embeddings_input_dim", c.projectionClassEmbeddingsInputDim, 1, kMaxCh * 16);
  }
  return c;
}

// ==== model ===================================================================================

at::Tensor addedTimeEmbedding(const UNet2DConditionConfig& c, const nn::Timesteps& addTimeProj,
                              const nn::TimestepEmbedding& addEmbedding, const UNetAddedCond* added, int64_t batch,
                              at::Device device, at::ScalarType dtype, const std::string& who) {
  auto invalid = [&](const std::string& msg) { fail(codes::kInvalidArgument, who + ".forward: " + msg); };
  if (!added || !added->textEmbeds.defined() || !added->timeIds.defined())
    invalid("this model has addition_embed_type \"text_time\" (SDXL) and needs text_embeds and time_ids");
  const at::Tensor& te = added->textEmbeds;
  const at::Tensor& ti = added->timeIds;
  if (te.dim() != 2 || te.size(0) != batch || ti.dim() != 2 || ti.size(0) != batch ||
      te.size(1) + ti.size(1) * c.additionTimeEmbedDim != c.projectionClassEmbeddingsInputDim)
    invalid("text_embeds " + nn::shapeString(te.sizes()) + " and time_ids " + nn::shapeString(ti.sizes()) +
            " do not fit: need [B, k] and [B, n] with k + n·" + std::to_string(c.additionTimeEmbedDim) + " = " +
            std::to_string(c.projectionClassEmbeddingsInputDim) + " (B = " + std::to_string(batch) + ")");
  at::Tensor timeEmbeds = addTimeProj(ti.to(device).flatten()).reshape({batch, -1});  // [B, n·addDim] float32
  at::Tensor addEmbeds = at::cat({te.to(device, at::kFloat), timeEmbeds}, -1).to(dtype);  // [B, proj_in]
  return addEmbedding(addEmbeds);                                                      // [B, temb]
}

nn::CrossAttnParams crossAttnParams(const UNet2DConditionConfig& c, size_t i, std::vector<int64_t> transformerLayers,
                                    const std::shared_ptr<nn::AttentionOptions>& options) {
  nn::CrossAttnParams p;
  p.heads = c.numAttentionHeads[i];
  p.crossAttentionDim = c.crossAttentionDim[i];
  p.transformerLayers = std::move(transformerLayers);
  p.useLinearProjection = c.useLinearProjection;
  p.upcastAttention = c.upcastAttention;
  p.options = options;
  return p;
}

std::vector<std::unique_ptr<nn::UNetDownBlock>> buildDownBlocks(const nn::Scope& root, const UNet2DConditionConfig& c,
                                                                const nn::ResnetParams& resnet,
                                                                const std::shared_ptr<nn::AttentionOptions>& options,
                                                                const std::string& where) {
  const std::vector<int64_t>& ch = c.blockOutChannels;
  const size_t n = ch.size();
  std::vector<std::unique_ptr<nn::UNetDownBlock>> blocks;
  int64_t outCh = ch[0];
  for (size_t i = 0; i < n; ++i) {
    const int64_t inCh = outCh;
    outCh = ch[i];
    const bool isFinal = i == n - 1;
    nn::Scope s = root.sub("down_blocks", static_cast<int64_t>(i));
    const int64_t layers = c.layersPerBlock[i];
    if (c.downBlockTypes[i] == "CrossAttnDownBlock2D") {
      auto tl = c.transformerLayersPerBlock[i].expand(layers, where + ": transformer_layers_per_block[" +
                                                                  std::to_string(i) + "]");
      blocks.push_back(std::make_unique<nn::CrossAttnDownBlock2D>(s, inCh, outCh, layers, resnet,
                                                                  crossAttnParams(c, i, tl, options), !isFinal,
                                                                  c.downsamplePadding));
    } else {
      blocks.push_back(std::make_unique<nn::DownBlock2D>(s, inCh, outCh, layers, resnet, !isFinal, c.downsamplePadding));
    }
  }
  return blocks;
}

std::unique_ptr<nn::UNetMidBlock2DCrossAttn> buildMidBlock(const nn::Scope& root, const UNet2DConditionConfig& c,
                                                           const nn::ResnetParams& resnet,
                                                           const std::shared_ptr<nn::AttentionOptions>& options,
                                                           const std::string& where) {
  const size_t n = c.blockOutChannels.size();
  auto tl = c.transformerLayersPerBlock[n - 1].expand(1, where + ": transformer_layers_per_block[-1]");
  return std::make_unique<nn::UNetMidBlock2DCrossAttn>(root.sub("mid_block"), c.blockOutChannels[n - 1], resnet,
                                                       crossAttnParams(c, n - 1, tl, options), 1);
}

UNet2DConditionModel::UNet2DConditionModel(UNet2DConditionConfig config, nn::StateDict tensors, std::string component)
    : config_(std::move(config)),
      weights_(std::make_unique<nn::Weights>(std::move(tensors), std::move(component))),
      attentionOptions_(std::make_shared<nn::AttentionOptions>()) {
  const auto& c = config_;
  nn::Scope root(*weights_);
  const size_t n = c.blockOutChannels.size();
  const std::vector<int64_t>& ch = c.blockOutChannels;
  const int64_t tembDim = c.timeEmbedDim();

  // conv_in (padding (k-1)/2), time_proj (no weights) and time_embedding.
  convIn_ = nn::Conv2d(root.sub("conv_in"), c.inChannels, ch[0], c.convInKernel, 1, (c.convInKernel - 1) / 2);
  timeProj_ = nn::Timesteps(ch[0], c.flipSinToCos, c.freqShift);
  timeEmbedding_ = nn::TimestepEmbedding(root.sub("time_embedding"), ch[0], tembDim, c.actFn, c.timestepPostAct);

  // SDXL: add_time_proj (no weights) + add_embedding.
  if (c.additionEmbedType == "text_time") {
    hasAddEmbedding_ = true;
    addTimeProj_ = nn::Timesteps(c.additionTimeEmbedDim, c.flipSinToCos, c.freqShift);
    addEmbedding_ = nn::TimestepEmbedding(root.sub("add_embedding"), c.projectionClassEmbeddingsInputDim, tembDim);
  }

  const nn::ResnetParams resnet{tembDim, c.normNumGroups, c.normEps};
  const std::string& where = weights_->component();
  auto attnParams = [&](size_t i, std::vector<int64_t> layers) {
    return crossAttnParams(c, i, std::move(layers), attentionOptions_);
  };

  downBlocks_ = buildDownBlocks(root, c, resnet, attentionOptions_, where);
  if (!c.midBlockType.empty()) midBlock_ = buildMidBlock(root, c, resnet, attentionOptions_, where);

  // up: reversed channels, heads, layers (+1), cross dims, transformer layers
  int64_t outCh = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const size_t r = n - 1 - i;  // index into the down-block lists
    const bool isFinal = i == n - 1;
    const int64_t prevOut = outCh;
    outCh = ch[r];
    const int64_t inCh = ch[std::max<int64_t>(static_cast<int64_t>(r) - 1, 0)];  // reversed[min(i+1, n-1)]
    const int64_t layers = c.layersPerBlock[r] + 1;
    if (!isFinal) ++numUpsamplers_;
    nn::Scope s = root.sub("up_blocks", static_cast<int64_t>(i));
    if (c.upBlockTypes[i] == "CrossAttnUpBlock2D") {
      const PerLayerCount& plc =
          c.reverseTransformerLayersPerBlock.empty() ? c.transformerLayersPerBlock[r] : c.reverseTransformerLayersPerBlock[i];
      auto tl = plc.expand(layers, where + ": transformer layers of up_blocks." + std::to_string(i));
      upBlocks_.push_back(std::make_unique<nn::CrossAttnUpBlock2D>(s, inCh, outCh, prevOut, layers, resnet,
                                                                   attnParams(r, tl), !isFinal));
    } else {
      upBlocks_.push_back(std::make_unique<nn::UpBlock2D>(s, inCh, outCh, prevOut, layers, resnet, !isFinal));
    }
  }

  // out
  convNormOut_ = nn::GroupNorm(root.sub("conv_norm_out"), c.normNumGroups, ch[0], c.normEps);
  convOut_ = nn::Conv2d(root.sub("conv_out"), ch[0], c.outChannels, c.convOutKernel, 1, (c.convOutKernel - 1) / 2);

  weights_->finish();
  device_ = convIn_.weight->device();
  dtype_ = convIn_.weight->scalar_type();
}

void UNet2DConditionModel::to(at::Device device, at::ScalarType dtype) {
  runtime::checkDtypeSupported(device, dtype, weights_->component());
  weights_->to(device, dtype);
  device_ = device;
  dtype_ = dtype;
}

// ---- loading ---------------------------------------------------------------------------------


std::unique_ptr<UNet2DConditionModel> UNet2DConditionModel::fromPretrained(const std::string& componentDir,
                                                                           at::Device device, at::ScalarType dtype,
                                                                           const std::string& variant) {
  return loadComponent<std::unique_ptr<UNet2DConditionModel>, UNet2DConditionConfig>(componentDir, "unet", "diffusion_pytorch_model", device, dtype, variant);
}

// ---- forward ---------------------------------------------------------------------------------

at::Tensor UNet2DConditionModel::forward(const at::Tensor& sampleIn, const at::Tensor& timestep,
                                         const at::Tensor& encoderHiddenStatesIn, const UNetAddedCond* added,
                                         const UNetControlResiduals* control) const {
  const auto& c = config_;
  auto invalid = [](const std::string& msg) { fail(codes::kInvalidArgument, "UNet2DConditionModel.forward: " + msg); };

  // 0. check and place the inputs
  if (!sampleIn.defined() || sampleIn.dim() != 4 || sampleIn.size(1) != c.inChannels || sampleIn.size(0) < 1 ||
      sampleIn.size(2) < 1 || sampleIn.size(3) < 1)
    invalid("sample must be [B, " + std::to_string(c.inChannels) + ", h, w] with B, h, w >= 1, got " +
            (sampleIn.defined() ? nn::shapeString(sampleIn.sizes()) : std::string("nothing")));
  if (!at::isFloatingType(sampleIn.scalar_type())) invalid("sample must be a floating-point tensor");
  const int64_t batch = sampleIn.size(0);
  if (!encoderHiddenStatesIn.defined() || encoderHiddenStatesIn.dim() != 3 ||
      encoderHiddenStatesIn.size(0) != batch || encoderHiddenStatesIn.size(1) < 1 ||
      !at::isFloatingType(encoderHiddenStatesIn.scalar_type()))
    invalid("encoder_hidden_states must be a float [" + std::to_string(batch) + ", M, dim] tensor, got " +
            (encoderHiddenStatesIn.defined() ? nn::shapeString(encoderHiddenStatesIn.sizes()) : std::string("nothing")));
  const size_t n = c.crossAttentionDim.size();
  for (size_t i = 0; i < n; ++i) {  // the cross-attention widths in use: down i, up n-1-i, mid n-1
    const bool used = c.downBlockTypes[i] == "CrossAttnDownBlock2D" || c.upBlockTypes[n - 1 - i] == "CrossAttnUpBlock2D" ||
                      (i == n - 1 && midBlock_);
    if (used && encoderHiddenStatesIn.size(2) != c.crossAttentionDim[i])
      invalid("encoder_hidden_states has " + std::to_string(encoderHiddenStatesIn.size(2)) +
              " features but cross_attention_dim is " + std::to_string(c.crossAttentionDim[i]));
  }
  if (!timestep.defined() || timestep.dim() > 1 || (timestep.numel() != 1 && timestep.numel() != batch))
    invalid("timestep must be 0-d, [1] or [" + std::to_string(batch) + "], got " +
            (timestep.defined() ? nn::shapeString(timestep.sizes()) : std::string("nothing")));
  if (timestep.scalar_type() == at::kBool || timestep.is_complex()) invalid("timestep must be a real number");

  at::Tensor sample = sampleIn.to(device_, dtype_);                         // [B, in, h, w]
  at::Tensor context = encoderHiddenStatesIn.to(device_, dtype_);           // [B, M, D]

  // By default samples have to be at least a multiple of the overall upsampling factor; other
  // sizes forward each skip tensor's size to the upsampler (diffusers forward_upsample_size).
  const int64_t factor = overallUpFactor();
  const bool forwardUpsampleSize = sample.size(2) % factor != 0 || sample.size(3) % factor != 0;

  // 1. center input (if necessary)
  if (c.centerInputSample) sample = 2 * sample - 1.0;

  // 2. time
  at::Tensor t = timestep.to(device_).reshape({-1}).expand({batch});        // [B]
  at::Tensor tEmb = timeProj_(t).to(dtype_);                                // [B, ch0], float32 features
  at::Tensor emb = timeEmbedding_(tEmb);                                    // [B, temb]

  // 3. SDXL micro-conditioning: add_embedding([text_embeds | sinusoid(time_ids)])
  if (hasAddEmbedding_)
    emb = emb + addedTimeEmbedding(c, addTimeProj_, addEmbedding_, added, batch, device_, dtype_, "UNet2DConditionModel");
  if (!c.timeEmbeddingActFn.empty()) emb = nn::activation(c.timeEmbeddingActFn, emb);

  // 4. pre-process
  sample = convIn_(sample);                                                 // [B, ch0, h, w]

  // 5. down
  std::vector<at::Tensor> resSamples{sample};
  // Abort check points between the blocks (and, inside them, before each resnet and transformer
  // block: nn/resnet.cc, nn/transformer_2d.cc); runtime/cancellation.h.
  for (const auto& block : downBlocks_) {
    sample = block->forward(sample, emb, context, resSamples);
  }
  // ControlNet (diffusers is_controlnet): residual j added to skip j once the down path has run.
  if (control) {
    if (control->down.size() != resSamples.size())
      invalid("the ControlNet gave " + std::to_string(control->down.size()) + " down residuals but this UNet has " +
              std::to_string(resSamples.size()) + " skip connections");
    for (size_t j = 0; j < resSamples.size(); ++j) {
      if (!fitsSkip(control->down[j], resSamples[j]))
        invalid("ControlNet down residual " + std::to_string(j) + " is " +
                (control->down[j].defined() ? nn::shapeString(control->down[j].sizes()) : std::string("missing")) +
                " but the UNet skip is " + nn::shapeString(resSamples[j].sizes()));
      resSamples[j] = resSamples[j] + control->down[j].to(device_, dtype_);
    }
  }

  // 6. mid
  if (midBlock_) sample = midBlock_->forward(sample, emb, context);        // [B, chN, h/f, w/f]
  if (control) {
    if (!fitsSkip(control->mid, sample))
      invalid("ControlNet mid residual " +
              (control->mid.defined() ? nn::shapeString(control->mid.sizes()) : std::string("missing")) +
              " does not match the mid-block output " + nn::shapeString(sample.sizes()));
    sample = sample + control->mid.to(device_, dtype_);
  }

  // 7. up
  for (size_t i = 0; i < upBlocks_.size(); ++i) {
    const auto& block = upBlocks_[i];
    const bool isFinal = i == upBlocks_.size() - 1;
    std::vector<int64_t> upsampleSize;
    if (!isFinal && forwardUpsampleSize) {
      const size_t k = block->numResnets();
      if (resSamples.size() <= k) fail(codes::kInternal, "UNet: skip connections do not match the up blocks");
      const at::Tensor& next = resSamples[resSamples.size() - k - 1];      // first skip of the next block
      upsampleSize = {next.size(2), next.size(3)};
    }
    sample = block->forward(sample, resSamples, emb, context, upsampleSize);
  }
  runtime::throwIfAborted("the UNet output head");

  // 8. post-process
  sample = convNormOut_.withSilu(sample);                                    // conv_act (act_fn: silu)
  return convOut_(sample);                                                  // [B, out, h, w]
}

}  // namespace sd::models
