// diffusers models/controlnet.py ControlNetModel (v0.30.3): a trainable copy of the UNet's encoder
// (conv_in, time embedding, down blocks, mid block) fed with the noisy latents plus an embedded
// conditioning image, whose skips go through zero-initialised 1×1 convs and are added to the UNet's
// skips (UNetControlResiduals, models/unet_2d_condition.h).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "models/unet_2d_condition.h"
#include "nn/layers.h"
#include "nn/weights.h"
#include "util/json.h"

namespace sd::models {

/// controlnet/config.json: the UNet fields ControlNetModel shares (parsed and refused exactly as
/// UNet2DConditionConfig does, up_block_types being implied), plus the ControlNet's own fields with
/// ControlNetModel.__init__'s defaults. time_embedding_dim / time_embedding_act_fn /
/// timestep_post_act do not exist on ControlNetModel and are ignored, as diffusers ignores them.
struct ControlNetConfig {
  UNet2DConditionConfig unet;                 // the encoder half's configuration
  int64_t conditioningChannels = 3;           // conditioning_channels
  std::string channelOrder = "rgb";           // controlnet_conditioning_channel_order: "rgb" | "bgr"
  std::vector<int64_t> conditioningEmbeddingOutChannels{16, 32, 96, 256};  // conditioning_embedding_out_channels
  bool globalPoolConditions = false;          // global_pool_conditions (shuffle ControlNets)

  /// 2^(len(conditioning_embedding_out_channels) − 1): the conditioning image is this many times
  /// larger than the latents (8 for released SD ControlNets; it must equal the VAE scale factor).
  int64_t conditioningDownscale() const {
    return int64_t{1} << (conditioningEmbeddingOutChannels.size() - 1);
  }

  /// Parses `path` (E_MODEL_NOT_FOUND when missing; E_BAD_CONFIG naming file and field for malformed
  /// or out-of-range values; E_UNSUPPORTED_MODEL for features not run, as for the UNet).
  static ControlNetConfig fromFile(const std::string& path);
  static ControlNetConfig fromJson(const Json& json, const std::string& where);
  /// The ControlNet config.json as a UNet config.json: up_block_types added (the mirror of
  /// down_block_types), fields ControlNetModel does not have removed (for the UNet parser and the
  /// single-file key tables).
  static Json asUNetConfigJson(const Json& json);
};

/// ControlNetModel. Weights are diffusers' names: conv_in, time_embedding.linear_{1,2},
/// (SDXL) add_embedding.linear_{1,2}, controlnet_cond_embedding.{conv_in, blocks.N, conv_out},
/// down_blocks.…, mid_block.…, controlnet_down_blocks.N, controlnet_mid_block; loaded strictly
/// (missing, mis-shaped or unused tensors are E_BAD_CHECKPOINT).
class ControlNetModel {
 public:
  ControlNetModel(ControlNetConfig config, nn::StateDict weights, std::string component = "controlnet");

  /// Loads `dir`/config.json and diffusion_pytorch_model[.<variant>].safetensors, then moves it to
  /// `device`/`dtype`. Errors as UNet2DConditionModel::fromPretrained.
  static std::unique_ptr<ControlNetModel> fromPretrained(const std::string& dir, at::Device device = at::kCPU,
                                                         at::ScalarType dtype = at::kFloat,
                                                         const std::string& variant = "");

  /// ControlNetModel.forward(...) (return_dict=False).
  /// sample [B, in_channels, h, w]; timestep 0-d, [1] or [B] (int64 or float); encoderHiddenStates
  /// [B, M, cross_attention_dim]; controlnetCond float [B, conditioning_channels, h·d, w·d] with
  /// d = conditioningDownscale() (values as the pipeline prepared them: [0, 1] for images);
  /// conditioningScale multiplies every output; guessMode (or global_pool_conditions) scales residual
  /// j by torch.logspace(-1, 0, n+1)[j]·conditioningScale and mid by 1·conditioningScale (float32).
  /// added: SDXL text_embeds / time_ids (required for addition_embed_type "text_time").
  /// Returns the down residuals (one per UNet skip) and the mid residual, already scaled, in the model
  /// dtype. Errors: E_INVALID_ARGUMENT for bad shapes.
  UNetControlResiduals forward(const at::Tensor& sample, const at::Tensor& timestep,
                               const at::Tensor& encoderHiddenStates, const at::Tensor& controlnetCond,
                               double conditioningScale, bool guessMode, const UNetAddedCond* added = nullptr) const;

  void to(at::Device device, at::ScalarType dtype);
  const ControlNetConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const nn::Weights& weights() const { return *weights_; }
  nn::Weights& weights() { return *weights_; }
  void setAttentionOptions(const nn::AttentionOptions& options) { *attentionOptions_ = options; }

  /// E_INVALID_ARGUMENT (naming `what`) unless this ControlNet fits `unet`: the same block_out_channels,
  /// down block types, layers, cross_attention_dim and addition_embed_type (an SD 1.x ControlNet on an
  /// SDXL UNet, or the reverse, is refused here rather than failing inside a forward).
  void checkCompatible(const UNet2DConditionModel& unet, const std::string& what) const;

 private:
  ControlNetConfig config_;
  std::unique_ptr<nn::Weights> weights_;
  std::shared_ptr<nn::AttentionOptions> attentionOptions_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;

  nn::Conv2d convIn_;
  nn::Timesteps timeProj_;
  nn::TimestepEmbedding timeEmbedding_;
  nn::Timesteps addTimeProj_;
  nn::TimestepEmbedding addEmbedding_;
  bool hasAddEmbedding_ = false;
  // controlnet_cond_embedding (ControlNetConditioningEmbedding)
  nn::Conv2d condConvIn_;
  std::vector<nn::Conv2d> condBlocks_;
  nn::Conv2d condConvOut_;
  std::vector<std::unique_ptr<nn::UNetDownBlock>> downBlocks_;
  std::unique_ptr<nn::UNetMidBlock2DCrossAttn> midBlock_;
  std::vector<nn::Conv2d> controlnetDownBlocks_;
  nn::Conv2d controlnetMidBlock_;
};

}  // namespace sd::models
