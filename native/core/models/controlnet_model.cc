// diffusers models/controlnet.py (v0.30.3): ControlNetConditioningEmbedding, ControlNetModel.__init__
// (the UNet encoder built as UNet2DConditionModel builds it, plus the zero convs) and forward
// (steps 1–6 there: time/added embedding, conv_in + conditioning, down, mid, zero convs, scaling).
#include "models/controlnet_model.h"

#include <filesystem>
#include <map>
#include <utility>

#include "models/model_loading.h"
#include "config/config_reader.h"
#include "io/checkpoint.h"
#include "runtime/cancellation.h"
#include "runtime/dtype_support.h"
#include "util/error.h"

namespace sd::models {

namespace fs = std::filesystem;

// ==== config ==================================================================================

ControlNetConfig ControlNetConfig::fromFile(const std::string& path) {
  ConfigReader r = ConfigReader::fromFile(path);
  return fromJson(r.json(), path);
}

Json ControlNetConfig::asUNetConfigJson(const Json& json) {
  if (!json.isObject()) return json;
  // The UNet fields: ControlNetModel has no up path, so up_block_types is implied (the mirror of
  // down_block_types) for UNet2DConditionConfig's parser, which then checks everything it shares.
  std::map<std::string, Json> members = json.object();
  std::vector<Json> up;
  if (const Json* down = json.find("down_block_types"); down && down->isArray()) {
    for (auto it = down->array().rbegin(); it != down->array().rend(); ++it)
      up.push_back(Json::makeString(it->isString() && it->string().find("CrossAttn") != std::string::npos
                                        ? "CrossAttnUpBlock2D"
                                        : "UpBlock2D"));
    members["up_block_types"] = Json::makeArray(std::move(up));
  }
  for (const char* key : {"time_embedding_dim", "time_embedding_act_fn", "timestep_post_act", "conv_out_kernel",
                          "reverse_transformer_layers_per_block"})
    members.erase(key);  // not ControlNetModel parameters
  return Json::makeObject(std::move(members));
}

ControlNetConfig ControlNetConfig::fromJson(const Json& json, const std::string& where) {
  if (!json.isObject()) fail(codes::kBadConfig, where + ": expected a JSON object");
  ConfigReader r(json, where);
  ControlNetConfig c;
  c.unet = UNet2DConditionConfig::fromJson(asUNetConfigJson(json), where);
  if (c.unet.midBlockType.empty())
    r.error("mid_block_type", "must be \"UNetMidBlock2DCrossAttn\" (a ControlNet without a mid block has no mid residual)");
  if (c.unet.convInKernel != 3) r.error("conv_in_kernel", "must be 3 for a ControlNet (its conditioning adds to conv_in's output)");

  constexpr int64_t kMaxCh = ConfigReader::kMaxChannels;
  c.conditioningChannels = r.getIntIn("conditioning_channels", 3, 1, kMaxCh);
  c.channelOrder = r.getString("controlnet_conditioning_channel_order", "rgb");
  if (c.channelOrder != "rgb" && c.channelOrder != "bgr")
    r.error("controlnet_conditioning_channel_order", "must be \"rgb\" or \"bgr\", got \"" + c.channelOrder + "\"");
  if (r.has("conditioning_embedding_out_channels"))
    c.conditioningEmbeddingOutChannels = r.requireIntList("conditioning_embedding_out_channels");
  if (c.conditioningEmbeddingOutChannels.empty() || c.conditioningEmbeddingOutChannels.size() > 8)
    r.error("conditioning_embedding_out_channels", "must hold 1 to 8 entries");
  r.checkIn("conditioning_embedding_out_channels", c.conditioningEmbeddingOutChannels, 1, kMaxCh);
  c.globalPoolConditions = r.getBool("global_pool_conditions", false);
  return c;
}

// ==== model ===================================================================================

ControlNetModel::ControlNetModel(ControlNetConfig config, nn::StateDict tensors, std::string component)
    : config_(std::move(config)),
      weights_(std::make_unique<nn::Weights>(std::move(tensors), std::move(component))),
      attentionOptions_(std::make_shared<nn::AttentionOptions>()) {
  const UNet2DConditionConfig& c = config_.unet;
  nn::Scope root(*weights_);
  const size_t n = c.blockOutChannels.size();
  const std::vector<int64_t>& ch = c.blockOutChannels;
  const int64_t tembDim = c.blockOutChannels[0] * 4;  // ControlNetModel: time_embed_dim = block_out_channels[0] * 4

  convIn_ = nn::Conv2d(root.sub("conv_in"), c.inChannels, ch[0], 3, 1, 1);
  timeProj_ = nn::Timesteps(ch[0], c.flipSinToCos, c.freqShift);
  timeEmbedding_ = nn::TimestepEmbedding(root.sub("time_embedding"), ch[0], tembDim, c.actFn);
  if (c.additionEmbedType == "text_time") {
    hasAddEmbedding_ = true;
    addTimeProj_ = nn::Timesteps(c.additionTimeEmbedDim, c.flipSinToCos, c.freqShift);
    addEmbedding_ = nn::TimestepEmbedding(root.sub("add_embedding"), c.projectionClassEmbeddingsInputDim, tembDim);
  }

  // controlnet_cond_embedding: conv_in → SiLU → [blocks 2k (c_k→c_k), SiLU, blocks 2k+1 (c_k→c_{k+1},
  // stride 2), SiLU]… → conv_out (c_last → block_out_channels[0], zero-initialised in diffusers)
  {
    const auto& e = config_.conditioningEmbeddingOutChannels;
    nn::Scope s = root.sub("controlnet_cond_embedding");
    condConvIn_ = nn::Conv2d(s.sub("conv_in"), config_.conditioningChannels, e[0], 3, 1, 1);
    for (size_t i = 0; i + 1 < e.size(); ++i) {
      condBlocks_.emplace_back(s.sub("blocks", static_cast<int64_t>(2 * i)), e[i], e[i], 3, 1, 1);
      condBlocks_.emplace_back(s.sub("blocks", static_cast<int64_t>(2 * i + 1)), e[i], e[i + 1], 3, 2, 1);
    }
    condConvOut_ = nn::Conv2d(s.sub("conv_out"), e.back(), ch[0], 3, 1, 1);
  }

  const nn::ResnetParams resnet{tembDim, c.normNumGroups, c.normEps};
  const std::string& where = weights_->component();

  // the UNet's down blocks and mid block (the same names, so a UNet's weights load here), and one
  // zero conv per skip they produce: conv_in's, each resnet's, each downsampler's
  downBlocks_ = buildDownBlocks(root, c, resnet, attentionOptions_, where);
  midBlock_ = buildMidBlock(root, c, resnet, attentionOptions_, where);
  int64_t zero = 0;
  auto addZeroConv = [&](int64_t channels) {
    controlnetDownBlocks_.emplace_back(root.sub("controlnet_down_blocks", zero++), channels, channels, 1);
  };
  addZeroConv(ch[0]);
  for (size_t i = 0; i < n; ++i) {
    for (int64_t l = 0; l < c.layersPerBlock[i]; ++l) addZeroConv(ch[i]);
    if (i != n - 1) addZeroConv(ch[i]);
  }
  controlnetMidBlock_ = nn::Conv2d(root.sub("controlnet_mid_block"), ch[n - 1], ch[n - 1], 1);

  weights_->finish();
  device_ = convIn_.weight->device();
  dtype_ = convIn_.weight->scalar_type();
}

void ControlNetModel::to(at::Device device, at::ScalarType dtype) {
  runtime::checkDtypeSupported(device, dtype, weights_->component());
  weights_->to(device, dtype);
  device_ = device;
  dtype_ = dtype;
}

std::unique_ptr<ControlNetModel> ControlNetModel::fromPretrained(const std::string& dir, at::Device device,
                                                                 at::ScalarType dtype, const std::string& variant) {
  return loadComponent<std::unique_ptr<ControlNetModel>, ControlNetConfig>(dir, "controlnet", "diffusion_pytorch_model", device, dtype, variant);
}

void ControlNetModel::checkCompatible(const UNet2DConditionModel& unet, const std::string& what) const {
  const UNet2DConditionConfig& u = unet.config();
  const UNet2DConditionConfig& c = config_.unet;
  auto refuse = [&](const std::string& msg) {
    fail(codes::kInvalidArgument, what + " does not fit this pipeline's UNet: " + msg);
  };
  if (c.additionEmbedType != u.additionEmbedType)
    refuse(c.additionEmbedType == "text_time" ? "it is an SDXL ControlNet and the UNet is not SDXL"
                                              : "the UNet is SDXL (text_time) and the ControlNet is not");
  if (c.crossAttentionDim.back() != u.crossAttentionDim.back())
    refuse("cross_attention_dim " + std::to_string(c.crossAttentionDim.back()) + " vs the UNet's " +
           std::to_string(u.crossAttentionDim.back()));
  if (c.blockOutChannels != u.blockOutChannels || c.downBlockTypes != u.downBlockTypes ||
      c.layersPerBlock != u.layersPerBlock)
    refuse("block_out_channels / down_block_types / layers_per_block differ (its residuals would not match the UNet's skips)");
}

// ---- forward ---------------------------------------------------------------------------------

UNetControlResiduals ControlNetModel::forward(const at::Tensor& sampleIn, const at::Tensor& timestep,
                                              const at::Tensor& encoderHiddenStatesIn, const at::Tensor& condIn,
                                              double conditioningScale, bool guessMode,
                                              const UNetAddedCond* added) const {
  const UNet2DConditionConfig& c = config_.unet;
  auto invalid = [](const std::string& msg) { fail(codes::kInvalidArgument, "ControlNetModel.forward: " + msg); };
  if (!sampleIn.defined() || sampleIn.dim() != 4 || sampleIn.size(1) != c.inChannels || sampleIn.size(0) < 1 ||
      sampleIn.size(2) < 1 || sampleIn.size(3) < 1 || !at::isFloatingType(sampleIn.scalar_type()))
    invalid("sample must be a float [B, " + std::to_string(c.inChannels) + ", h, w] tensor, got " +
            (sampleIn.defined() ? nn::shapeString(sampleIn.sizes()) : std::string("nothing")));
  const int64_t batch = sampleIn.size(0);
  if (!encoderHiddenStatesIn.defined() || encoderHiddenStatesIn.dim() != 3 || encoderHiddenStatesIn.size(0) != batch ||
      encoderHiddenStatesIn.size(1) < 1 || encoderHiddenStatesIn.size(2) != c.crossAttentionDim.back() ||
      !at::isFloatingType(encoderHiddenStatesIn.scalar_type()))
    invalid("encoder_hidden_states must be a float [" + std::to_string(batch) + ", M, " +
            std::to_string(c.crossAttentionDim.back()) + "] tensor, got " +
            (encoderHiddenStatesIn.defined() ? nn::shapeString(encoderHiddenStatesIn.sizes()) : std::string("nothing")));
  const int64_t d = config_.conditioningDownscale();
  if (!condIn.defined() || condIn.dim() != 4 || condIn.size(0) != batch ||
      condIn.size(1) != config_.conditioningChannels || condIn.size(2) != sampleIn.size(2) * d ||
      condIn.size(3) != sampleIn.size(3) * d || !at::isFloatingType(condIn.scalar_type()))
    invalid("controlnet_cond must be a float [" + std::to_string(batch) + ", " +
            std::to_string(config_.conditioningChannels) + ", " + std::to_string(sampleIn.size(2) * d) + ", " +
            std::to_string(sampleIn.size(3) * d) + "] tensor (the latent size × " + std::to_string(d) + "), got " +
            (condIn.defined() ? nn::shapeString(condIn.sizes()) : std::string("nothing")));
  if (!timestep.defined() || timestep.dim() > 1 || (timestep.numel() != 1 && timestep.numel() != batch))
    invalid("timestep must be 0-d, [1] or [" + std::to_string(batch) + "]");
  if (timestep.scalar_type() == at::kBool || timestep.is_complex()) invalid("timestep must be a real number");
  if (!std::isfinite(conditioningScale)) invalid("conditioning_scale must be a finite number");

  // 0. check channel order
  at::Tensor cond = condIn.to(device_, dtype_);
  if (config_.channelOrder == "bgr") cond = at::flip(cond, {1});

  // 1. time (and 2. SDXL added embedding), as UNet2DConditionModel
  at::Tensor t = timestep.to(device_).reshape({-1}).expand({batch});
  at::Tensor emb = timeEmbedding_(timeProj_(t).to(dtype_));  // [B, temb]
  if (hasAddEmbedding_)
    emb = emb + addedTimeEmbedding(c, addTimeProj_, addEmbedding_, added, batch, device_, dtype_, "ControlNetModel");
  at::Tensor context = encoderHiddenStatesIn.to(device_, dtype_);

  // 3. pre-process: conv_in(sample) + controlnet_cond_embedding(cond)
  at::Tensor sample = convIn_(sampleIn.to(device_, dtype_));
  at::Tensor e = at::silu(condConvIn_(cond));
  for (const auto& block : condBlocks_) e = at::silu(block(e));
  sample = sample + condConvOut_(e);

  // 4. down
  std::vector<at::Tensor> skips{sample};
  for (const auto& block : downBlocks_) sample = block->forward(sample, emb, context, skips);
  // 5. mid
  sample = midBlock_->forward(sample, emb, context);
  runtime::throwIfAborted("the ControlNet zero convs");

  // 5. ControlNet blocks (zero convs)
  UNetControlResiduals out;
  if (skips.size() != controlnetDownBlocks_.size())
    fail(codes::kInternal, "ControlNet: skip count does not match controlnet_down_blocks");
  for (size_t j = 0; j < skips.size(); ++j) out.down.push_back(controlnetDownBlocks_[j](skips[j]));
  out.mid = controlnetMidBlock_(sample);

  // 6. scaling
  if (guessMode && !config_.globalPoolConditions) {
    // torch.logspace(-1, 0, n + 1) (float32) · conditioning_scale; residual j · scales[j], mid · scales[-1]
    at::Tensor scales = at::logspace(-1, 0, static_cast<int64_t>(out.down.size()) + 1, 10.0,
                                     at::TensorOptions().dtype(at::kFloat).device(device_));
    scales = scales * conditioningScale;
    for (size_t j = 0; j < out.down.size(); ++j) out.down[j] = out.down[j] * scales[static_cast<int64_t>(j)];
    out.mid = out.mid * scales[-1];
  } else {
    for (auto& r : out.down) r = r * conditioningScale;
    out.mid = out.mid * conditioningScale;
  }
  if (config_.globalPoolConditions) {
    for (auto& r : out.down) r = at::mean(r, {2, 3}, /*keepdim=*/true);
    out.mid = at::mean(out.mid, {2, 3}, /*keepdim=*/true);
  }
  return out;
}

}  // namespace sd::models
