// diffusers models/transformers/transformer_2d.py (Transformer2DModel, continuous input) and
// models/attention.py (BasicTransformerBlock, FeedForward with GEGLU) with
// models/attention_processor.py (Attention): the spatial transformer of SD 1.x / 2.x / SDXL UNets.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "nn/attention.h"
#include "nn/layers.h"

namespace sd::nn {

/// diffusers `Attention` as BasicTransformerBlock builds it (called `CrossAttention` here, its
/// diffusers name before 0.14, to keep it apart from other attention modules): bias-free
/// projections, `heads` heads of `headDim` channels, output projection with bias.
/// Weights: to_q [H·D, queryDim], to_k / to_v [H·D, kvDim], to_out.0 [queryDim, H·D] + bias.
/// The math is nn::attention(), which reads `options` at call time (slicing / SDPA).
struct CrossAttention {
  Linear toQ, toK, toV, toOut;
  int64_t heads = 1;
  int64_t headDim = 0;
  bool upcast = false;  // diffusers upcast_attention: scores and softmax in float32
  std::shared_ptr<AttentionOptions> options;
  CrossAttention() = default;
  CrossAttention(const Scope& s, int64_t queryDim, int64_t kvDim, int64_t heads, int64_t headDim, bool upcast,
                 std::shared_ptr<AttentionOptions> options);
  /// x [B, N, queryDim], context [B, M, kvDim] (self-attention when undefined) → [B, N, queryDim].
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& context = at::Tensor()) const;
};

/// diffusers BasicTransformerBlock with norm_type "layer_norm", activation "geglu",
/// only_cross_attention false, double_self_attention false:
///   x = attn1(norm1(x)) + x;  x = attn2(norm2(x), context) + x;  x = ff(norm3(x)) + x.
/// FeedForward: ff.net.0.proj [2·4·dim, dim] (GEGLU: h·gelu(gate), exact erf GELU), ff.net.2 [dim, 4·dim].
/// LayerNorm eps 1e-5. x [B, N, dim], context [B, M, crossAttentionDim] → [B, N, dim].
struct BasicTransformerBlock {
  LayerNorm norm1, norm2, norm3;
  CrossAttention attn1, attn2;
  Linear ffProj, ffOut;
  BasicTransformerBlock() = default;
  BasicTransformerBlock(const Scope& s, int64_t dim, int64_t heads, int64_t headDim, int64_t crossAttentionDim,
                        bool upcastAttention, const std::shared_ptr<AttentionOptions>& options);
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& context) const;
};

/// Construction parameters of a Transformer2DModel as the UNet blocks pass them.
struct Transformer2DConfig {
  int64_t numAttentionHeads = 1;   // heads
  int64_t attentionHeadDim = 0;    // channels per head (diffusers: out_channels // num_attention_heads)
  int64_t inChannels = 0;
  int64_t numLayers = 1;           // BasicTransformerBlocks (transformer_layers_per_block)
  int64_t crossAttentionDim = 0;
  int64_t normNumGroups = 32;
  bool useLinearProjection = false;  // proj_in / proj_out as Linear (SD 2.x, SDXL) or 1×1 Conv2d (SD 1.x)
  bool upcastAttention = false;
};

/// diffusers Transformer2DModel on continuous input:
///   h = proj_in(GroupNorm(x, eps 1e-6)) as tokens [B, H·W, inner]; h = blocks(h, context);
///   out = proj_out(h) back to [B, C, H, W] + x.    inner = heads · headDim.
/// Weights: norm.{weight,bias} [C]; proj_in [inner, C(,1,1)] + bias; transformer_blocks.<i>.*;
/// proj_out [C, inner(,1,1)] + bias.
/// x [B, C, H, W], context [B, M, crossAttentionDim] → [B, C, H, W] (dtype of x).
struct Transformer2DModel {
  Transformer2DConfig config;
  GroupNorm norm;
  Linear projInLinear, projOutLinear;
  Conv2d projInConv, projOutConv;
  std::vector<BasicTransformerBlock> transformerBlocks;
  Transformer2DModel() = default;
  Transformer2DModel(const Scope& s, const Transformer2DConfig& config,
                     const std::shared_ptr<AttentionOptions>& options);
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& context) const;
};

}  // namespace sd::nn
