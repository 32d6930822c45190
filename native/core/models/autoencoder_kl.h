// diffusers models/autoencoders/autoencoder_kl.py (AutoencoderKL) and models/autoencoders/vae.py
// (Encoder, Decoder, DiagonalGaussianDistribution), v0.30.3: the KL-regularised autoencoder of
// Stable Diffusion 1.x / 2.x / SDXL, with diffusers' VAE slicing and tiling.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/resnet.h"
#include "nn/weights.h"

namespace sd::models {

/// AutoencoderKL's config.json, field by field (diffusers AutoencoderKL.__init__).
/// Required (diffusers always writes them): in_channels, out_channels, down_block_types,
/// up_block_types, block_out_channels, layers_per_block, latent_channels.
/// Optional, with diffusers' defaults: the values below.
struct AutoencoderKLConfig {
  int64_t inChannels = 3;                       // in_channels: image channels
  int64_t outChannels = 3;                      // out_channels: decoded image channels
  std::vector<std::string> downBlockTypes;      // down_block_types: all "DownEncoderBlock2D"
  std::vector<std::string> upBlockTypes;        // up_block_types: all "UpDecoderBlock2D"
  std::vector<int64_t> blockOutChannels;        // block_out_channels, e.g. [128, 256, 512, 512]
  int64_t layersPerBlock = 1;                   // layers_per_block (decoder blocks have one more)
  std::string actFn = "silu";                   // act_fn (default "silu")
  int64_t latentChannels = 4;                   // latent_channels
  int64_t normNumGroups = 32;                   // norm_num_groups (default 32)
  int64_t sampleSize = 32;                      // sample_size (default 32; first entry when a list)
  double scalingFactor = 0.18215;               // scaling_factor (default 0.18215)
  std::optional<double> shiftFactor;            // shift_factor (default null)
  std::optional<std::vector<double>> latentsMean;  // latents_mean (default null)
  std::optional<std::vector<double>> latentsStd;   // latents_std (default null)
  bool forceUpcast = true;                      // force_upcast (default true)
  bool useQuantConv = true;                     // use_quant_conv (default true)
  bool usePostQuantConv = true;                 // use_post_quant_conv (default true)
  bool midBlockAddAttention = true;             // mid_block_add_attention (default true)

  /// Parses `path` (a vae/config.json). E_MODEL_NOT_FOUND when the file is missing;
  /// E_BAD_CONFIG naming the file and field when a required field is missing or malformed;
  /// E_UNSUPPORTED_MODEL for block types other than DownEncoderBlock2D / UpDecoderBlock2D.
  static AutoencoderKLConfig fromFile(const std::string& path);
  /// 2^(len(block_out_channels) - 1): 8 for SD, 2 for the tiny test model.
  int64_t vaeScaleFactor() const { return int64_t{1} << (blockOutChannels.size() - 1); }
};

/// diffusers DiagonalGaussianDistribution (deterministic = False).
/// All tensors [B, latent_channels, h, w] in the model's dtype and device.
struct DiagonalGaussian {
  at::Tensor moments;  // [B, 2·latent, h, w]: quant_conv output = cat(mean, raw logvar) on dim 1
  at::Tensor mean;     // [B, latent, h, w]
  at::Tensor logvar;   // [B, latent, h, w], clamped to [-30, 20]
  at::Tensor std;      // [B, latent, h, w] = exp(0.5 · logvar)

  /// mean + std · ε, ε = randn(mean.shape) drawn on the CPU from `cpuGen` in the distribution's
  /// dtype and moved to its device (diffusers' randn_tensor; the same numbers as
  /// `latent_dist.sample(generator=torch.Generator().manual_seed(s))`). `cpuGen` null → the
  /// default CPU generator. E_INVALID_ARGUMENT when the generator is not a CPU generator.
  at::Tensor sample(at::Generator* cpuGen) const;
  /// The mode (= mean).
  const at::Tensor& mode() const { return mean; }
};

/// Mid-block self-attention of the VAE (diffusers Attention built with _from_deprecated_attn_block:
/// group_norm, to_q/to_k/to_v/to_out.0 Linear [C, C] with bias, one head of dim C over H·W tokens,
/// residual connection, rescale_output_factor 1, upcast_softmax).
struct VaeAttentionBlock {
  nn::GroupNorm groupNorm;
  nn::Linear toQ, toK, toV, toOut;
  int64_t channels = 0;
  VaeAttentionBlock() = default;
  VaeAttentionBlock(const nn::Scope& s, int64_t channels, int64_t groups, double eps);
  /// x [B, C, H, W] → [B, C, H, W].
  at::Tensor operator()(const at::Tensor& x, const nn::AttentionOptions& options) const;
};

/// UNetMidBlock2D as the VAE uses it (num_layers 1, no temb): resnets.0, attentions.0, resnets.1.
struct VaeMidBlock {
  std::vector<nn::ResnetBlock2D> resnets;
  std::optional<VaeAttentionBlock> attention;
  VaeMidBlock() = default;
  VaeMidBlock(const nn::Scope& s, int64_t channels, int64_t groups, bool addAttention);
  at::Tensor operator()(const at::Tensor& x, const nn::AttentionOptions& options) const;  // [B, C, H, W]
};

/// DownEncoderBlock2D: resnets (no temb, eps 1e-6) then an optional Downsample2D (padding 0).
struct DownEncoderBlock2D {
  std::vector<nn::ResnetBlock2D> resnets;
  std::optional<nn::Downsample2D> downsampler;
};

/// UpDecoderBlock2D: resnets (layers_per_block + 1) then an optional Upsample2D.
struct UpDecoderBlock2D {
  std::vector<nn::ResnetBlock2D> resnets;
  std::optional<nn::Upsample2D> upsampler;
};

/// diffusers vae.py Encoder (double_z = True).
/// x [B, in_channels, H, W] → [B, 2·latent_channels, H/f, W/f], f = vaeScaleFactor().
struct VaeEncoder {
  nn::Conv2d convIn;
  std::vector<DownEncoderBlock2D> downBlocks;
  VaeMidBlock midBlock;
  nn::GroupNorm convNormOut;
  nn::Conv2d convOut;
  std::string actFn;
  VaeEncoder() = default;
  VaeEncoder(const nn::Scope& s, const AutoencoderKLConfig& c);
  at::Tensor operator()(const at::Tensor& x, const nn::AttentionOptions& options) const;
};

/// diffusers vae.py Decoder (norm_type "group").
/// z [B, latent_channels, h, w] → [B, out_channels, h·f, w·f].
struct VaeDecoder {
  nn::Conv2d convIn;
  VaeMidBlock midBlock;
  std::vector<UpDecoderBlock2D> upBlocks;  // in diffusers order: reversed block_out_channels
  nn::GroupNorm convNormOut;
  nn::Conv2d convOut;
  std::string actFn;
  VaeDecoder() = default;
  VaeDecoder(const nn::Scope& s, const AutoencoderKLConfig& c);
  at::Tensor operator()(const at::Tensor& z, const nn::AttentionOptions& options) const;
};

/// diffusers AutoencoderKL. Weights by diffusers names (encoder.*, decoder.*, quant_conv.*,
/// post_quant_conv.*), loaded strictly. Not copyable; layers point into the owned weight store.
///
/// Scaling by `scaling_factor` (and `shift_factor`) is the caller's job, as in diffusers:
/// the pipeline decodes `decode(latents / scaling_factor)` and encodes `sample · scaling_factor`.
class AutoencoderKL {
 public:
  /// Builds the model from a parsed config and a state dict (diffusers names); strict: a missing
  /// or mis-shaped weight, or a weight no layer uses, is E_BAD_CHECKPOINT naming the key.
  /// The weights stay where and in the dtype they are; call to() to move/cast.
  AutoencoderKL(AutoencoderKLConfig config, nn::StateDict weights, std::string component = "vae");
  AutoencoderKL(const AutoencoderKL&) = delete;
  AutoencoderKL& operator=(const AutoencoderKL&) = delete;

  /// Loads a diffusers component folder: `<dir>/config.json` and
  /// `<dir>/diffusion_pytorch_model[.<variant>].safetensors`, then moves to device/dtype.
  /// E_MODEL_NOT_FOUND for a missing folder or file (pickle `.bin` files are refused, named);
  /// E_BAD_CONFIG / E_BAD_CHECKPOINT as for the constructor; E_UNSUPPORTED_MODEL for float16
  /// on a CPU whose libtorch has no float16 convolution kernels.
  static std::shared_ptr<AutoencoderKL> fromPretrained(const std::string& componentDir, at::Device device,
                                                       at::ScalarType dtype, const std::string& variant = "");

  /// Casts floating-point weights to `dtype` and moves them to `device` (E_UNSUPPORTED_MODEL for
  /// float16 on a CPU libtorch without float16 convolutions).
  void to(at::Device device, at::ScalarType dtype);

  /// Encodes images. image [B, in_channels, H, W] in [-1, 1] (any float dtype; computed in the
  /// model's dtype on its device), H and W multiples of vaeScaleFactor() for exact shapes.
  /// → the posterior over latents [B, latent_channels, H/f, W/f] (unscaled).
  /// E_INVALID_ARGUMENT for a wrong rank or channel count.
  DiagonalGaussian encode(const at::Tensor& image) const;

  /// Decodes latents. z [B, latent_channels, h, w] (already divided by scaling_factor) →
  /// image [B, out_channels, h·f, w·f] in ≈[-1, 1], unclamped, in the model's dtype and device.
  /// E_INVALID_ARGUMENT for a wrong rank or channel count.
  at::Tensor decode(const at::Tensor& z) const;

  /// diffusers enable_slicing / disable_slicing: encode/decode batch elements one at a time
  /// (same results, peak memory of a batch of one).
  void setSlicing(bool on) { slicing_ = on; }
  bool slicing() const { return slicing_; }

  /// diffusers enable_tiling / disable_tiling: inputs larger than one tile are encoded/decoded in
  /// overlapping tiles blended linearly over the overlap (tiled_encode / tiled_decode / blend_v /
  /// blend_h). `tileSampleMinSize` (pixels) defaults to config sample_size; the latent tile is
  /// tileSampleMinSize / vaeScaleFactor(); `overlapFactor` defaults to 0.25 (must be in [0, 1)).
  /// E_INVALID_ARGUMENT for a tile size that is not a positive multiple of vaeScaleFactor() or an
  /// overlap outside [0, 1).
  void setTiling(bool on, std::optional<int64_t> tileSampleMinSize = std::nullopt,
                 std::optional<double> overlapFactor = std::nullopt);
  bool tiling() const { return tiling_; }
  int64_t tileSampleMinSize() const { return tileSampleMinSize_; }
  int64_t tileLatentMinSize() const { return tileLatentMinSize_; }
  double tileOverlapFactor() const { return tileOverlapFactor_; }

  const AutoencoderKLConfig& config() const { return config_; }
  int64_t vaeScaleFactor() const { return config_.vaeScaleFactor(); }
  bool forceUpcast() const { return config_.forceUpcast; }
  double scalingFactor() const { return config_.scalingFactor; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

  /// Attention implementation of the mid blocks (shared; a pipeline may swap in its own).
  const std::shared_ptr<nn::AttentionOptions>& attentionOptions() const { return attention_; }
  void setAttentionOptions(std::shared_ptr<nn::AttentionOptions> options);

  nn::Weights& weights() { return *weights_; }

 private:
  at::Tensor encodeMoments(const at::Tensor& x) const;  // [B, 2·latent, h, w], no tiling
  at::Tensor decodeOne(const at::Tensor& z) const;      // diffusers _decode (tiling aware)
  at::Tensor tiledEncode(const at::Tensor& x) const;    // → moments
  at::Tensor tiledDecode(const at::Tensor& z) const;
  at::Tensor prepareInput(const at::Tensor& x, int64_t channels, const char* what) const;

  AutoencoderKLConfig config_;
  std::unique_ptr<nn::Weights> weights_;
  VaeEncoder encoder_;
  VaeDecoder decoder_;
  nn::Conv2d quantConv_, postQuantConv_;
  std::shared_ptr<nn::AttentionOptions> attention_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  bool slicing_ = false;
  bool tiling_ = false;
  int64_t tileSampleMinSize_ = 0;
  int64_t tileLatentMinSize_ = 0;
  double tileOverlapFactor_ = 0.25;
};

}  // namespace sd::models
