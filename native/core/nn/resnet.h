// diffusers models/resnet.py (ResnetBlock2D) and models/{downsampling,upsampling}.py
// (Downsample2D, Upsample2D), the configurations SD 1.x / 2.x / SDXL UNets and VAEs use.
#pragma once

#include <ATen/ATen.h>

#include "nn/layers.h"

namespace sd::nn {

/// ResnetBlock2D (time_embedding_norm "default", output_scale_factor 1, SiLU).
/// x [B, in, H, W], temb [B, temb_channels] or undefined (VAE) → [B, out, H, W].
/// Weights: norm1, conv1, time_emb_proj (when tembChannels > 0), norm2, conv2, conv_shortcut (in ≠ out).
struct ResnetBlock2D {
  GroupNorm norm1, norm2;
  Conv2d conv1, conv2, convShortcut;
  Linear timeEmbProj;
  bool hasShortcut = false;
  bool hasTemb = false;
  ResnetBlock2D() = default;
  ResnetBlock2D(const Scope& s, int64_t in, int64_t out, int64_t tembChannels, int64_t groups, double eps);
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& temb) const;
};

/// Downsample2D with conv (stride 2). `padding` 1 for the UNet; the VAE encoder uses padding 0
/// with an asymmetric (0,1,0,1) zero pad first. Weights: conv.
struct Downsample2D {
  Conv2d conv;
  bool asymmetricPad = false;
  Downsample2D() = default;
  Downsample2D(const Scope& s, int64_t channels, int64_t padding);
  at::Tensor operator()(const at::Tensor& x) const;
};

/// Upsample2D: nearest ×2 then 3×3 conv. Weights: conv.
/// `outputSize` (H, W), when given, replaces ×2 (the UNet passes the skip tensor's size).
struct Upsample2D {
  Conv2d conv;
  Upsample2D() = default;
  Upsample2D(const Scope& s, int64_t channels);
  at::Tensor operator()(const at::Tensor& x, at::IntArrayRef outputSize = {}) const;
};

}  // namespace sd::nn
