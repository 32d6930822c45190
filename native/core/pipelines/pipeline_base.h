// What StableDiffusionPipeline (SD 1.x/2.x) and StableDiffusionXLPipeline share: the speed/memory
// toggles of diffusers' DiffusionPipeline (enable_attention_slicing, enable_vae_slicing/tiling,
// channels_last, enable_model/sequential_cpu_offload, plus AUTOMATIC1111's fp8 weight storage), the
// LoRA loader mixins (diffusers v0.30.3 loaders/lora_pipeline.py: StableDiffusionLoraLoaderMixin and
// StableDiffusionXLLoraLoaderMixin — load_lora_weights, set_adapters, fuse_lora, unfuse_lora,
// unload_lora_weights; file reading in loaders/lora.h) and textual-inversion rows
// (loaders/textual_inversion.py), and the steps both from_pretrained / __call__ run the same way
// (component placement and VAE upcast, get_timesteps with strength, prepare_latents, the denoising
// loop, decode), over the components a pipeline holds: text_encoder, text_encoder_2 (SDXL), unet, vae.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "nn/attention.h"
#include "nn/weights.h"
#include "pipelines/unet_graphs.h"
#include "runtime/cpu_caching_allocator.h"
#include "runtime/cancellation.h"
#include "runtime/generators.h"
#include "util/json.h"

namespace sd::models {
class CLIPTextModel;
class UNet2DConditionModel;
class AutoencoderKL;
class AutoencoderTiny;
struct UNetAddedCond;
struct UNetControlResiduals;
}  // namespace sd::models
namespace sd::schedulers {
class Scheduler;
}

namespace sd::pipelines {

struct GenerateRequest;  // stable_diffusion.h
struct MemoryCallShape;  // memory_guard.h

/// How to load a pipeline.
struct LoadOptions {
  std::string device = "cpu";            // "cpu" | "cuda" | "cuda:N"
  at::ScalarType dtype = at::kFloat;     // compute and weight dtype (no autocast)
  std::string variant;                   // "" or e.g. "fp16" → *.fp16.safetensors
  bool singleFile = false;               // `path` is an original-layout .safetensors checkpoint
  std::string configDir;                 // diffusers folder with the configs for a single file
  int threads = 0;                       // CPU intra-op threads; 0 = all cores
};

struct ComponentInfo {
  std::string name, className, dtype;
  int64_t parameters = 0, bytes = 0;
};

/// What a loaded pipeline reports (SD 1.x/2.x; XLPipelineInfo adds SDXL's fields).
struct PipelineInfo {
  std::string family;     // "sd1" | "sd2" | "sdxl"
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
  /// Host memory (bytes) a call may add before it is refused with E_OUT_OF_MEMORY; 0 = only the
  /// limits found in the environment (SD_NATIVE_MEMORY_LIMIT, cgroup, MemAvailable). memory_guard.h.
  int64_t memoryLimit = 0;
  /// enableCudaGraphs: the UNet forward captured as a CUDA graph per input signature and replayed
  /// each step (pipelines/unet_graphs.h). CUDA pipelines without offload only.
  bool cudaGraphs = false;
};

struct StepInfo {
  int64_t step;       // 1-based
  int64_t numSteps;
  double timestep;
  /// The latents after this step [B, C, h, w] in the pipeline's dtype and device (diffusers'
  /// callback_on_step_end `latents`; what previews are made from). Undefined where a loop does not
  /// pass them.
  at::Tensor latents;
  StepInfo(int64_t step_, int64_t numSteps_, double timestep_, at::Tensor latents_ = at::Tensor())
      : step(step_), numSteps(numSteps_), timestep(timestep_), latents(std::move(latents_)) {}
};

/// What previewImages() makes from a step's latents.
enum class PreviewKind {
  kTaesd,       // the preview decoder (an AutoencoderTiny): decode(latents) → [B, H·u, W·u, 3]
  kLatent2Rgb,  // AUTOMATIC1111's "Approx cheap": a fixed 4×3 linear map per pixel → [B, h, w, 3]
};

struct GenerateResult {
  at::Tensor images;          // uint8 [B, H, W, 3] (undefined when outputLatent)
  at::Tensor latents;         // float32 final latents [B, C, h, w]
  at::Tensor initialLatents;  // float32 latents entering the loop (after init_noise_sigma / add_noise)
  std::vector<double> timesteps;  // the timesteps actually run
  double encodeMs = 0, denoiseMs = 0, decodeMs = 0, totalMs = 0;
  /// The reduced-precision VAE decode gave NaN/inf, so the images were decoded again in float32
  /// (and the VAE stays in float32 from now on; see PipelineBase::finishGeneration).
  bool vaeUpcast = false;
  /// The untiled VAE decode would not have fit in the memory available, so this call decoded with
  /// VAE tiling (which changes the image slightly); PipelineBase::guardMemory.
  bool vaeAutoTiling = false;
};

/// Called after every denoising step (on the computing thread).
using StepCallback = std::function<void(const StepInfo&)>;
/// The ControlNet hook of the denoising loop (pipelines/controlnet.h): called before the UNet at
/// step `step` (0-based) of `numSteps` with the UNet's input (CFG-doubled, scale_model_input'ed) and
/// timestep; fills the residuals the UNet adds.
using ControlHook = std::function<void(int64_t step, int64_t numSteps, const at::Tensor& modelInput,
                                       const at::Tensor& t, models::UNetControlResiduals& out)>;
/// Polled before each denoising step and at the check points inside the UNet, VAE and text
/// encoder forwards (runtime/cancellation.h); true aborts with E_ABORTED. Must be cheap.
using AbortCheck = std::function<bool()>;

/// What loadLora attached: the adapter name and the modules it targets per model.
struct LoraLoadInfo {
  std::string adapter;
  int64_t unetModules = 0, textEncoderModules = 0, textEncoder2Modules = 0;
};

class PipelineBase {
 public:
  virtual ~PipelineBase();
  PipelineBase(const PipelineBase&) = delete;
  PipelineBase& operator=(const PipelineBase&) = delete;

  /// Attention path for every model of the pipeline (slicing, SDPA); applies from the next call.
  void setAttentionOptions(const nn::AttentionOptions& options);
  /// Validates and records the toggles; they apply at the start of the next generate() (never
  /// during one). Errors: E_UNSUPPORTED_MODEL (SDPA on libtorch < 2.0), E_DEVICE_UNAVAILABLE
  /// (offload on a non-CUDA pipeline), E_INVALID_ARGUMENT (fp8 format, slice size, offload mode).
  void setOptimizations(const Optimizations& next);
  Optimizations optimizations() const;
  /// Components (name, class, dtype, parameters, bytes held now: fp8 storage shows here).
  std::vector<ComponentInfo> components() const;

  // ---- LoRA and textual inversion (pipeline_base.cc; layer mechanics in nn/lora.h) ----
  /// Adds the LoRA file `path` as adapter `adapter` (active, set_adapters weight `weight`) to the
  /// UNet and the text encoder(s), unfused: kohya `lora_te_`/`lora_te1_` and diffusers
  /// `text_encoder.` keys go to text_encoder, `lora_te2_` / `text_encoder_2.` to text_encoder_2.
  /// E_BAD_CHECKPOINT listing keys that match no module (e.g. `lora_te2_` keys on an SD 1.x
  /// model), or naming a key and both shapes on a mismatch (nothing is attached then);
  /// E_INVALID_ARGUMENT when the name is taken or a LoRA is fused; E_MODEL_NOT_FOUND.
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
  /// A copy of weight `name` of component "unet" | "text_encoder" | "text_encoder_2" | "vae"
  /// (float32, CPU; fp8-stored weights decoded). E_INVALID_ARGUMENT when absent.
  at::Tensor componentWeight(const std::string& component, const std::string& name);
  /// Textual inversion: rows firstId… of the token embedding of `component` ("text_encoder" |
  /// "text_encoder_2") := rows [n, D] (float). E_BAD_CHECKPOINT when D is not that encoder's
  /// hidden size; E_INVALID_ARGUMENT for an absent component or firstId past the vocabulary.
  void setTokenEmbeddings(const std::string& component, int64_t firstId, const at::Tensor& rows);
  /// Rows of the token embedding table of `component`.
  int64_t vocabSize(const std::string& component);
  /// What enableCudaGraphs did so far (captures, replays, invalidations, graphs held); zeros while
  /// it is off. For tests and diagnostics.
  UNetGraphs::Stats cudaGraphStats();
  /// Test hook (the addon's test-only binding pipelineTestFaults): the next `n` VAE decodes of this
  /// pipeline return NaN images, as a float16 SDXL VAE that overflows does, so that the float32
  /// re-decode of finishGeneration can be tested on a CPU. 0 (the default) = off.
  void setTestNonFiniteDecodes(int n) { testNonFiniteDecodes_ = n < 0 ? 0 : n; }

  // ---- swapping the VAE, previews (pipeline_vae.cc) ----
  /// diffusers `pipe.vae = vae`: decode (and img2img/inpaint encode) with `vae` from the next
  /// generate() on; nullptr puts the pipeline's own VAE back. The pipeline's VAE toggles (slicing,
  /// tiling, attention, channels-last) apply to the VAE in use; it computes in its own dtype. Waits
  /// for a generation in flight. Unlike diffusers' attribute assignment, the pipeline's VAE scale
  /// factor follows the VAE (diffusers computes it once in __init__; with real SD VAEs both are 8).
  /// E_INVALID_ARGUMENT when the VAE is on another device than the pipeline, when its
  /// latent_channels differ from the pipeline's own VAE's (the UNet's latent space), or while CPU
  /// offload is enabled (applied, or pending for the next call). With channels-last on, the VAE's
  /// 4-d weights are converted to channels_last (the VAE object is shared, not copied).
  void setVae(std::shared_ptr<models::AutoencoderKL> vae);
  /// As setVae, with an AutoencoderTiny (TAESD): decode `tiny.decode(latents / scaling_factor)`,
  /// encode `tiny.encode(x) · scaling_factor` (deterministic: draws nothing from the generator).
  void setVae(std::shared_ptr<models::AutoencoderTiny> vae);
  /// The pipeline's own (loaded) VAE, whichever VAE is in use.
  std::shared_ptr<models::AutoencoderKL> ownVae() const { return ownVae_; }
  /// "own" | "AutoencoderKL" (another AutoencoderKL) | "AutoencoderTiny": the VAE in use.
  std::string vaeInUse() const;
  /// The VAE scale factor of the VAE in use (height and width must be multiples of it).
  int64_t vaeScaleFactor() const;
  /// The AutoencoderTiny that previewImages(kTaesd) decodes with; nullptr removes it. Waits for a
  /// generation in flight. E_INVALID_ARGUMENT for a decoder on another device or with other
  /// latent_channels than the pipeline's VAE.
  void setPreviewDecoder(std::shared_ptr<models::AutoencoderTiny> decoder);
  bool hasPreviewDecoder() const;
  /// A preview of latents [B, C, h, w] as uint8 [B, H, W, 3] images on the CPU (called on the
  /// generating thread from the step callback; adds no work when not called). kTaesd: the preview
  /// decoder's decode(latents) (TAESD's scaling_factor 1.0), postprocessed as the final image;
  /// kLatent2Rgb: rgb = Σ_c latents_c · M[c] with AUTOMATIC1111's SD 1.x/2.x or SDXL 4×3 matrix,
  /// then (x / 2 + 0.5).clamp(0, 1)·255, at the latent size. E_INVALID_ARGUMENT for kTaesd
  /// without a preview decoder or for latents with other than 4 channels (kLatent2Rgb).
  at::Tensor previewImages(const at::Tensor& latents, PreviewKind kind);

 protected:
  /// `live` counts the pipelines of the derived class alive in this process (liveCount()): +1 here,
  /// −1 in the destructor.
  explicit PipelineBase(std::atomic<int64_t>& live);
  /// The component's weight store, or nullptr when the pipeline has no such component.
  nn::Weights* store(const std::string& component) const;
  /// (name, store) of the components present, in the order text_encoder, text_encoder_2, unet, vae.
  std::vector<std::pair<std::string, nn::Weights*>> stores() const;
  /// The text encoders present (text_encoder, text_encoder_2).
  std::vector<models::CLIPTextModel*> textEncoders() const;
  /// Applies the toggles set since the last call; generate() calls it holding mutex_.
  void applyOptimizations();

  // ---- load (pipeline_base.cc; the numbered steps of each from_pretrained stay in its pipeline) ----
  /// The start of every load: prepareLoad (dtype check, device, CPU threads) into device_ / dtype_.
  void beginLoad(const LoadOptions& options);
  /// The folder whose configs describe the model: `path`, or options.configDir for a single file.
  /// E_INVALID_ARGUMENT for a single file without configDir (the message says it must be
  /// `configDirNeeds`); E_MODEL_NOT_FOUND when `path` or the folder is missing.
  /// The info of the derived pipeline (its vaeScaleFactor follows setVae); nullptr when it keeps none.
  virtual PipelineInfo* mutableInfo() { return nullptr; }
  static std::string configFolder(const std::string& path, const LoadOptions& options,
                                  const std::string& configDirNeeds);
  /// The end of every load, once the models are built: the UNet and text encoders to device_ /
  /// dtype_; the VAE to float32 when float16 meets force_upcast (diffusers' upcast_vae: SD/SDXL
  /// VAEs overflow in float16), else to dtype_ (vaeDtype_ records which); then `info`'s shared
  /// fields (modelPath = `path`, VAE scale factor, UNet sample size, the scheduler of
  /// `<configRoot>/scheduler/scheduler_config.json` (E_BAD_CONFIG without `_class_name`), device,
  /// dtype, components) and what disableFp8Storage needs to re-read the UNet (loadPath_, loadOptions_).
  void finishLoad(PipelineInfo& info, const std::string& configRoot, const std::string& path, const LoadOptions& options);
  /// The UNet weights as stored in the model file (diffusers names), for disableFp8Storage: the
  /// single file mapped again, or `<loadPath_>/unet` with the load's variant.
  nn::StateDict readUnetWeights() const;

  // ---- generate (the steps every __call__ shares; pipeline_base.cc) ----
  /// Held by generate() for the whole call: the pipeline lock, then the pending toggles applied,
  /// then no autograd and inference mode, and `aborted` as this thread's current abort check
  /// (runtime::CancellationScope: the models poll it inside the UNet, VAE and text encoder
  /// forwards); t0 is when the call started. `aborted` must outlive the scope.
  class GenerationScope {
    std::lock_guard<std::mutex> lock_;  // declared first: taken before t0 is read
    runtime::CpuCacheScope cpuCache_;   // freed activations are reused within the call; unmapped at its end

   public:
    GenerationScope(PipelineBase& pipe, const AbortCheck& aborted);
    const std::chrono::steady_clock::time_point t0;

   private:
    std::unique_ptr<at::NoGradGuard> noGrad_;
    std::unique_ptr<at::InferenceMode> inference_;
    runtime::CancellationScope cancellation_;  // ended first, the lock last
  };
  // ---- issue 19: memory guard (memory_guard.cc) ----
  /// Before a call's work (CPU pipelines): its peak memory estimated from `shape` and the toggles in
  /// effect, against runtime::availableMemory(memoryLimit). May turn on VAE slicing for this call
  /// (a batch's decode past the attention budget; same images) or VAE tiling (only when the untiled
  /// decode does not fit and the tiled one does; result.vaeAutoTiling). E_OUT_OF_MEMORY with the
  /// estimate, the memory available and what to change when the call cannot fit. Call with mutex_
  /// held (inside a GenerationScope).
  void guardMemory(const MemoryCallShape& shape, GenerateResult& result);
  /// The LoRA scale slots of the UNet and the text encoders (diffusers' cross_attention_kwargs scale).
  std::vector<double*> loraScaleSlots() const;
  /// E_INVALID_ARGUMENT unless height and width are positive multiples of the VAE scale factor.
  void checkSize(int64_t height, int64_t width) const;
  /// get_timesteps (img2img / inpaint): init_timestep = min(int(steps·strength), steps),
  /// t_start = steps − init_timestep; returns timesteps[t_start·order:] (possibly empty) and, with
  /// `setBeginIndex`, tells the scheduler (SD img2img and inpaint do; diffusers' SDXL img2img does not).
  static at::Tensor strengthTimesteps(schedulers::Scheduler& scheduler, const at::Tensor& timesteps,
                                      int64_t numInferenceSteps, double strength, bool setBeginIndex);
  /// The call's CPU generators: one seeded with `seed` for the whole batch when `seeds` is empty
  /// (diffusers' `generator=torch.Generator("cpu").manual_seed(seed)`), else one per image
  /// (diffusers' list of generators); E_INVALID_ARGUMENT unless `seeds` has `batch` entries.
  static runtime::Generators requestGenerators(uint64_t seed, const std::vector<uint64_t>& seeds, int64_t batch);
  /// prepare_latents (text-to-image): `given` float [B, C, h, w] checked against `shape`, or a draw
  /// from the CPU `generator` (float32, then moved: the same noise on every device; with a list,
  /// row i from generator i); in dtype_ on device_, times the scheduler's init_noise_sigma.
  /// E_INVALID_ARGUMENT for a mis-shaped `given`.
  at::Tensor initialNoiseLatents(const at::Tensor& given, const std::vector<int64_t>& shape,
                                 const runtime::Generators& generator, double initNoiseSigma) const;
  /// image_processor.preprocess: uint8 [H, W, 3] RGB → float32 [1, 3, H, W] in [-1, 1] (CPU).
  static at::Tensor imageToPixels(const at::Tensor& image);
  /// _encode_vae_image / prepare_latents: pixels float [1, 3, H, W] in [-1, 1] →
  /// vae.encode(·).latent_dist.sample(generator) · scaling_factor, [1, C, H/f, W/f] in dtype_ on
  /// device_ (VAE in vaeDtype_, channels-last and model offload as applied).
  at::Tensor encodeImageLatents(const at::Tensor& pixels, at::Generator* generator);
  /// img2img prepare_latents: the image's latents for a batch of `batch` rows. One generator: one
  /// encode, repeated (torch.cat([x] * k)). A list (diffusers' `isinstance(generator, list)`
  /// branch): row i sampled with generator i — from one encode, since the encoder is deterministic
  /// (diffusers encodes the repeated image row by row) — so each row equals the same seed run alone.
  at::Tensor encodeImageLatentsForBatch(const at::Tensor& pixels, const runtime::Generators& generator, int64_t batch);
  /// Init latents [1 or B, C, h, w] repeated to `batch` rows (torch.cat([x] * k));
  /// E_INVALID_ARGUMENT when the rows do not divide the batch.
  static at::Tensor repeatToBatch(const at::Tensor& initLatents, int64_t batch);
  /// img2img's add_noise: noise of the latents' shape drawn from the CPU `generator` (after the
  /// image's latent sample, as diffusers draws it), scheduler.add_noise(init, noise, timestep).
  at::Tensor addNoiseFromGenerator(schedulers::Scheduler& scheduler, const at::Tensor& initLatents,
                                   const runtime::Generators& generator, double timestep) const;
  /// Step "denoising loop": detail::denoise with the UNet on the GPU while it runs (model offload),
  /// the timesteps run and denoiseMs into `result`; returns the final latents.
  at::Tensor denoiseLatents(GenerateResult& result, schedulers::Scheduler& scheduler, const at::Tensor& latents,
                            const at::Tensor& timesteps, const at::Tensor& encoderHiddenStates,
                            const models::UNetAddedCond* added, double guidanceScale, const runtime::Generators& generator,
                            double eta, const StepCallback& onStep, const AbortCheck& aborted,
                            const ControlHook* control = nullptr);
  /// The end of every generate(): the final latents (float32, CPU) into `result`, E_ABORTED when
  /// `aborted` says so, then — unless `outputLatent` — the VAE decode to uint8 [B, H, W, 3] images
  /// (with the applied channels-last and model-offload toggles), decodeMs and totalMs since `t0`.
  /// A decode in a reduced-precision vaeDtype_ (float16 without force_upcast, bfloat16) that gives
  /// NaN/inf is done again in float32 (diffusers' force_upcast: the SDXL VAE overflows in float16):
  /// the VAE is upcast for good (vaeDtype_ = float32, as if force_upcast had applied at load, so
  /// the warning this causes comes once) and result.vaeUpcast says so. A non-finite float32 decode
  /// is E_NUMERICAL: never a black image. Call with mutex_ held.
  void finishGeneration(GenerateResult& result, const at::Tensor& latents, bool outputLatent, const AbortCheck& aborted,
                        std::chrono::steady_clock::time_point t0);

  std::shared_ptr<models::CLIPTextModel> textEncoder_;   // null for an SDXL refiner
  std::shared_ptr<models::CLIPTextModel> textEncoder2_;  // SDXL only
  std::shared_ptr<models::UNet2DConditionModel> unet_;
  std::shared_ptr<models::AutoencoderKL> vae_;      // the AutoencoderKL in use (the own one, or one set with setVae)
  std::shared_ptr<models::AutoencoderKL> ownVae_;   // the one loaded with the pipeline (finishLoad)
  std::shared_ptr<models::AutoencoderTiny> tinyVae_;  // when set, decodes and encodes instead of vae_
  std::shared_ptr<models::AutoencoderTiny> previewDecoder_;  // previewImages(kTaesd); under mutex_
  std::atomic<bool> hasPreviewDecoder_{false};               // previewDecoder_ set (read from any thread)
  /// The ControlNet hook of a request (empty when it has no ControlNets): pipelines/controlnet.cc.
  ControlHook controlHook(const GenerateRequest& req, bool cfg, int64_t batch, const at::Tensor& promptEmbeds,
                          const models::UNetAddedCond* added) const;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  int threads_ = 0;  // CPU intra-op threads of this pipeline's calls (LoadOptions::threads; 0 = all cores), set at load
  at::ScalarType vaeDtype_ = at::kFloat;
  std::string family_;  // "sd1" | "sd2" | "sdxl" (for messages)
  std::string loadPath_;
  LoadOptions loadOptions_;
  std::mutex mutex_;  // one generation (or LoRA/TI change) at a time
  Optimizations applied_;  // in effect (generate thread, under mutex_)
  /// The UNet's CUDA graphs while enableCudaGraphs is applied (under mutex_), else null.
  std::unique_ptr<UNetGraphs> unetGraphs_;

 private:
  /// Records the components of the loaded models (finishLoad) and returns them for the info.
  std::vector<ComponentInfo> recordComponents();
  void reloadUnetWeights(const std::vector<std::string>& names);
  /// The VAE to float32 for good (finishGeneration's re-decode), on device_ (back to pinned host
  /// memory under sequential offload; model offload moves it back itself), components re-recorded.
  void upcastVae();
  std::atomic<int> testNonFiniteDecodes_{0};
  mutable std::mutex optMutex_;
  Optimizations pending_;  // set from any thread under optMutex_
  std::vector<ComponentInfo> components_;
  std::vector<std::string> loraAdapters_;
  std::atomic<int64_t>& live_;
};

/// Parses "cpu" / "cuda" / "cuda:N"; E_DEVICE_UNAVAILABLE when CUDA is not in this build.
at::Device parseDevice(const std::string& device);

/// What every pipeline load does first: checks the dtype (float32 / float16 / bfloat16, else
/// E_INVALID_ARGUMENT), parses the device (parseDevice) and, on the CPU, sets the intra-op threads
/// (options.threads, 0 = all cores). Returns the device.
at::Device prepareLoad(const LoadOptions& options);

}  // namespace sd::pipelines
