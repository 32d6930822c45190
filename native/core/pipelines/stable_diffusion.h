// StableDiffusionPipeline / StableDiffusionImg2ImgPipeline (diffusers v0.30.3,
// pipelines/stable_diffusion/pipeline_stable_diffusion{,_img2img}.py) for SD 1.x and 2.x.
//
// Text is tokenized by the caller (the TypeScript CLIPTokenizer); this class runs everything
// after token ids: text encoding, classifier-free guidance, the denoising loop with any
// scheduler, and VAE decoding (and encoding for img2img). Randomness follows diffusers: one
// CPU generator seeded with `seed` draws the initial latents (or the img2img latent sample and
// noise) and then whatever the scheduler draws, in step order; draws move to the device. With
// `seeds` (one per image: diffusers' list of generators) image i's draws come from generator i,
// so image i equals the same prompt run alone with seed seeds[i] (inpainting aside: diffusers
// encodes its one image with the first generator; see stable_diffusion_inpaint.cc).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <mutex>
#include <limits>
#include <string>
#include <vector>

#include "pipelines/pipeline_base.h"
#include "util/json.h"

namespace sd::models {
class ControlNetModel;
}

namespace sd::pipelines {

/// One ControlNet of a generation (diffusers' ControlNetModel, or one net of a MultiControlNetModel).
struct ControlNetUnit {
  std::shared_ptr<models::ControlNetModel> model;
  /// The control image at the generation's height×width: uint8 [H, W, 3] RGB or [H, W] grayscale
  /// (replicated to 3 channels, as PIL's convert("RGB") does); the pipeline scales it to [0, 1].
  at::Tensor image;
  double scale = std::numeric_limits<double>::quiet_NaN();  // controlnet_conditioning_scale (finite)
  double start = std::numeric_limits<double>::quiet_NaN();  // control_guidance_start in [0, 1)
  double end = std::numeric_limits<double>::quiet_NaN();    // control_guidance_end in (start, 1]
};

/// One generation. Shapes: P prompts, n images per prompt, B = P·n, latents [B, 4, H/f, W/f]
/// with f the VAE scale factor. The numbers have no defaults here (the caller fills every field;
/// diffusers' defaults live in lib/options.ts): unset ones are 0 / NaN and rejected by generate()
/// with E_INVALID_ARGUMENT.
struct GenerateRequest {
  at::Tensor inputIds;          // int64 [P, 77]
  at::Tensor negativeInputIds;  // int64 [P, 77]; required when guidanceScale > 1
  int64_t numImagesPerPrompt = 0;  // >= 1
  int64_t numInferenceSteps = 0;   // >= 1
  double guidanceScale = std::numeric_limits<double>::quiet_NaN();  // finite; CFG when > 1 (diffusers' do_classifier_free_guidance)
  int64_t height = 0, width = 0;  // pixels, multiples of the VAE scale factor
  uint64_t seed = 0;             // one CPU generator for the batch (when `seeds` is empty)
  std::vector<uint64_t> seeds;  // or one CPU generator per image: empty, or exactly B seeds
  at::Tensor latents;           // optional float [B, C, H/f, W/f], replaces the drawn noise
  int64_t clipSkip = 0;         // 0 = last layer; k = final LN of hidden_states[-(k+1)]
  double eta = 0.0;             // DDIM eta
  bool outputLatent = false;    // skip decoding
  std::string schedulerName;    // diffusers class name
  Json schedulerConfig;         // scheduler_config.json merged with overrides
  at::Tensor image;             // img2img: uint8 [H, W, 3] RGB, already at height×width
  double strength = std::numeric_limits<double>::quiet_NaN();  // img2img / inpainting: in [0, 1]
  double loraScale = 1.0;       // LoRA scale of this call, UNet and text encoder (cross_attention_kwargs scale)
  at::Tensor mask;              // inpainting: uint8 [H, W] (white ≥ 128 = repaint), with `image`
  // A1111 prompt weighting (opt-in): inputIds / negativeInputIds are then [P, 77·k] (k chunks of 77
  // encoded separately and concatenated) and these float32 [P, 77·k] token weights multiply the
  // hidden states of each chunk, whose mean is then restored (A1111 "Original" emphasis).
  at::Tensor promptWeights, negativePromptWeights;
  /// ControlNets (diffusers StableDiffusion[XL]ControlNet{,Img2Img,Inpaint}Pipeline): none = the plain
  /// pipeline; several = MultiControlNetModel (residuals summed in this order). pipelines/controlnet.h.
  std::vector<ControlNetUnit> controlnets;
  bool guessMode = false;  // guess_mode (forced on by a global_pool_conditions ControlNet)
};

/// SD 1.x / 2.x; the toggles, LoRA and textual-inversion methods come from PipelineBase.
class StableDiffusionPipeline : public PipelineBase {
 public:
  /// Loads a diffusers folder (model_index.json, text_encoder/, unet/, vae/, scheduler/,
  /// tokenizer/) or, with options.singleFile, an original-layout checkpoint whose configs come
  /// from options.configDir. Errors: E_MODEL_NOT_FOUND, E_BAD_CONFIG, E_BAD_CHECKPOINT,
  /// E_UNSUPPORTED_MODEL (e.g. an SDXL folder), E_DEVICE_UNAVAILABLE.
  static std::shared_ptr<StableDiffusionPipeline> load(const std::string& path, const LoadOptions& options);
  ~StableDiffusionPipeline() override;

  /// Text-to-image, or image-to-image when request.image is defined.
  /// Errors: E_INVALID_ARGUMENT (shapes, sizes, steps), E_ABORTED, E_NUMERICAL (NaN/inf image),
  /// E_OUT_OF_MEMORY (from the allocator).
  GenerateResult generate(const GenerateRequest& request, const StepCallback& onStep, const AbortCheck& aborted);

  const PipelineInfo& info() const { return info_; }
  /// Pipelines alive in this process (their weights are freed with the last reference).
  static int64_t liveCount();
  models::UNet2DConditionModel& unet() { return *unet_; }
  models::AutoencoderKL& vae() { return *vae_; }
  models::CLIPTextModel& textEncoder() { return *textEncoder_; }

  /// The prompt embeddings generate() uses: ids int64 [P, 77·k]; weights float [P, 77·k] or
  /// undefined (plain diffusers encoding, k = 1) → float32 [P, 77·k, D] on the CPU.
  at::Tensor encodeText(const at::Tensor& ids, const at::Tensor& weights, int64_t clipSkip);

  /// StableDiffusionInpaintPipeline.__call__ (stable_diffusion_inpaint.cc): request.image and
  /// request.mask; 9-channel UNets get [latents, mask, masked_image_latents], 4-channel UNets
  /// blend the re-noised image latents outside the mask after every step. generate() forwards here
  /// when request.mask is defined.
  GenerateResult inpaint(const GenerateRequest& request, const StepCallback& onStep, const AbortCheck& aborted);
  /// The checks of diffusers' check_inputs shared by generate() and inpaint() (ids, steps,
  /// images per prompt, size, guidance, negative ids); E_INVALID_ARGUMENT. Returns whether
  /// classifier-free guidance runs (guidanceScale > 1).
  bool checkCommonInputs(const GenerateRequest& request) const;

 private:
  StableDiffusionPipeline();
  at::Tensor encodePrompt(const at::Tensor& ids, int64_t clipSkip, int64_t numImagesPerPrompt) const;
  /// A1111 chunked + weighted encoding (stable_diffusion_weighting.cc); ids and weights [P, 77·k] → [P·n, 77·k, D].
  at::Tensor encodePromptWeighted(const at::Tensor& ids, const at::Tensor& weights, int64_t clipSkip,
                                  int64_t numImagesPerPrompt) const;

  PipelineInfo* mutableInfo() override { return &info_; }
  PipelineInfo info_;
};

}  // namespace sd::pipelines
