// AUTOMATIC1111 stable-diffusion-webui modules/sd_hijack_clip.py (FrozenCLIPEmbedderWithCustomWordsBase:
// process_tokens, "Original" emphasis): prompts longer than 75 tokens as concatenated 77-token
// chunks, token weights applied to the hidden states with the mean restored.
#include <ATen/core/grad_mode.h>

#include "nn/weights.h"
#include "pipelines/pipeline_common.h"
#include "pipelines/stable_diffusion.h"
#include "util/error.h"

namespace sd::pipelines {

at::Tensor detail::applyEmphasis(const at::Tensor& z, const at::Tensor& weights) {
  at::Tensor w = weights.to(z.device(), z.scalar_type());  // [P, 77]
  at::Tensor originalMean = z.mean();
  at::Tensor weighted = z * w.unsqueeze(-1).expand(z.sizes());  // [P, 77, D]
  at::Tensor newMean = weighted.mean();
  return weighted * (originalMean / newMean);
}

at::Tensor StableDiffusionPipeline::encodePromptWeighted(const at::Tensor& ids, const at::Tensor& weights,
                                                         int64_t clipSkip, int64_t numImagesPerPrompt) const {
  constexpr int64_t kChunk = 77;
  if (ids.dim() != 2 || ids.size(1) % kChunk != 0 || ids.size(1) == 0)
    fail(codes::kInvalidArgument, "weighted prompts need inputIds [P, 77·k]");
  if (weights.dim() != 2 || weights.sizes() != ids.sizes())
    fail(codes::kInvalidArgument, "prompt weights must have the shape of inputIds " + nn::shapeString(ids.sizes()));
  std::vector<at::Tensor> parts;
  for (int64_t c = 0; c < ids.size(1) / kChunk; ++c) {
    at::Tensor z = encodePrompt(ids.slice(1, c * kChunk, (c + 1) * kChunk).contiguous(), clipSkip, 1);  // [P, 77, D]
    parts.push_back(detail::applyEmphasis(z, weights.slice(1, c * kChunk, (c + 1) * kChunk)));
  }
  return at::cat(parts, 1).repeat_interleave(numImagesPerPrompt, 0);  // [P·n, 77·k, D]
}

at::Tensor StableDiffusionPipeline::encodeText(const at::Tensor& ids, const at::Tensor& weights, int64_t clipSkip) {
  std::lock_guard<std::mutex> lock(mutex_);
  at::NoGradGuard noGrad;
  at::InferenceMode inference;
  if (!ids.defined() || ids.dim() != 2 || ids.scalar_type() != at::kLong)
    fail(codes::kInvalidArgument, "ids must be an int64 tensor [P, 77·k]");
  at::Tensor z = weights.defined() ? encodePromptWeighted(ids, weights, clipSkip, 1) : encodePrompt(ids, clipSkip, 1);
  return z.to(at::kCPU, at::kFloat).contiguous();
}

}  // namespace sd::pipelines
