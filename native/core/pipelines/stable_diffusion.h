// StableDiffusionPipeline / StableDiffusionImg2ImgPipeline (diffusers v0.30.3,
// pipelines/stable_diffusion/pipeline_stable_diffusion{,_img2img}.py) for SD 1.x and 2.x.
//
// Text is tokenized by the caller (the TypeScript CLIPTokenizer); this class runs everything
// after token ids: text encoding, classifier-free guidance, the denoising loop with any
// scheduler, and VAE decoding (and encoding for img2img). Randomness follows diffusers: one
// CPU generator seeded with `seed` draws the initial latents (or the img2img latent sample and
// noise) and then whatever the scheduler draws, in step order; draws move to the device.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "util/json.h"

namespace sd::models {
class CLIPTextModel;
class UNet2DConditionModel;
class AutoencoderKL;
}  // namespace sd::models

namespace sd::pipelines {

/// How to load a pipeline.
struct LoadOptions {
  std::string device = "cpu";            // "cpu" | "cuda" | "cuda:N"
  at::ScalarType dtype = at::kFloat;     // compute and weight dtype (no autocast)
  std::string variant;                   // "" or e.g. "fp16" → *.fp16.safetensors
  bool singleFile = false;               // `path` is an original-layout .safetensors checkpoint
  std::string configDir;                 // diffusers folder with the configs for a single file
  int threads = 0;                       // CPU intra-op threads; 0 = all cores
};

/// One generation. Shapes: P prompts, n images per prompt, B = P·n, latents [B, 4, H/f, W/f]
/// with f the VAE scale factor.
struct GenerateRequest {
  at::Tensor inputIds;          // int64 [P, 77]
  at::Tensor negativeInputIds;  // int64 [P, 77]; required when guidanceScale > 1
  int64_t numImagesPerPrompt = 1;
  int64_t numInferenceSteps = 50;
  double guidanceScale = 7.5;   // CFG when > 1 (diffusers' do_classifier_free_guidance)
  int64_t height = 0, width = 0;  // pixels, multiples of the VAE scale factor
  uint64_t seed = 0;
  at::Tensor latents;           // optional float [B, C, H/f, W/f], replaces the drawn noise
  int64_t clipSkip = 0;         // 0 = last layer; k = final LN of hidden_states[-(k+1)]
  double eta = 0.0;             // DDIM eta
  bool outputLatent = false;    // skip decoding
  std::string schedulerName;    // diffusers class name
  Json schedulerConfig;         // scheduler_config.json merged with overrides
  at::Tensor image;             // img2img: uint8 [H, W, 3] RGB, already at height×width
  double strength = 0.8;        // img2img
  double loraScale = 1.0;       // LoRA scale of this call, UNet and text encoder (cross_attention_kwargs scale)
  at::Tensor mask;              // inpainting: uint8 [H, W] (white ≥ 128 = repaint), with `image`; strength default 1
  // A1111 prompt weighting (opt-in): inputIds / negativeInputIds are then [P, 77·k] (k chunks of 77
  // encoded separately and concatenated) and these float32 [P, 77·k] token weights multiply the
  // hidden states of each chunk, whose mean is then restored (A1111 "Original" emphasis).
  at::Tensor promptWeights, negativePromptWeights;
};

struct StepInfo {
  int64_t step;       // 1-based
  int64_t numSteps;
  double timestep;
};

struct GenerateResult {
  at::Tensor images;          // uint8 [B, H, W, 3] (undefined when outputLatent)
  at::Tensor latents;         // float32 final latents [B, C, h, w]
  at::Tensor initialLatents;  // float32 latents entering the loop (after init_noise_sigma / add_noise)
  std::vector<double> timesteps;  // the timesteps actually run
  double encodeMs = 0, denoiseMs = 0, decodeMs = 0, totalMs = 0;
};

struct ComponentInfo {
  std::string name, className, dtype;
  int64_t parameters = 0, bytes = 0;
};

struct PipelineInfo {
  std::string family;     // "sd1" | "sd2"
  std::string className;  // model_index _class_name
  std::string modelPath;
  int64_t vaeScaleFactor = 8;
  int64_t sampleSize = 64;  // UNet sample_size (latent pixels)
  std::vector<std::string> tokenizerDirs;
  std::string schedulerName;
  Json schedulerConfig;
  std::string device, dtype;
  std::vector<ComponentInfo> components;
};

/// The speed/memory toggles of a pipeline (diffusers' enable_* methods). Set with
/// setOptimizations(); they take effect at the start of the next generate() call.
struct Optimizations {
  /// enable_attention_slicing / enable_xformers_memory_efficient_attention (SDPA here).
  nn::AttentionOptions attention;
  bool vaeSlicing = false;    // enable_vae_slicing: decode a batch one image at a time
  bool vaeTiling = false;     // enable_vae_tiling: overlapping tiles, blended
  bool channelsLast = false;  // UNet and VAE 4-d weights and activations in channels_last
  /// "" = off, "e4m3fn" | "e5m2": UNet weights with >= 2 dims stored in 8 bits, decoded to the
  /// compute dtype layer by layer (AUTOMATIC1111 fp8). Turning it off re-reads the UNet weights
  /// from the model file (the float values are not kept in memory).
  std::string fp8Format;
  /// "" = off, "model" (enable_model_cpu_offload: each model moves to the GPU while it runs) or
  /// "sequential" (enable_sequential_cpu_offload: weights stay in pinned host memory and each
  /// layer's weights are copied to the GPU when it runs). CUDA pipelines only.
  std::string offload;
};

/// Called after every denoising step (on the computing thread).
using StepCallback = std::function<void(const StepInfo&)>;
/// Polled at least once per denoising step; true aborts with E_ABORTED.
using AbortCheck = std::function<bool()>;

class StableDiffusionPipeline {
 public:
  /// Loads a diffusers folder (model_index.json, text_encoder/, unet/, vae/, scheduler/,
  /// tokenizer/) or, with options.singleFile, an original-layout checkpoint whose configs come
  /// from options.configDir. Errors: E_MODEL_NOT_FOUND, E_BAD_CONFIG, E_BAD_CHECKPOINT,
  /// E_UNSUPPORTED_MODEL (e.g. an SDXL folder), E_DEVICE_UNAVAILABLE.
  static std::shared_ptr<StableDiffusionPipeline> load(const std::string& path, const LoadOptions& options);
  ~StableDiffusionPipeline();

  /// Text-to-image, or image-to-image when request.image is defined.
  /// Errors: E_INVALID_ARGUMENT (shapes, sizes, steps), E_ABORTED, E_NUMERICAL (NaN/inf image),
  /// E_OUT_OF_MEMORY (from the allocator).
  GenerateResult generate(const GenerateRequest& request, const StepCallback& onStep, const AbortCheck& aborted);

  const PipelineInfo& info() const { return info_; }
  /// Pipelines alive in this process (their weights are freed with the last reference).
  static int64_t liveCount();
  /// Attention path for every model of the pipeline (slicing, SDPA); applies from the next call.
  void setAttentionOptions(const nn::AttentionOptions& options);
  const nn::AttentionOptions& attentionOptions() const { return attention_; }
  /// Validates and records the toggles; they apply at the start of the next generate() (never
  /// during one). Errors: E_UNSUPPORTED_MODEL (SDPA on libtorch < 2.0), E_DEVICE_UNAVAILABLE
  /// (offload on a non-CUDA pipeline), E_INVALID_ARGUMENT (fp8 format, slice size, offload mode).
  void setOptimizations(const Optimizations& next);
  Optimizations optimizations() const;
  /// Components (name, class, dtype, parameters, bytes held now: fp8 storage shows here).
  std::vector<ComponentInfo> components() const;
  models::UNet2DConditionModel& unet() { return *unet_; }
  models::AutoencoderKL& vae() { return *vae_; }
  models::CLIPTextModel& textEncoder() { return *textEncoder_; }

  // ---- LoRA and textual inversion (stable_diffusion_lora.cc; nn/lora.h) ----
  struct LoraLoadInfo {
    std::string adapter;
    int64_t unetModules = 0, textEncoderModules = 0;
  };
  /// Adds the LoRA file `path` as adapter `adapter` (active, set_adapters weight `weight`) to the
  /// UNet and text encoder, unfused. E_BAD_CHECKPOINT listing keys that match no module, or naming
  /// a key and both shapes on a mismatch (nothing is attached then); E_INVALID_ARGUMENT when the
  /// name is taken or a LoRA is fused.
  LoraLoadInfo loadLora(const std::string& path, const std::string& adapter, double weight);
  /// diffusers set_adapters: only `names` are active, with `weights` (same length). E_INVALID_ARGUMENT
  /// for an unknown name or while fused.
  void setLoraAdapters(const std::vector<std::string>& names, const std::vector<double>& weights);
  /// Merges the active adapters into the weights at `scale` (fuse_lora); returns the layers fused.
  int64_t fuseLora(double scale);
  /// Restores the exact base weights of fused layers; returns the layers restored.
  int64_t unfuseLora();
  /// Removes adapter `adapter`, or all when empty (unfusing first). E_INVALID_ARGUMENT for an unknown name.
  void unloadLora(const std::string& adapter);
  /// Adapter names in load order.
  std::vector<std::string> loraAdapters();
  /// A copy of weight `name` of component "unet" | "text_encoder" | "vae" (float32, CPU).
  /// E_INVALID_ARGUMENT when absent.
  at::Tensor componentWeight(const std::string& component, const std::string& name);
  /// Textual inversion: token embedding rows firstId… := rows [n, D] (float). E_INVALID_ARGUMENT
  /// when D is not the text encoder's hidden size or firstId is past the vocabulary.
  void setTokenEmbeddings(int64_t firstId, const at::Tensor& rows);
  /// Rows of the text encoder's token embedding table.
  int64_t vocabSize();
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

  std::shared_ptr<models::CLIPTextModel> textEncoder_;
  std::shared_ptr<models::UNet2DConditionModel> unet_;
  std::shared_ptr<models::AutoencoderKL> vae_;
  nn::AttentionOptions attention_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  at::ScalarType vaeDtype_ = at::kFloat;
  PipelineInfo info_;
  std::mutex mutex_;
  // Optimizations: pending_ (set from any thread under optMutex_) is applied by generate()
  // under mutex_ into applied_. loadPath_/loadOptions_ let disabling fp8 re-read the UNet.
  void applyOptimizations();
  void reloadUnetWeights(const std::vector<std::string>& names);
  mutable std::mutex optMutex_;
  Optimizations pending_, applied_;
  std::vector<ComponentInfo> components_;
  std::string loadPath_;
  LoadOptions loadOptions_;
  std::vector<std::string> loraAdapters_;
};

/// Parses "cpu" / "cuda" / "cuda:N"; E_DEVICE_UNAVAILABLE when CUDA is not in this build.
at::Device parseDevice(const std::string& device);

}  // namespace sd::pipelines
