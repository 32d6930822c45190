// diffusers models/unets/unet_2d_blocks.py: CrossAttnDownBlock2D, DownBlock2D,
// UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D.
#include "nn/unet_blocks.h"

#include "util/error.h"

namespace sd::nn {

namespace {

// Transformer2DModel(num_attention_heads, out_channels // num_attention_heads, in_channels=out_channels, ...)
Transformer2DModel makeTransformer(const Scope& s, int64_t channels, int64_t layers, const ResnetParams& resnet,
                                   const CrossAttnParams& attn) {
  if (attn.heads <= 0 || channels / attn.heads <= 0)
    fail(codes::kBadConfig, s.weights().component() + ": " + s.prefix() + ": " + std::to_string(attn.heads) +
                                " attention heads do not fit " + std::to_string(channels) + " channels");
  Transformer2DConfig c;
  c.numAttentionHeads = attn.heads;
  c.attentionHeadDim = channels / attn.heads;
  c.inChannels = channels;
  c.numLayers = layers;
  c.crossAttentionDim = attn.crossAttentionDim;
  c.normNumGroups = resnet.groups;
  c.useLinearProjection = attn.useLinearProjection;
  c.upcastAttention = attn.upcastAttention;
  return Transformer2DModel(s, c, attn.options);
}

int64_t layersAt(const CrossAttnParams& attn, int64_t i, const Scope& s) {
  if (i >= static_cast<int64_t>(attn.transformerLayers.size()))
    fail(codes::kBadConfig, s.weights().component() + ": " + s.prefix() +
                                ": transformer_layers_per_block has fewer entries than the block has layers");
  return attn.transformerLayers[i];
}

at::Tensor popBack(std::vector<at::Tensor>& v) {
  if (v.empty()) fail(codes::kInternal, "UNet up block: no skip connection left");
  at::Tensor t = std::move(v.back());
  v.pop_back();
  return t;
}

}  // namespace

// ---- down ---------------------------------------------------------------------------------

CrossAttnDownBlock2D::CrossAttnDownBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels, int64_t numLayers,
                                           const ResnetParams& r, const CrossAttnParams& attn, bool addDownsample,
                                           int64_t downsamplePadding) {
  for (int64_t i = 0; i < numLayers; ++i) {
    resnets_.emplace_back(s.sub("resnets", i), i == 0 ? inChannels : outChannels, outChannels, r.tembChannels,
                          r.groups, r.eps);
    attentions_.push_back(makeTransformer(s.sub("attentions", i), outChannels, layersAt(attn, i, s), r, attn));
  }
  if (addDownsample) downsamplers_.emplace_back(s.sub("downsamplers", 0), outChannels, downsamplePadding);
}

at::Tensor CrossAttnDownBlock2D::forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& context,
                                         std::vector<at::Tensor>& resSamples) const {
  at::Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    h = resnets_[i](h, temb);        // [B, out, H, W]
    h = attentions_[i](h, context);  // [B, out, H, W]
    resSamples.push_back(h);
  }
  for (const auto& d : downsamplers_) {
    h = d(h);                        // [B, out, ceil(H/2), ceil(W/2)]
    resSamples.push_back(h);
  }
  return h;
}

DownBlock2D::DownBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels, int64_t numLayers,
                         const ResnetParams& r, bool addDownsample, int64_t downsamplePadding) {
  for (int64_t i = 0; i < numLayers; ++i)
    resnets_.emplace_back(s.sub("resnets", i), i == 0 ? inChannels : outChannels, outChannels, r.tembChannels,
                          r.groups, r.eps);
  if (addDownsample) downsamplers_.emplace_back(s.sub("downsamplers", 0), outChannels, downsamplePadding);
}

at::Tensor DownBlock2D::forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& /*context*/,
                                std::vector<at::Tensor>& resSamples) const {
  at::Tensor h = x;
  for (const auto& resnet : resnets_) {
    h = resnet(h, temb);  // [B, out, H, W]
    resSamples.push_back(h);
  }
  for (const auto& d : downsamplers_) {
    h = d(h);             // [B, out, ceil(H/2), ceil(W/2)]
    resSamples.push_back(h);
  }
  return h;
}

// ---- mid ----------------------------------------------------------------------------------

UNetMidBlock2DCrossAttn::UNetMidBlock2DCrossAttn(const Scope& s, int64_t channels, const ResnetParams& r,
                                                 const CrossAttnParams& attn, int64_t numLayers) {
  resnets_.emplace_back(s.sub("resnets", 0), channels, channels, r.tembChannels, r.groups, r.eps);
  for (int64_t i = 0; i < numLayers; ++i) {
    attentions_.push_back(makeTransformer(s.sub("attentions", i), channels, layersAt(attn, i, s), r, attn));
    resnets_.emplace_back(s.sub("resnets", i + 1), channels, channels, r.tembChannels, r.groups, r.eps);
  }
}

at::Tensor UNetMidBlock2DCrossAttn::forward(const at::Tensor& x, const at::Tensor& temb,
                                            const at::Tensor& context) const {
  at::Tensor h = resnets_[0](x, temb);  // [B, C, H, W]
  for (size_t i = 0; i < attentions_.size(); ++i) {
    h = attentions_[i](h, context);
    h = resnets_[i + 1](h, temb);
  }
  return h;
}

// ---- up -----------------------------------------------------------------------------------

CrossAttnUpBlock2D::CrossAttnUpBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels,
                                       int64_t prevOutputChannels, int64_t numLayers, const ResnetParams& r,
                                       const CrossAttnParams& attn, bool addUpsample) {
  for (int64_t i = 0; i < numLayers; ++i) {
    const int64_t skip = i == numLayers - 1 ? inChannels : outChannels;
    const int64_t resIn = i == 0 ? prevOutputChannels : outChannels;
    resnets_.emplace_back(s.sub("resnets", i), resIn + skip, outChannels, r.tembChannels, r.groups, r.eps);
    attentions_.push_back(makeTransformer(s.sub("attentions", i), outChannels, layersAt(attn, i, s), r, attn));
  }
  if (addUpsample) upsamplers_.emplace_back(s.sub("upsamplers", 0), outChannels);
}

at::Tensor CrossAttnUpBlock2D::forward(const at::Tensor& x, std::vector<at::Tensor>& resSamples,
                                       const at::Tensor& temb, const at::Tensor& context,
                                       at::IntArrayRef upsampleSize) const {
  at::Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    h = at::cat({h, popBack(resSamples)}, 1);  // [B, resIn + skip, H, W]
    h = resnets_[i](h, temb);                  // [B, out, H, W]
    h = attentions_[i](h, context);            // [B, out, H, W]
  }
  for (const auto& u : upsamplers_) h = u(h, upsampleSize);  // [B, out, 2H, 2W] or upsampleSize
  return h;
}

UpBlock2D::UpBlock2D(const Scope& s, int64_t inChannels, int64_t outChannels, int64_t prevOutputChannels,
                     int64_t numLayers, const ResnetParams& r, bool addUpsample) {
  for (int64_t i = 0; i < numLayers; ++i) {
    const int64_t skip = i == numLayers - 1 ? inChannels : outChannels;
    const int64_t resIn = i == 0 ? prevOutputChannels : outChannels;
    resnets_.emplace_back(s.sub("resnets", i), resIn + skip, outChannels, r.tembChannels, r.groups, r.eps);
  }
  if (addUpsample) upsamplers_.emplace_back(s.sub("upsamplers", 0), outChannels);
}

at::Tensor UpBlock2D::forward(const at::Tensor& x, std::vector<at::Tensor>& resSamples, const at::Tensor& temb,
                              const at::Tensor& /*context*/, at::IntArrayRef upsampleSize) const {
  at::Tensor h = x;
  for (const auto& resnet : resnets_) {
    h = at::cat({h, popBack(resSamples)}, 1);  // [B, resIn + skip, H, W]
    h = resnet(h, temb);                       // [B, out, H, W]
  }
  for (const auto& u : upsamplers_) h = u(h, upsampleSize);  // [B, out, 2H, 2W] or upsampleSize
  return h;
}

}  // namespace sd::nn
