// diffusers models/transformers/transformer_2d.py Transformer2DModel, models/attention.py
// BasicTransformerBlock / FeedForward / GEGLU (models/activations.py), and
// models/attention_processor.py Attention with AttnProcessor / SlicedAttnProcessor.
#include "nn/transformer_2d.h"

#include "nn/group_norm_silu.h"
#include "runtime/cancellation.h"
#include "util/error.h"

namespace sd::nn {

// ---- Attention ----------------------------------------------------------------------------

CrossAttention::CrossAttention(const Scope& s, int64_t queryDim, int64_t kvDim, int64_t heads_, int64_t headDim_,
                               bool upcast_, std::shared_ptr<AttentionOptions> options_)
    : toQ(s.sub("to_q"), queryDim, heads_ * headDim_, /*withBias=*/false),
      toK(s.sub("to_k"), kvDim, heads_ * headDim_, false),
      toV(s.sub("to_v"), kvDim, heads_ * headDim_, false),
      toOut(s.sub("to_out.0"), heads_ * headDim_, queryDim, true),
      heads(heads_),
      headDim(headDim_),
      upcast(upcast_),
      options(std::move(options_)) {}

at::Tensor CrossAttention::operator()(const at::Tensor& x, const at::Tensor& context) const {
  const at::Tensor& kv = context.defined() ? context : x;
  at::Tensor q = toQ(x);   // [B, N, H·D]
  at::Tensor k = toK(kv);  // [B, M, H·D]
  at::Tensor v = toV(kv);  // [B, M, H·D]
  at::Tensor o = attention(q, k, v, heads, *options, std::nullopt,
                           upcast ? Upcast::kAttention : Upcast::kNone);  // [B, N, H·D]
  return toOut(o);         // [B, N, queryDim]; to_out.1 is dropout (identity at inference)
}

// ---- BasicTransformerBlock ----------------------------------------------------------------

BasicTransformerBlock::BasicTransformerBlock(const Scope& s, int64_t dim, int64_t heads, int64_t headDim,
                                             int64_t crossAttentionDim, bool upcastAttention,
                                             const std::shared_ptr<AttentionOptions>& options)
    : norm1(s.sub("norm1"), dim, 1e-5),
      norm2(s.sub("norm2"), dim, 1e-5),
      norm3(s.sub("norm3"), dim, 1e-5),
      attn1(s.sub("attn1"), dim, dim, heads, headDim, upcastAttention, options),
      attn2(s.sub("attn2"), dim, crossAttentionDim, heads, headDim, upcastAttention, options),
      ffProj(s.sub("ff.net.0.proj"), dim, 2 * 4 * dim),  // GEGLU: inner_dim = 4·dim, doubled for the gate
      ffOut(s.sub("ff.net.2"), 4 * dim, dim) {}

at::Tensor BasicTransformerBlock::operator()(const at::Tensor& x, const at::Tensor& context) const {
  runtime::throwIfAborted("a BasicTransformerBlock");
  at::Tensor h = attn1(norm1(x)) + x;              // [B, N, dim] self-attention
  h = attn2(norm2(h), context) + h;                // [B, N, dim] cross-attention
  at::Tensor proj = ffProj(norm3(h));              // [B, N, 2 · 4·dim]: hidden, gate
  at::Tensor ff;                                   // [B, N, 4·dim] GEGLU (exact GELU); ff.net.1 is dropout
  if (fusedGroupNormEnabled() && gegluCpuSupports(proj)) {
    ff = gegluCpu(proj);                           // one pass (nn/group_norm_silu.h)
  } else {
    auto parts = proj.chunk(2, -1);                // 2 × [B, N, 4·dim]
    ff = parts[0] * at::gelu(parts[1]);
  }
  return ffOut(ff) + h;                            // [B, N, dim]
}

// ---- Transformer2DModel -------------------------------------------------------------------

Transformer2DModel::Transformer2DModel(const Scope& s, const Transformer2DConfig& c,
                                       const std::shared_ptr<AttentionOptions>& options)
    : config(c), norm(s.sub("norm"), c.normNumGroups, c.inChannels, 1e-6) {
  const int64_t inner = c.numAttentionHeads * c.attentionHeadDim;
  if (c.useLinearProjection) {
    projInLinear = Linear(s.sub("proj_in"), c.inChannels, inner);
  } else {
    projInConv = Conv2d(s.sub("proj_in"), c.inChannels, inner, 1);
  }
  for (int64_t i = 0; i < c.numLayers; ++i)
    transformerBlocks.emplace_back(s.sub("transformer_blocks", i), inner, c.numAttentionHeads, c.attentionHeadDim,
                                   c.crossAttentionDim, c.upcastAttention, options);
  if (c.useLinearProjection) {
    projOutLinear = Linear(s.sub("proj_out"), inner, c.inChannels);
  } else {
    projOutConv = Conv2d(s.sub("proj_out"), inner, c.inChannels, 1);
  }
}

at::Tensor Transformer2DModel::operator()(const at::Tensor& x, const at::Tensor& context) const {
  const int64_t b = x.size(0), c = x.size(1), hgt = x.size(2), wid = x.size(3);
  at::Tensor h = norm(x);                                                    // [B, C, H, W]
  int64_t inner;
  if (config.useLinearProjection) {
    h = h.permute({0, 2, 3, 1}).reshape({b, hgt * wid, c});                  // [B, HW, C]
    h = projInLinear(h);                                                     // [B, HW, inner]
    inner = h.size(2);
  } else {
    h = projInConv(h);                                                       // [B, inner, H, W]
    inner = h.size(1);
    h = h.permute({0, 2, 3, 1}).reshape({b, hgt * wid, inner});              // [B, HW, inner]
  }
  for (const auto& block : transformerBlocks) h = block(h, context);        // [B, HW, inner]
  if (config.useLinearProjection) {
    h = projOutLinear(h);                                                    // [B, HW, C]
    h = h.reshape({b, hgt, wid, c}).permute({0, 3, 1, 2}).contiguous();      // [B, C, H, W]
  } else {
    h = h.reshape({b, hgt, wid, inner}).permute({0, 3, 1, 2}).contiguous();  // [B, inner, H, W]
    h = projOutConv(h);                                                      // [B, C, H, W]
  }
  return h + x;
}

}  // namespace sd::nn
