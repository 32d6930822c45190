// diffusers models/unets/unet_2d_blocks.py: the blocks SD 1.x / 2.x / SDXL UNets are built from —
// CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D —
// with diffusers' child names (resnets.<i>, attentions.<i>, downsamplers.0, upsamplers.0).
// Resnets use time_embedding_norm "default", output_scale_factor 1, SiLU (what those UNets use).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "nn/resnet.h"
#include "nn/transformer_2d.h"

namespace sd::nn {

/// ResnetBlock2D settings shared by a UNet's blocks.
struct ResnetParams {
  int64_t tembChannels = 0;  // time embedding width (block_out_channels[0]·4 by default)
  int64_t groups = 32;       // norm_num_groups
  double eps = 1e-5;         // norm_eps
};

/// Transformer2DModel settings of one cross-attention block. Every attention of the block has
/// `heads` heads of out_channels / heads channels (diffusers passes config attention_head_dim
/// here as the NUMBER of heads: issue #2011).
struct CrossAttnParams {
  int64_t heads = 1;
  int64_t crossAttentionDim = 0;
  /// BasicTransformerBlocks per Transformer2DModel, one entry per resnet/attention pair.
  std::vector<int64_t> transformerLayers;
  bool useLinearProjection = false;
  bool upcastAttention = false;
  std::shared_ptr<AttentionOptions> options;
};

/// A down block: x [B, in, H, W] → [B, out, H', W'] (H' = ceil(H/2) when it downsamples), and
/// appends its output states (after each resnet/attention pair, then after the downsampler) to
/// `resSamples` for the up path's skip connections.
class UNetDownBlock {
 public:
  virtual ~UNetDownBlock() = default;
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                             std::vector<at::Tensor>& resSamples) const = 0;
};

/// An up block: pops one skip tensor per resnet from the back of `resSamples`, concatenates it
/// to the hidden states on channels, and upsamples at the end (to `upsampleSize` (H, W) when
/// given, else ×2). x [B, prev, H, W] → [B, out, 2H, 2W] (or [B, out, H, W] for the last block).
class UNetUpBlock {
 public:
  virtual ~UNetUpBlock() = default;
  virtual size_t numResnets() const = 0;
  virtual at::Tensor forward(const at::Tensor& x, std::vector<at::Tensor>& resSamples, const at::Tensor& temb,
                             const at::Tensor& context, at::IntArrayRef upsampleSize) const = 0;
};

/// CrossAttnDownBlock2D: numLayers × (ResnetBlock2D → Transformer2DModel), then Downsample2D
/// (conv 3×3 stride 2, `downsamplePadding`) when `addDownsample`.
class CrossAttnDownBlock2D : public UNetDownBlock {
 public:
  CrossAttnDownBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels, int64_t numLayers,
                       const ResnetParams& resnet, const CrossAttnParams& attn, bool addDownsample,
                       int64_t downsamplePadding);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                     std::vector<at::Tensor>& resSamples) const override;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::vector<Downsample2D> downsamplers_;
};

/// DownBlock2D: numLayers × ResnetBlock2D, then Downsample2D when `addDownsample`.
class DownBlock2D : public UNetDownBlock {
 public:
  DownBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels, int64_t numLayers, const ResnetParams& resnet,
              bool addDownsample, int64_t downsamplePadding);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                     std::vector<at::Tensor>& resSamples) const override;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Downsample2D> downsamplers_;
};

/// UNetMidBlock2DCrossAttn (num_layers 1): resnets.0 → (attentions.i → resnets.i+1).
/// x [B, C, H, W] → [B, C, H, W].
class UNetMidBlock2DCrossAttn {
 public:
  UNetMidBlock2DCrossAttn(const Scope& s, int64_t channels, const ResnetParams& resnet, const CrossAttnParams& attn,
                          int64_t numLayers = 1);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
};

/// CrossAttnUpBlock2D: numLayers × (cat skip → ResnetBlock2D → Transformer2DModel), then
/// Upsample2D when `addUpsample`. Resnet i takes (i == 0 ? prevOutputChannels : outChannels)
/// + (i == numLayers-1 ? inChannels : outChannels) channels.
class CrossAttnUpBlock2D : public UNetUpBlock {
 public:
  CrossAttnUpBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels, int64_t prevOutputChannels,
                     int64_t numLayers, const ResnetParams& resnet, const CrossAttnParams& attn, bool addUpsample);
  size_t numResnets() const override { return resnets_.size(); }
  at::Tensor forward(const at::Tensor& x, std::vector<at::Tensor>& resSamples, const at::Tensor& temb,
                     const at::Tensor& context, at::IntArrayRef upsampleSize) const override;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::vector<Upsample2D> upsamplers_;
};

/// UpBlock2D: numLayers × (cat skip → ResnetBlock2D), then Upsample2D when `addUpsample`.
class UpBlock2D : public UNetUpBlock {
 public:
  UpBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels, int64_t prevOutputChannels, int64_t numLayers,
            const ResnetParams& resnet, bool addUpsample);
  size_t numResnets() const override { return resnets_.size(); }
  at::Tensor forward(const at::Tensor& x, std::vector<at::Tensor>& resSamples, const at::Tensor& temb,
                     const at::Tensor& context, at::IntArrayRef upsampleSize) const override;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Upsample2D> upsamplers_;
};

}  // namespace sd::nn
