// diffusers models/unets/unet_2d_condition.py UNet2DConditionModel (v0.30.3), for the
// configurations of SD 1.x, SD 2.x and SDXL: the noise-prediction network of Stable Diffusion.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "nn/embeddings.h"
#include "nn/layers.h"
#include "nn/unet_blocks.h"
#include "nn/weights.h"
#include "util/json.h"

namespace sd::models {

/// An int or a per-layer list of ints, as `transformer_layers_per_block` entries may be.
struct PerLayerCount {
  std::vector<int64_t> values;  // one value when `uniform`
  bool uniform = true;
  /// The count for each of `numLayers` layers (E_BAD_CONFIG naming `what` when a list has the wrong length).
  std::vector<int64_t> expand(int64_t numLayers, const std::string& what) const;
};

/// unet/config.json, field by field, with UNet2DConditionModel.__init__'s defaults (diffusers
/// 0.30.3) for absent fields. Fields of features sd-native does not run (class embeddings,
/// encoder_hid_proj, other block types, …) are checked and refused with E_UNSUPPORTED_MODEL
/// naming the field and value; malformed values are E_BAD_CONFIG naming file and field.
/// Not read: dropout (inference only), and fields that matter only for block types refused here:
/// addition_embed_type_num_heads, mid_block_only_cross_attention, cross_attention_norm.
struct UNet2DConditionConfig {
  int64_t sampleSize = 0;  // sample_size (latent side; 0 when null or a list). Informational.
  int64_t inChannels = 4;  // in_channels (9 for inpainting UNets)
  int64_t outChannels = 4;
  bool centerInputSample = false;  // center_input_sample: sample = 2·sample − 1
  bool flipSinToCos = true;        // flip_sin_to_cos: timestep features as [cos | sin]
  double freqShift = 0;            // freq_shift (downscale_freq_shift of the Timesteps)
  /// down_block_types / up_block_types: "CrossAttnDownBlock2D" | "DownBlock2D" and
  /// "CrossAttnUpBlock2D" | "UpBlock2D" (a "UNetRes" prefix is dropped, as diffusers does).
  std::vector<std::string> downBlockTypes{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                          "DownBlock2D"};
  std::vector<std::string> upBlockTypes{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                        "CrossAttnUpBlock2D"};
  std::string midBlockType = "UNetMidBlock2DCrossAttn";  // "" when mid_block_type is null (no mid block)
  std::vector<int64_t> blockOutChannels{320, 640, 1280, 1280};
  std::vector<int64_t> layersPerBlock;  // per down block (layers_per_block, int → repeated); default 2
  int64_t downsamplePadding = 1;
  std::string actFn = "silu";           // act_fn ("silu" / "swish")
  int64_t normNumGroups = 32;
  double normEps = 1e-5;
  std::vector<int64_t> crossAttentionDim;  // per down block (cross_attention_dim, int → repeated); default 1280
  std::vector<PerLayerCount> transformerLayersPerBlock;         // per down block; default 1
  std::vector<PerLayerCount> reverseTransformerLayersPerBlock;  // per up block; empty = reversed down list
  /// Heads per down block. diffusers: num_attention_heads = num_attention_heads or attention_head_dim —
  /// the config's `attention_head_dim` IS the number of heads (issue #2011); each attention has
  /// out_channels / heads channels per head. Default 8.
  std::vector<int64_t> numAttentionHeads;
  bool useLinearProjection = false;  // proj_in/proj_out Linear (SD 2.x, SDXL) or 1×1 conv (SD 1.x)
  bool upcastAttention = false;      // attention scores/softmax in float32 (SD 2.1)
  std::string additionEmbedType;     // "" (null) or "text_time" (SDXL)
  int64_t additionTimeEmbedDim = 0;  // addition_time_embed_dim (SDXL: 256)
  int64_t projectionClassEmbeddingsInputDim = 0;  // SDXL: 2816 = 6·256 + 1280
  int64_t timeEmbeddingDim = 0;      // time_embedding_dim; 0 → block_out_channels[0]·4
  std::string timeEmbeddingActFn;    // time_embedding_act_fn ("" = none)
  std::string timestepPostAct;       // timestep_post_act ("" = none)
  int64_t convInKernel = 3;
  int64_t convOutKernel = 3;

  /// Width of the time embedding fed to every resnet.
  int64_t timeEmbedDim() const { return timeEmbeddingDim > 0 ? timeEmbeddingDim : blockOutChannels.at(0) * 4; }

  /// Parses `path` (E_MODEL_NOT_FOUND when missing, E_BAD_CONFIG / E_UNSUPPORTED_MODEL as above).
  static UNet2DConditionConfig fromFile(const std::string& path);
  /// Parses an already-read config object; `where` names it in errors.
  static UNet2DConditionConfig fromJson(const Json& json, const std::string& where);
};

/// SDXL's added conditions (added_cond_kwargs with addition_embed_type "text_time").
struct UNetAddedCond {
  at::Tensor textEmbeds;  // [B, projection_class_embeddings_input_dim − 6·addition_time_embed_dim] (pooled text, 1280 for SDXL)
  at::Tensor timeIds;     // [B, 6]: orig_h, orig_w, crop_top, crop_left, target_h, target_w
};

/// ControlNet residuals for one UNet call (diffusers' down_block_additional_residuals /
/// mid_block_additional_residual, models/controlnet_model.h): `down[j]` is added to skip j after the
/// whole down path has run (the down path itself is unchanged; only the skips handed to the up blocks
/// change), `mid` to the mid-block output. Shapes exactly those of the skips / mid output.
struct UNetControlResiduals {
  std::vector<at::Tensor> down;  // one per skip: conv_in output, every resnet(+attn) output, every downsampler output
  at::Tensor mid;                // [B, block_out_channels[-1], h/f, w/f]
};

/// SDXL's micro-conditioning of UNet2DConditionModel.forward (addition_embed_type "text_time"):
/// add_embedding(cat([text_embeds, add_time_proj(time_ids).reshape(B, -1)])), [B, temb] in `dtype` on
/// `device`; ControlNetModel adds it the same way. E_INVALID_ARGUMENT, prefixed by `who`, when
/// `added` is missing or its shapes do not give projection_class_embeddings_input_dim.
at::Tensor addedTimeEmbedding(const UNet2DConditionConfig& c, const nn::Timesteps& addTimeProj,
                              const nn::TimestepEmbedding& addEmbedding, const UNetAddedCond* added, int64_t batch,
                              at::Device device, at::ScalarType dtype, const std::string& who);

/// The attention parameters of block `i` of UNet2DConditionModel.__init__ (its heads and
/// cross_attention_dim, `transformerLayers` per resnet/attention pair), reading `options`.
nn::CrossAttnParams crossAttnParams(const UNet2DConditionConfig& c, size_t i, std::vector<int64_t> transformerLayers,
                                    const std::shared_ptr<nn::AttentionOptions>& options);

/// The `down_blocks.*` of UNet2DConditionModel.__init__ under `root` (CrossAttnDownBlock2D /
/// DownBlock2D per down_block_types, a downsampler on all but the last). ControlNetModel builds its
/// encoder copy with it: the same layers under the same names. `where` names the config in errors.
std::vector<std::unique_ptr<nn::UNetDownBlock>> buildDownBlocks(const nn::Scope& root, const UNet2DConditionConfig& c,
                                                                const nn::ResnetParams& resnet,
                                                                const std::shared_ptr<nn::AttentionOptions>& options,
                                                                const std::string& where);

/// The `mid_block` (UNetMidBlock2DCrossAttn with the last block's heads and cross_attention_dim and
/// transformer_layers_per_block[-1]) of UNet2DConditionModel.__init__.
std::unique_ptr<nn::UNetMidBlock2DCrossAttn> buildMidBlock(const nn::Scope& root, const UNet2DConditionConfig& c,
                                                           const nn::ResnetParams& resnet,
                                                           const std::shared_ptr<nn::AttentionOptions>& options,
                                                           const std::string& where);

/// UNet2DConditionModel: predicts noise (or v) from a noisy latent, a timestep and text embeddings.
///
/// Weights are the diffusers parameter names (conv_in, time_embedding.linear_1, down_blocks.0.resnets.0.conv1,
/// down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q, mid_block.…, up_blocks.…, add_embedding.…,
/// conv_norm_out, conv_out), loaded strictly: missing, mis-shaped or unused tensors are E_BAD_CHECKPOINT.
///
/// Attention layers read one shared nn::AttentionOptions at call time (attention slicing / SDPA);
/// change it with setAttentionOptions() between calls (not during a forward).
class UNet2DConditionModel {
 public:
  /// Builds the model from a parsed config and tensors named as diffusers names them (e.g. mapped
  /// from a single-file checkpoint), then checks that every tensor was used. The model computes in
  /// the dtype and on the device of `conv_in.weight` until to() is called.
  /// `component` names the source in error messages (e.g. "unet (/m/unet/diffusion_pytorch_model.safetensors)").
  UNet2DConditionModel(UNet2DConditionConfig config, nn::StateDict weights, std::string component = "unet");

  /// Loads `componentDir`/config.json and diffusion_pytorch_model[.<variant>].safetensors (or its
  /// sharded `.safetensors.index.json`), then moves it to `device`/`dtype`.
  /// Errors: E_MODEL_NOT_FOUND (folder, config or weights missing), E_BAD_CHECKPOINT (pickle-only
  /// `.bin` weights, corrupt file, missing/mis-shaped/unexpected weights), E_BAD_CONFIG,
  /// E_UNSUPPORTED_MODEL, E_INVALID_ARGUMENT (a dtype this libtorch cannot compute on `device`).
  static std::unique_ptr<UNet2DConditionModel> fromPretrained(const std::string& componentDir,
                                                               at::Device device = at::kCPU,
                                                               at::ScalarType dtype = at::kFloat,
                                                               const std::string& variant = "");

  /// One denoising call (diffusers UNet2DConditionModel.forward(...).sample).
  /// sample: [B, in_channels, h, w] float; any h, w ≥ 1 (sizes not divisible by 2^(#upsamplers)
  ///   are handled as diffusers does, by upsampling to the skip tensors' sizes).
  /// timestep: 0-d, [1] or [B]; int64 or float (e.g. Euler's float timesteps).
  /// encoderHiddenStates: [B, M, cross_attention_dim] (M = 77 for CLIP).
  /// added: SDXL text_embeds / time_ids; required when addition_embed_type is "text_time", ignored otherwise.
  /// Inputs are moved to the model's device and cast to its dtype (time_ids stay float32).
  /// control: ControlNet residuals (UNetControlResiduals), or nullptr; cast to the model dtype and
  /// device. E_INVALID_ARGUMENT when their count or shapes do not match this UNet's skips.
  /// Returns [B, out_channels, h, w] in the model dtype. Errors: E_INVALID_ARGUMENT for bad shapes.
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep, const at::Tensor& encoderHiddenStates,
                     const UNetAddedCond* added = nullptr, const UNetControlResiduals* control = nullptr) const;

  /// Casts floating weights to `dtype` and moves them to `device` (E_INVALID_ARGUMENT when this
  /// libtorch has no kernels for `dtype` on `device`, e.g. float16 on CPU with libtorch 1.13).
  void to(at::Device device, at::ScalarType dtype);

  const UNet2DConditionConfig& config() const { return config_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const nn::Weights& weights() const { return *weights_; }
  nn::Weights& weights() { return *weights_; }
  /// The options every attention layer reads (shared; mutate only between forward calls).
  const std::shared_ptr<nn::AttentionOptions>& attentionOptions() const { return attentionOptions_; }
  void setAttentionOptions(const nn::AttentionOptions& options) { *attentionOptions_ = options; }
  /// 2^(number of upsampling up blocks): sizes divisible by it need no upsample_size forwarding.
  int64_t overallUpFactor() const { return int64_t{1} << numUpsamplers_; }

 private:
  UNet2DConditionConfig config_;
  std::unique_ptr<nn::Weights> weights_;  // owns the tensors every layer points into
  std::shared_ptr<nn::AttentionOptions> attentionOptions_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;

  nn::Conv2d convIn_;
  nn::Timesteps timeProj_;
  nn::TimestepEmbedding timeEmbedding_;
  nn::Timesteps addTimeProj_;            // SDXL
  nn::TimestepEmbedding addEmbedding_;   // SDXL
  bool hasAddEmbedding_ = false;
  std::vector<std::unique_ptr<nn::UNetDownBlock>> downBlocks_;
  std::unique_ptr<nn::UNetMidBlock2DCrossAttn> midBlock_;
  std::vector<std::unique_ptr<nn::UNetUpBlock>> upBlocks_;
  int numUpsamplers_ = 0;
  nn::GroupNorm convNormOut_;
  nn::Conv2d convOut_;
};


}  // namespace sd::models
