// StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline (diffusers v0.30.3,
// pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl{,_img2img}.py): SDXL base and refiner.
//
// Token ids come from the caller (two CLIP tokenizers: `tokenizer`, and `tokenizer_2` which pads
// with "!"). This class runs both text encoders (penultimate hidden states concatenated, pooled
// `text_embeds` of text_encoder_2), builds add_time_ids, runs the shared denoising loop with the
// UNet's "text_time" added conditions, and decodes with the VAE (float32 when force_upcast and
// float16). Randomness is diffusers': one CPU generator seeded with `seed`, or one per image
// (`seeds`, diffusers' list of generators).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pipelines/stable_diffusion.h"

namespace sd::pipelines {

/// One SDXL generation. Shapes as GenerateRequest (P prompts, B = P·n). Text-to-image unless
/// `image` or `imageLatents` is defined (img2img / refiner).
struct XLGenerateRequest : GenerateRequest {
  /// int64 [P, 77]: `prompt_2` through tokenizer_2 (diffusers: defaults to `prompt`). Undefined
  /// when the model has no text_encoder (refiner): then `inputIds` (tokenizer_2) feeds text_encoder_2.
  at::Tensor inputIds2;
  at::Tensor negativeInputIds2;  // int64 [P, 77]; with guidanceScale > 1 unless the uncond is zeros
  /// A1111 prompt weighting for tokenizer_2's ids (promptWeights / negativePromptWeights hold
  /// tokenizer's): float32 [P, 77·k] like inputIds2.
  at::Tensor promptWeights2, negativePromptWeights2;
  /// diffusers' `negative_prompt is None`: with force_zeros_for_empty_prompt the uncond embeds
  /// and pooled embeds are zeros (no negative encoding).
  bool negativePromptIsNone = false;
  /// add_time_ids parts, in pixels (height, width / top, left): two finite numbers each, required
  /// (lib/options.ts fills diffusers' defaults (height, width), (0, 0), (height, width)).
  std::vector<double> originalSize, cropsCoordsTopLeft, targetSize;
  /// Refiner (requires_aesthetics_score) img2img: add_time_ids = [orig, crop, score]; finite, required there.
  double aestheticScore = std::numeric_limits<double>::quiet_NaN();
  double negativeAestheticScore = std::numeric_limits<double>::quiet_NaN();
  /// Fractions in (0, 1) (NaN = unset): stop the schedule early (base) / start it late (refiner),
  /// split at int(round(T − fraction·T)) of the T training timesteps as diffusers does.
  double denoisingEnd = std::numeric_limits<double>::quiet_NaN();
  double denoisingStart = std::numeric_limits<double>::quiet_NaN();
  /// img2img from latents (e.g. a base run with outputLatent): float [B or 1, C, h, w], used as
  /// init latents as is (diffusers: an `image` with 4 channels).
  at::Tensor imageLatents;
  bool img2img = false;  // run StableDiffusionXLImg2ImgPipeline.__call__ (strength required unless denoisingStart)
};

struct XLPipelineInfo : PipelineInfo {
  bool forceZerosForEmptyPrompt = true;   // model_index.json (diffusers default true)
  bool requiresAestheticsScore = false;   // model_index.json (refiner: true)
  bool hasTextEncoder = true;             // false for a refiner (text_encoder_2 only)
};

/// SDXL base / refiner; the toggles, LoRA (both text encoders) and textual-inversion methods come
/// from PipelineBase.
class StableDiffusionXLPipeline : public PipelineBase {
 public:
  /// Loads an SDXL diffusers folder (model_index.json, text_encoder/ (optional), text_encoder_2/,
  /// unet/, vae/, scheduler/, tokenizer/, tokenizer_2/). Errors: E_MODEL_NOT_FOUND, E_BAD_CONFIG,
  /// E_BAD_CHECKPOINT, E_UNSUPPORTED_MODEL (an SD 1.x/2.x folder: use StableDiffusionPipeline;
  /// single files), E_DEVICE_UNAVAILABLE, E_INVALID_ARGUMENT.
  static std::shared_ptr<StableDiffusionXLPipeline> load(const std::string& path, const LoadOptions& options);
  ~StableDiffusionXLPipeline() override;

  /// Errors: E_INVALID_ARGUMENT (shapes, sizes, steps, split fractions), E_BAD_CONFIG (add_time_ids
  /// do not fit the UNet's add_embedding), E_ABORTED, E_NUMERICAL.
  GenerateResult generate(const XLGenerateRequest& request, const StepCallback& onStep, const AbortCheck& aborted);

  const XLPipelineInfo& info() const { return info_; }
  static int64_t liveCount();

  struct Encoded {
    at::Tensor embeds;  // [P·n, 77·k, D1 + D2]
    at::Tensor pooled;  // [P·n, projection_dim]
  };
  /// The prompt embeddings generate() uses (float32, CPU): ids1 for text_encoder, ids2 for
  /// text_encoder_2 (a refiner: ids1 feeds text_encoder_2), int64 [P, 77·k]; weights1/weights2
  /// float [P, 77·k] (A1111 emphasis per encoder and chunk; pooled from the first chunk, as
  /// AUTOMATIC1111 does) or undefined (diffusers' plain encoding, k = 1).
  /// E_INVALID_ARGUMENT for mis-shaped ids or weights.
  Encoded encodeText(const at::Tensor& ids1, const at::Tensor& ids2, const at::Tensor& weights1,
                     const at::Tensor& weights2, int64_t clipSkip);

 private:
  StableDiffusionXLPipeline();
  Encoded encodePrompt(const at::Tensor& ids1, const at::Tensor& ids2, const at::Tensor& weights1,
                       const at::Tensor& weights2, int64_t clipSkip, int64_t n) const;

  PipelineInfo* mutableInfo() override { return &info_; }
  XLPipelineInfo info_;
};

/// diffusers' denoising_end / denoising_start cutoff: int(round(T − fraction·T)) (Python round:
/// half to even).
int64_t discreteTimestepCutoff(double fraction, int64_t numTrainTimesteps);

}  // namespace sd::pipelines
