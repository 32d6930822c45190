// StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline (diffusers v0.30.3,
// pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl{,_img2img}.py): SDXL base and refiner.
//
// Token ids come from the caller (two CLIP tokenizers: `tokenizer`, and `tokenizer_2` which pads
// with "!"). This class runs both text encoders (penultimate hidden states concatenated, pooled
// `text_embeds` of text_encoder_2), builds add_time_ids, runs the shared denoising loop with the
// UNet's "text_time" added conditions, and decodes with the VAE (float32 when force_upcast and
// float16). Randomness is diffusers': one CPU generator seeded with `seed`.
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
  /// diffusers' `negative_prompt is None`: with force_zeros_for_empty_prompt the uncond embeds
  /// and pooled embeds are zeros (no negative encoding).
  bool negativePromptIsNone = false;
  /// add_time_ids parts, in pixels (height, width / top, left); empty = diffusers' defaults
  /// ((height, width), (0, 0), (height, width)).
  std::vector<double> originalSize, cropsCoordsTopLeft, targetSize;
  /// Refiner (requires_aesthetics_score): add_time_ids = [orig, crop, score] (defaults 6.0 / 2.5).
  double aestheticScore = 6.0, negativeAestheticScore = 2.5;
  /// Fractions in (0, 1) (NaN = unset): stop the schedule early (base) / start it late (refiner),
  /// split at int(round(T − fraction·T)) of the T training timesteps as diffusers does.
  double denoisingEnd = std::numeric_limits<double>::quiet_NaN();
  double denoisingStart = std::numeric_limits<double>::quiet_NaN();
  /// img2img from latents (e.g. a base run with outputLatent): float [B or 1, C, h, w], used as
  /// init latents as is (diffusers: an `image` with 4 channels).
  at::Tensor imageLatents;
  bool img2img = false;  // run StableDiffusionXLImg2ImgPipeline.__call__ (strength default 0.3 there)
};

struct XLPipelineInfo : PipelineInfo {
  bool forceZerosForEmptyPrompt = true;   // model_index.json (diffusers default true)
  bool requiresAestheticsScore = false;   // model_index.json (refiner: true)
  bool hasTextEncoder = true;             // false for a refiner (text_encoder_2 only)
};

class StableDiffusionXLPipeline {
 public:
  /// Loads an SDXL diffusers folder (model_index.json, text_encoder/ (optional), text_encoder_2/,
  /// unet/, vae/, scheduler/, tokenizer/, tokenizer_2/). Errors: E_MODEL_NOT_FOUND, E_BAD_CONFIG,
  /// E_BAD_CHECKPOINT, E_UNSUPPORTED_MODEL (an SD 1.x/2.x folder: use StableDiffusionPipeline;
  /// single files), E_DEVICE_UNAVAILABLE, E_INVALID_ARGUMENT.
  static std::shared_ptr<StableDiffusionXLPipeline> load(const std::string& path, const LoadOptions& options);
  ~StableDiffusionXLPipeline();

  /// Errors: E_INVALID_ARGUMENT (shapes, sizes, steps, split fractions), E_BAD_CONFIG (add_time_ids
  /// do not fit the UNet's add_embedding), E_ABORTED, E_NUMERICAL.
  GenerateResult generate(const XLGenerateRequest& request, const StepCallback& onStep, const AbortCheck& aborted);

  const XLPipelineInfo& info() const { return info_; }
  static int64_t liveCount();
  void setAttentionOptions(const nn::AttentionOptions& options);

 private:
  StableDiffusionXLPipeline();
  struct Encoded {
    at::Tensor embeds;  // [P·n, 77, D1 + D2]
    at::Tensor pooled;  // [P·n, projection_dim]
  };
  Encoded encodePrompt(const at::Tensor& ids1, const at::Tensor& ids2, int64_t clipSkip, int64_t n) const;

  std::shared_ptr<models::CLIPTextModel> textEncoder_;  // null for a refiner
  std::shared_ptr<models::CLIPTextModel> textEncoder2_;
  std::shared_ptr<models::UNet2DConditionModel> unet_;
  std::shared_ptr<models::AutoencoderKL> vae_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  at::ScalarType vaeDtype_ = at::kFloat;
  XLPipelineInfo info_;
  std::mutex mutex_;
};

/// diffusers' denoising_end / denoising_start cutoff: int(round(T − fraction·T)) (Python round:
/// half to even).
int64_t discreteTimestepCutoff(double fraction, int64_t numTrainTimesteps);

}  // namespace sd::pipelines
