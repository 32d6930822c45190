// diffusers models/autoencoders/autoencoder_tiny.py (AutoencoderTiny) and models/autoencoders/vae.py
// (EncoderTiny, DecoderTiny, AutoencoderTinyBlock), v0.30.3: TAESD, Ollin Boer Bohan's tiny distilled
// autoencoder (madebyollin/taesd), used as a fast decoder and as a live-preview decoder.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/weights.h"

namespace sd::models {

/// AutoencoderTiny's config.json, field by field (diffusers AutoencoderTiny.__init__); every field
/// is optional, with diffusers' defaults below. Range checks (E_BAD_CONFIG naming file and field):
/// channels in [1, 65536]; block lists of 1..16 entries, equal in length to their num_*_blocks
/// list and all equal (diffusers builds each stride-2 conv / upsample conv as C_i → C_i, so unequal
/// entries could not run); block counts in [0, 1024]; upsampling_scaling_factor in [1, 8];
/// latent_magnitude finite > 0; latent_shift finite; scaling_factor finite non-zero.
/// E_UNSUPPORTED_MODEL for act_fn other than relu/silu/swish/gelu or upsample_fn other than nearest.
struct AutoencoderTinyConfig {
  int64_t inChannels = 3;                                    // in_channels
  int64_t outChannels = 3;                                   // out_channels
  std::vector<int64_t> encoderBlockOutChannels{64, 64, 64, 64};  // encoder_block_out_channels
  std::vector<int64_t> decoderBlockOutChannels{64, 64, 64, 64};  // decoder_block_out_channels
  std::string actFn = "relu";                                // act_fn
  std::string upsampleFn = "nearest";                        // upsample_fn (nn.Upsample mode)
  int64_t latentChannels = 4;                                // latent_channels
  int64_t upsamplingScalingFactor = 2;                       // upsampling_scaling_factor
  std::vector<int64_t> numEncoderBlocks{1, 3, 3, 3};         // num_encoder_blocks
  std::vector<int64_t> numDecoderBlocks{3, 3, 3, 1};         // num_decoder_blocks
  double latentMagnitude = 3.0;                              // latent_magnitude
  double latentShift = 0.5;                                  // latent_shift
  double scalingFactor = 1.0;                                // scaling_factor
  bool forceUpcast = false;                                  // force_upcast (diffusers registers False)

  /// Parses `path` (E_MODEL_NOT_FOUND when missing; the checks above).
  static AutoencoderTinyConfig fromFile(const std::string& path);
  /// diffusers' vae_scale_factor for a pipeline holding this VAE: 2^(len(block_out_channels) − 1),
  /// block_out_channels being registered as decoder_block_out_channels (8 for TAESD).
  int64_t vaeScaleFactor() const { return int64_t{1} << (decoderBlockOutChannels.size() - 1); }
  /// The decoder's actual upsampling: upsampling_scaling_factor^(len − 1) (= vaeScaleFactor() for 2).
  int64_t decoderUpsampling() const;
};

/// diffusers AutoencoderTinyBlock(C, C): relu(conv.4(act(conv.2(act(conv.0(x))))) + x), 3x3 convs
/// with bias, identity skip (in == out channels here), final ReLU ("fuse"). x [B, C, H, W] → same.
struct AutoencoderTinyBlock {
  nn::Conv2d conv0, conv2, conv4;
  std::string actFn;
  AutoencoderTinyBlock() = default;
  AutoencoderTinyBlock(const nn::Scope& s, int64_t channels, std::string actFn);
  at::Tensor operator()(const at::Tensor& x) const;
};

/// diffusers EncoderTiny: `layers` (an nn.Sequential) = conv in→C (3x3, bias), blocks, then per
/// further stage a 3x3 stride-2 conv without bias and its blocks, then conv C→latent (3x3, bias).
/// x [B, in, H, W] in [0, 1] (AutoencoderTiny.encode maps [-1, 1] first) → [B, latent, ⌈H/2^(n−1)⌉, …].
struct EncoderTiny {
  struct Layer {
    nn::Conv2d conv;                             // a conv layer, or
    std::optional<AutoencoderTinyBlock> block;  // a block
  };
  std::vector<Layer> layers;
  EncoderTiny() = default;
  EncoderTiny(const nn::Scope& s, const AutoencoderTinyConfig& c);
  at::Tensor operator()(const at::Tensor& x) const;
};

/// diffusers DecoderTiny: `layers` = conv latent→C (3x3, bias), act, then per stage its blocks, an
/// nn.Upsample (all but the last stage) and a 3x3 conv C→C without bias (last stage: C→out with bias).
/// z [B, latent, h, w] → [B, out, h·u, w·u] (u = decoderUpsampling()); the tanh clamp and the
/// ·2−1 output mapping are AutoencoderTiny's (DecoderTiny.forward in diffusers).
struct DecoderTiny {
  struct Layer {
    enum Kind { kConv, kAct, kBlock, kUpsample } kind = kConv;
    nn::Conv2d conv;
    std::optional<AutoencoderTinyBlock> block;
  };
  std::vector<Layer> layers;
  std::string actFn;
  int64_t upsample = 2;
  DecoderTiny() = default;
  DecoderTiny(const nn::Scope& s, const AutoencoderTinyConfig& c);
  at::Tensor operator()(const at::Tensor& x) const;
};

/// diffusers AutoencoderTiny. Weights by diffusers names (encoder.layers.N.*, decoder.layers.N.*),
/// loaded strictly. Not copyable; layers point into the owned weight store. No slicing or tiling
/// (TAESD is small; diffusers' tiled TAESD path is not ported).
///
/// As in diffusers, pipelines never call scaleLatents/unscaleLatents: they decode
/// `decode(latents / scaling_factor)` and encode `encode(x) · scaling_factor` (scaling_factor 1.0
/// for TAESD) — TAESD's latents are SD's scaled latents already.
class AutoencoderTiny {
 public:
  /// Builds the model from a parsed config and a state dict; strict (E_BAD_CHECKPOINT naming the
  /// key for a missing, mis-shaped or unused weight). Weights stay where and in the dtype they are.
  AutoencoderTiny(AutoencoderTinyConfig config, nn::StateDict weights, std::string component = "vae");
  AutoencoderTiny(const AutoencoderTiny&) = delete;
  AutoencoderTiny& operator=(const AutoencoderTiny&) = delete;

  /// Loads a diffusers component folder (`config.json` + `diffusion_pytorch_model[.<variant>].safetensors`)
  /// and moves it to device/dtype. E_MODEL_NOT_FOUND for a missing folder or file; E_BAD_CONFIG /
  /// E_UNSUPPORTED_MODEL / E_BAD_CHECKPOINT as above.
  static std::shared_ptr<AutoencoderTiny> fromPretrained(const std::string& componentDir, at::Device device,
                                                         at::ScalarType dtype, const std::string& variant = "");

  /// Casts floating-point weights to `dtype` and moves them to `device`.
  void to(at::Device device, at::ScalarType dtype);

  /// AutoencoderTiny.encode(x).latents: image [B, in, H, W] in [-1, 1] (any float dtype; computed
  /// in the model's dtype and device) → encoder((x + 1) / 2) = latents [B, latent, h, w]
  /// (deterministic: no distribution). E_INVALID_ARGUMENT for a wrong rank, channel count, empty
  /// or non-float input.
  at::Tensor encode(const at::Tensor& image) const;
  /// AutoencoderTiny.decode(z).sample: z [B, latent, h, w] → decoder(tanh(z / 3) · 3) · 2 − 1 =
  /// image [B, out, h·u, w·u] in ≈[-1, 1], unclamped. E_INVALID_ARGUMENT as for encode.
  at::Tensor decode(const at::Tensor& latents) const;
  /// scale_latents: raw latents → x / (2·latent_magnitude) + latent_shift, clamped to [0, 1].
  at::Tensor scaleLatents(const at::Tensor& x) const;
  /// unscale_latents: [0, 1] → (x − latent_shift) · 2·latent_magnitude.
  at::Tensor unscaleLatents(const at::Tensor& x) const;
  /// AutoencoderTiny.forward: encode → scaleLatents → ·255, round, uint8 → /255 → unscaleLatents →
  /// decode. Returns {latents, latents as uint8, decoded image}.
  struct ForwardResult {
    at::Tensor latents, latentsUint8, decoded;
  };
  ForwardResult forward(const at::Tensor& image) const;

  const AutoencoderTinyConfig& config() const { return config_; }
  int64_t vaeScaleFactor() const { return config_.vaeScaleFactor(); }
  double scalingFactor() const { return config_.scalingFactor; }
  int64_t latentChannels() const { return config_.latentChannels; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  nn::Weights& weights() { return *weights_; }

 private:
  at::Tensor prepareInput(const at::Tensor& x, int64_t channels, const char* what) const;

  AutoencoderTinyConfig config_;
  std::unique_ptr<nn::Weights> weights_;
  EncoderTiny encoder_;
  DecoderTiny decoder_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
};

/// True when `configPath` (a config.json) names `_class_name` "AutoencoderTiny" (false when the
/// file is missing, unreadable or names another class).
bool isAutoencoderTinyConfig(const std::string& configPath);

}  // namespace sd::models
