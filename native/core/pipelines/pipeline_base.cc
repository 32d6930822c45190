// diffusers v0.30.3 DiffusionPipeline's enable_* toggles (pipelines/pipeline_utils.py,
// models/attention_processor.py) and the LoRA / textual-inversion loaders (loaders/lora_pipeline.py
// StableDiffusionLoraLoaderMixin and StableDiffusionXLLoraLoaderMixin, loaders/textual_inversion.py),
// shared by the SD 1.x/2.x and SDXL pipelines.
#include "pipelines/pipeline_base.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <thread>

#include <ATen/Parallel.h>

#include "io/checkpoint.h"
#include "loaders/lora.h"
#include "loaders/single_file.h"
#include "models/autoencoder_kl.h"
#include "models/autoencoder_tiny.h"
#include "models/clip_text_model.h"
#include "models/unet_2d_condition.h"
#include "nn/lora.h"
#include "nn/weight_storage.h"
#include "pipelines/pipeline_common.h"
#include "runtime/device_timer.h"
#include "runtime/dtype_support.h"
#include "runtime/threads.h"
#include "schedulers/scheduler.h"
#include "util/error.h"
#include "util/torch_compat.h"

namespace sd::pipelines {

using detail::invalid;

at::Device parseDevice(const std::string& device) {
  if (device == "cpu") return at::Device(at::kCPU);
  if (device.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA())
      fail(codes::kDeviceUnavailable, "device \"" + device +
                                          "\" requested but this build of sd-native has no CUDA (libtorch is CPU-only "
                                          "or no GPU is visible); use device \"cpu\" or build against a CUDA libtorch");
    try {
      return at::Device(device);
    } catch (const c10::Error&) {
      invalid("device \"" + device + "\" is not a valid device string (expected \"cpu\", \"cuda\" or \"cuda:N\")");
    }
  }
  invalid("device \"" + device + "\" is not supported (expected \"cpu\", \"cuda\" or \"cuda:N\")");
}

namespace {
int loadThreads(const LoadOptions& options) {  // 0 = all cores
  return options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
}
}  // namespace

at::Device prepareLoad(const LoadOptions& options) {
  if (options.dtype != at::kFloat && options.dtype != at::kHalf && options.dtype != at::kBFloat16)
    invalid("dtype must be float32, float16 or bfloat16");
  const at::Device device = parseDevice(options.device);
  if (device.is_cpu()) runtime::useIntraOpThreads(loadThreads(options));
  return device;
}

PipelineBase::PipelineBase(std::atomic<int64_t>& live) : live_(live) { ++live_; }
PipelineBase::~PipelineBase() { --live_; }

nn::Weights* PipelineBase::store(const std::string& component) const {
  if (component == "text_encoder") return textEncoder_ ? &textEncoder_->weights() : nullptr;
  if (component == "text_encoder_2") return textEncoder2_ ? &textEncoder2_->weights() : nullptr;
  if (component == "unet") return unet_ ? &unet_->weights() : nullptr;
  if (component == "vae") return vae_ ? &vae_->weights() : nullptr;
  return nullptr;
}

std::vector<std::pair<std::string, nn::Weights*>> PipelineBase::stores() const {
  std::vector<std::pair<std::string, nn::Weights*>> out;
  for (const char* name : {"text_encoder", "text_encoder_2", "unet", "vae"})
    if (nn::Weights* w = store(name)) out.emplace_back(name, w);
  return out;
}

std::vector<models::CLIPTextModel*> PipelineBase::textEncoders() const {
  std::vector<models::CLIPTextModel*> out;
  if (textEncoder_) out.push_back(textEncoder_.get());
  if (textEncoder2_) out.push_back(textEncoder2_.get());
  return out;
}

std::vector<ComponentInfo> PipelineBase::recordComponents() {
  std::vector<ComponentInfo> out;
  for (const auto& [name, w] : stores()) {
    const char* cls = name == "text_encoder"     ? "CLIPTextModel"
                      : name == "text_encoder_2" ? "CLIPTextModelWithProjection"
                      : name == "unet"           ? "UNet2DConditionModel"
                                                 : "AutoencoderKL";
    const at::ScalarType t = name == "vae" ? vaeDtype_ : dtype_;
    out.push_back({name, cls, runtime::dtypeName(t), w->numel(), w->nbytes()});
  }
  std::lock_guard<std::mutex> lock(optMutex_);
  components_ = out;
  return out;
}

// ---- load ----------------------------------------------------------------------------------------

void PipelineBase::beginLoad(const LoadOptions& options) {
  device_ = prepareLoad(options);
  threads_ = loadThreads(options);
  dtype_ = options.dtype;
}

std::string PipelineBase::configFolder(const std::string& path, const LoadOptions& options,
                                       const std::string& configDirNeeds) {
  // Single file: the weights come from `path`, everything else (configs, tokenizers, scheduler) from configDir.
  if (options.singleFile && options.configDir.empty())
    invalid("loading the single file " + path + " needs configDir: " + configDirNeeds);
  const std::string folder = options.singleFile ? options.configDir : path;
  if (!std::filesystem::exists(path)) fail(codes::kModelNotFound, "model not found: " + path);
  if (!std::filesystem::is_directory(folder)) fail(codes::kModelNotFound, "model folder not found: " + folder);
  return folder;
}

void PipelineBase::finishLoad(PipelineInfo& info, const std::string& configRoot, const std::string& path,
                              const LoadOptions& options) {
  unet_->to(device_, dtype_);
  for (models::CLIPTextModel* te : textEncoders()) te->to(device_, dtype_);
  // force_upcast (SD/SDXL VAEs overflow in float16): keep the VAE in float32 and run encode and
  // decode there, as diffusers' upcast_vae does; otherwise the VAE computes in the pipeline dtype.
  vaeDtype_ = (dtype_ == at::kHalf && vae_->forceUpcast()) ? at::kFloat : dtype_;
  vae_->to(device_, vaeDtype_);
  ownVae_ = vae_;

  info.modelPath = path;
  info.vaeScaleFactor = vae_->vaeScaleFactor();
  info.sampleSize = unet_->config().sampleSize;
  const std::string schedFile = (std::filesystem::path(configRoot) / "scheduler" / "scheduler_config.json").string();
  info.schedulerConfig = Json::parseFile(schedFile);
  const Json* cls = info.schedulerConfig.find("_class_name");
  if (!cls || !cls->isString()) fail(codes::kBadConfig, schedFile + ": field \"_class_name\" is required");
  info.schedulerName = cls->string();
  info.device = device_.str();
  info.dtype = runtime::dtypeName(dtype_);
  info.components = recordComponents();
  family_ = info.family;
  loadPath_ = path;
  loadOptions_ = options;
}

nn::StateDict PipelineBase::readUnetWeights() const {
  if (loadOptions_.singleFile) return std::move(loaders::loadSingleFile(loadPath_, loadOptions_.configDir).unet);
  return io::loadComponentWeights((std::filesystem::path(loadPath_) / "unet").string(), "diffusion_pytorch_model",
                                  loadOptions_.variant);
}

// ---- generate ------------------------------------------------------------------------------------

PipelineBase::GenerationScope::GenerationScope(PipelineBase& pipe, const AbortCheck& aborted)
    : lock_(pipe.mutex_), t0(std::chrono::steady_clock::now()), cancellation_(aborted) {
  // this pipeline's thread count on this worker thread (OpenMP's count is per thread)
  if (pipe.device_.is_cpu()) runtime::useIntraOpThreads(pipe.threads_);
  pipe.applyOptimizations();  // toggles set since the last call
  noGrad_ = std::make_unique<at::NoGradGuard>();
  inference_ = std::make_unique<at::InferenceMode>();
}

std::vector<double*> PipelineBase::loraScaleSlots() const {
  std::vector<double*> out;  // cross_attention_kwargs["scale"]: the UNet and the text encoders
  for (const auto& [name, w] : stores())
    if (name != "vae") out.push_back(&w->loraScale());
  return out;
}

void PipelineBase::checkSize(int64_t height, int64_t width) const {
  const int64_t f = vaeScaleFactor();
  if (height <= 0 || width <= 0 || height % f != 0 || width % f != 0)
    invalid("height and width must be positive multiples of " + std::to_string(f) + "; received " +
            std::to_string(width) + "x" + std::to_string(height));
}

at::Tensor PipelineBase::strengthTimesteps(schedulers::Scheduler& scheduler, const at::Tensor& timesteps,
                                           int64_t numInferenceSteps, double strength, bool setBeginIndex) {
  const int64_t initTimestep =
      std::min<int64_t>(static_cast<int64_t>(numInferenceSteps * strength), numInferenceSteps);
  const int64_t tStart = std::max<int64_t>(numInferenceSteps - initTimestep, 0);
  if (setBeginIndex) scheduler.setBeginIndex(tStart * scheduler.order());
  return timesteps.slice(0, tStart * scheduler.order());
}

runtime::Generators PipelineBase::requestGenerators(uint64_t seed, const std::vector<uint64_t>& seeds, int64_t batch) {
  if (seeds.empty()) return runtime::Generators::fromSeed(seed);
  runtime::Generators generators = runtime::Generators::fromSeeds(seeds);
  generators.checkBatch(batch);
  return generators;
}

at::Tensor PipelineBase::initialNoiseLatents(const at::Tensor& given, const std::vector<int64_t>& shape,
                                             const runtime::Generators& generator, double initNoiseSigma) const {
  at::Tensor latents;
  if (given.defined()) {
    if (given.sizes() != at::IntArrayRef(shape))
      invalid("latents must have shape " + nn::shapeString(shape));
    latents = given.to(at::kFloat);
  } else {
    latents = generator.randn(shape, at::TensorOptions().dtype(at::kFloat), "latents");  // CPU draw
  }
  return latents.to(device_, dtype_) * initNoiseSigma;
}

at::Tensor PipelineBase::imageToPixels(const at::Tensor& image) {
  return image.to(at::kFloat).div(255.0).mul(2.0).sub(1.0).permute({2, 0, 1}).unsqueeze(0);  // [1, 3, H, W]
}

at::Tensor PipelineBase::encodeImageLatents(const at::Tensor& pixels, at::Generator* generator) {
  at::Tensor x = pixels.to(device_, vaeDtype_);
  if (applied_.channelsLast) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  if (tinyVae_)  // retrieve_latents: AutoencoderTinyOutput.latents, no distribution and no draw
    return tinyVae_->encode(x).to(dtype_) * tinyVae_->scalingFactor();  // [1, C, h, w]
  detail::OnDevice vaeOnDevice(&vae_->weights(), device_, applied_.offload == "model");
  return vae_->encode(x).sample(generator).to(dtype_) * vae_->scalingFactor();  // [1, C, h, w]
}

at::Tensor PipelineBase::encodeImageLatentsForBatch(const at::Tensor& pixels, const runtime::Generators& generator,
                                                    int64_t batch) {
  if (!generator.isList() || tinyVae_)  // TAESD draws nothing: one encode serves every row
    return repeatToBatch(encodeImageLatents(pixels, generator.forItem(0)), batch);
  generator.checkBatch(batch);
  // diffusers encodes the repeated image row by row; the encoder is deterministic, so one encode
  // gives every row's latent distribution, and each row samples it with its own generator
  at::Tensor x = pixels.to(device_, vaeDtype_);
  if (applied_.channelsLast) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  detail::OnDevice vaeOnDevice(&vae_->weights(), device_, applied_.offload == "model");
  const models::DiagonalGaussian dist = vae_->encode(x);
  std::vector<at::Tensor> rows;
  rows.reserve(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) rows.push_back(dist.sample(generator.forItem(i)).to(dtype_) * vae_->scalingFactor());
  return at::cat(rows, 0);  // [B, C, h, w]
}

at::Tensor PipelineBase::repeatToBatch(const at::Tensor& initLatents, int64_t batch) {
  const int64_t rows = initLatents.size(0);
  if (batch > rows) {
    if (batch % rows != 0)
      invalid("cannot repeat " + std::to_string(rows) + " init latents to a batch of " + std::to_string(batch));
    return initLatents.repeat({batch / rows, 1, 1, 1});  // torch.cat([x] * k)
  }
  if (rows != batch) invalid("imageLatents has " + std::to_string(rows) + " rows; expected 1 or " + std::to_string(batch));
  return initLatents;
}

at::Tensor PipelineBase::addNoiseFromGenerator(schedulers::Scheduler& scheduler, const at::Tensor& initLatents,
                                               const runtime::Generators& generator, double timestep) const {
  at::Tensor noise = generator.randn(initLatents.sizes(), at::TensorOptions().dtype(at::kFloat), "noise").to(device_, dtype_);
  return scheduler.addNoise(initLatents, noise, timestep);
}

at::Tensor PipelineBase::denoiseLatents(GenerateResult& result, schedulers::Scheduler& scheduler,
                                        const at::Tensor& latents, const at::Tensor& timesteps,
                                        const at::Tensor& encoderHiddenStates, const models::UNetAddedCond* added,
                                        double guidanceScale, const runtime::Generators& generator, double eta,
                                        const StepCallback& onStep, const AbortCheck& aborted,
                                        const ControlHook* control) {
  runtime::DeviceTimer tDenoise(device_);  // the device's time (CUDA events), not the launches'
  detail::OnDevice unetOnDevice(&unet_->weights(), device_, applied_.offload == "model");
  at::Tensor out = detail::denoise(*unet_, scheduler, latents, timesteps, encoderHiddenStates, added, guidanceScale,
                                   generator, eta, onStep, aborted, result.timesteps, applied_.channelsLast, control,
                                   unetGraphs_.get());
  unetOnDevice.release();
  result.denoiseMs = tDenoise.stopMs();
  return out;
}

void PipelineBase::finishGeneration(GenerateResult& result, const at::Tensor& latents, bool outputLatent,
                                    const AbortCheck& aborted, std::chrono::steady_clock::time_point t0) {
  result.latents = latents.to(at::kFloat).cpu();
  runtime::retireCpuCache();  // the decode asks for other sizes: it recycles the denoising loop's cached buffers
  if (aborted && aborted()) fail(codes::kAborted, "generation aborted before decoding");
  if (!outputLatent) {
    runtime::DeviceTimer tDecode(device_);
    detail::OnDevice vaeOnDevice(&vae_->weights(), device_, applied_.offload == "model");
    auto decode = [&] {  // [B, 3, H, W]; the test hook turns the next n decodes into NaN
      at::Tensor out = tinyVae_ ? detail::decodeLatents(*tinyVae_, latents)
                                : detail::decodeLatents(*vae_, latents, vaeDtype_, applied_.channelsLast);
      if (testNonFiniteDecodes_ > 0) {
        --testNonFiniteDecodes_;
        out = at::full_like(out, std::numeric_limits<float>::quiet_NaN());
      }
      return out;
    };
    at::Tensor image = decode();
    bool finite = detail::allFinite(image);
    if (!finite && vaeDtype_ != at::kFloat && vae_ == ownVae_ && !tinyVae_) {  // a VAE set with setVae stays as given
      // diffusers' force_upcast: the SDXL VAE (and others) overflow in float16; decode in float32
      upcastVae();
      result.vaeUpcast = true;
      image = decode();
      finite = detail::allFinite(image);
    }
    if (!finite)
      fail(codes::kNumerical, std::string("the decoded image contains NaN or infinity") +
                                  (result.vaeUpcast ? " also when decoded again in float32" : " in float32") +
                                  " (the latents or the VAE weights are not finite; a float16/bfloat16 UNet "
                                  "overflow? try dtype \"float32\")");
    result.images = detail::postprocessImages(image);  // [B, H, W, 3] uint8, CPU
    vaeOnDevice.release();
    result.decodeMs = tDecode.stopMs();
  }
  result.totalMs = detail::msSince(t0);
}

void PipelineBase::upcastVae() {
  vae_->to(device_, at::kFloat);  // keeps each weight's memory format (channels-last)
  if (applied_.offload == "sequential") nn::offloadToPinnedCpu(vae_->weights());
  vaeDtype_ = at::kFloat;
  recordComponents();
}

// ---- Optimizations (diffusers enable_* toggles) -----------------------------------------------

void PipelineBase::setAttentionOptions(const nn::AttentionOptions& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  {
    std::lock_guard<std::mutex> optLock(optMutex_);  // keep the pending toggles in step
    pending_.attention = options;
  }
  applied_.attention = options;
  unet_->setAttentionOptions(options);
  *vae_->attentionOptions() = options;
  for (models::CLIPTextModel* te : textEncoders()) *te->attentionOptions() = options;
}

void PipelineBase::setOptimizations(const Optimizations& next) {
  const int64_t slice = next.attention.sliceSize;
  if (slice < 0 && slice != nn::AttentionOptions::kSliceAuto && slice != nn::AttentionOptions::kSliceMax)
    invalid("attention slice size must be 'auto', 'max' or a positive integer; received " + std::to_string(slice));
  if (next.attention.backend == nn::AttentionOptions::Backend::kSdpa && !nn::sdpaAvailable())
    fail(codes::kUnsupportedModel,
         "enableMemoryEfficientAttention needs at::scaled_dot_product_attention (libtorch >= 2.0); this build uses "
         "libtorch " + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
             ". Use enableAttentionSlicing() to bound attention memory instead");
  if (next.memoryLimit < 0) invalid("memoryLimit must be a non-negative number of bytes; received " + std::to_string(next.memoryLimit));
  if (!next.fp8Format.empty()) nn::fp8StorageDtype(next.fp8Format);  // E_INVALID_ARGUMENT for other formats
  if (!next.offload.empty()) {
    if (next.offload != "model" && next.offload != "sequential")
      invalid("offload must be \"model\" or \"sequential\"; received \"" + next.offload + "\"");
    if (!device_.is_cuda())
      fail(codes::kDeviceUnavailable,
           std::string(next.offload == "model" ? "enableModelCpuOffload" : "enableSequentialCpuOffload") +
               " moves weights between host memory and a CUDA GPU; this pipeline runs on " + device_.str() +
               " (load it with device \"cuda\")");
  }
  if (next.cudaGraphs) {
    if (!device_.is_cuda() && !cudaGraphsEmulated())
      fail(codes::kDeviceUnavailable, "enableCudaGraphs captures the UNet's CUDA kernels; this pipeline runs on " +
                                          device_.str() + " (load it with device \"cuda\")");
    if (!next.offload.empty())
      invalid("CUDA graphs replay the UNet with its weights at fixed GPU addresses, which CPU offload moves; "
              "disable one of them (disableCpuOffload or disableCudaGraphs)");
    if (device_.is_cuda() && !runtime::DeviceGraph::cudaGraphsBuilt())
      fail(codes::kUnsupportedModel,
           "enableCudaGraphs: this build of sd-native has no CUDA graph support (it was not compiled against a "
           "CUDA libtorch with CMake)");
  }
  std::lock_guard<std::mutex> lock(optMutex_);
  if (!next.offload.empty() && (tinyVae_ || vae_ != ownVae_))  // setVae/ swaps under optMutex_ too
    invalid("CPU offload moves the pipeline's own models; put the pipeline's own VAE back (vae = null) before enabling it");
  pending_ = next;
}

Optimizations PipelineBase::optimizations() const {
  std::lock_guard<std::mutex> lock(optMutex_);
  return pending_;
}

UNetGraphs::Stats PipelineBase::cudaGraphStats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return unetGraphs_ ? unetGraphs_->stats() : UNetGraphs::Stats{};
}

std::vector<ComponentInfo> PipelineBase::components() const {
  std::lock_guard<std::mutex> lock(optMutex_);
  return components_;
}

void PipelineBase::reloadUnetWeights(const std::vector<std::string>& names) {
  if (names.empty()) return;
  nn::StateDict fresh = readUnetWeights();
  auto& tensors = unet_->weights().tensors();
  for (const auto& name : names) {
    auto it = fresh.find(name);
    if (it == fresh.end())
      fail(codes::kBadCheckpoint, "disableFp8Storage re-reads the UNet weights from " + loadPath_ + " but \"" + name +
                                      "\" is no longer there");
    at::Tensor& t = tensors.at(name);
    t = it->second.to(t.device(), dtype_);
  }
}

void PipelineBase::applyOptimizations() {
  Optimizations want;
  {
    std::lock_guard<std::mutex> lock(optMutex_);
    want = pending_;
  }
  Optimizations& have = applied_;
  // Attention and VAE flags are plain switches: set them every call.
  unet_->setAttentionOptions(want.attention);
  *vae_->attentionOptions() = want.attention;
  for (models::CLIPTextModel* te : textEncoders()) *te->attentionOptions() = want.attention;
  vae_->setSlicing(want.vaeSlicing);
  if (want.vaeTiling != vae_->tiling()) vae_->setTiling(want.vaeTiling);

  const bool fp8Changed = want.fp8Format != have.fp8Format;
  if (fp8Changed) {
    if (!have.fp8Format.empty()) reloadUnetWeights(nn::fp8StoredNames(unet_->weights()));  // exact floats back
    have.fp8Format.clear();
    if (!want.fp8Format.empty()) nn::storeFp8(unet_->weights(), want.fp8Format);
    have.fp8Format = want.fp8Format;
  }
  if (fp8Changed || want.channelsLast != have.channelsLast) {
    const auto format = want.channelsLast ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    nn::setMemoryFormat(unet_->weights(), format);
    nn::setMemoryFormat(vae_->weights(), format);
    have.channelsLast = want.channelsLast;
  }
  if (want.offload != have.offload) {
    for (const auto& [name, w] : stores()) {
      if (want.offload.empty())
        nn::moveTo(*w, device_);
      else
        nn::offloadToPinnedCpu(*w);
    }
  }
  // CUDA graphs: a toggle that changes what the UNet runs drops the captured graphs (the graphs
  // also check a fingerprint of the weights, LoRA and attention state at every forward)
  const bool unetToggled = fp8Changed || want.channelsLast != have.channelsLast || want.offload != have.offload ||
                           want.attention.sliceSize != have.attention.sliceSize ||
                           want.attention.backend != have.attention.backend ||
                           want.attention.budgetBytes != have.attention.budgetBytes;
  if (!want.cudaGraphs) {
    unetGraphs_.reset();
  } else if (!unetGraphs_) {
    unetGraphs_ = std::make_unique<UNetGraphs>(
        device_.is_cuda() ? runtime::DeviceGraph::Kind::kCuda : runtime::DeviceGraph::Kind::kEmulated, device_);
  } else if (unetToggled) {
    unetGraphs_->clear();
  }
  have = want;

  std::lock_guard<std::mutex> lock(optMutex_);
  for (auto& c : components_)
    if (nn::Weights* w = store(c.name)) c.bytes = w->nbytes();
}

// ---- LoRA (diffusers load_lora_weights / set_adapters / fuse_lora / unfuse_lora) ----------------

LoraLoadInfo PipelineBase::loadLora(const std::string& path, const std::string& adapterName, double weight) {
  if (!std::isfinite(weight)) invalid("LoRA weight must be a finite number");
  if (!std::filesystem::is_regular_file(path)) fail(codes::kModelNotFound, "LoRA file not found: " + path);
  loaders::LoraFile file = loaders::readLoraFile(path);  // outside the lock: parsing does not touch the model
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string adapter =
      adapterName.empty() ? "default_" + std::to_string(loraAdapters_.size()) : adapterName;
  if (std::find(loraAdapters_.begin(), loraAdapters_.end(), adapter) != loraAdapters_.end())
    invalid("a LoRA adapter named \"" + adapter + "\" is already loaded; pass another adapterName or unload it first");
  for (const auto& [name, w] : stores())
    if (nn::anyLoraFused(*w)) invalid("a LoRA is fused into the weights; call unfuseLora() before loading another");

  const std::vector<loaders::LoraMatch> matches =
      loaders::matchLoraFile(file, [this](const std::string& c) { return store(c); }, family_);
  LoraLoadInfo info{adapter, 0, 0, 0};
  for (const auto& [component, m] : matches) {
    const auto n = static_cast<int64_t>(m.size());
    (component == "unet" ? info.unetModules : component == "text_encoder" ? info.textEncoderModules
                                                                          : info.textEncoder2Modules) += n;
  }
  if (info.unetModules + info.textEncoderModules + info.textEncoder2Modules == 0)
    fail(codes::kBadCheckpoint, path + ": the file holds no LoRA weights");
  for (auto& [component, m] : matches)
    for (auto& [slot, pair] : m) loaders::attachLora(*store(component), *slot, *pair, adapter, weight);
  loraAdapters_.push_back(adapter);
  return info;
}

void PipelineBase::setLoraAdapters(const std::vector<std::string>& names, const std::vector<double>& weights) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (names.size() != weights.size()) invalid("setAdapters: names and weights must have the same length");
  for (const auto& n : names) {
    if (std::find(loraAdapters_.begin(), loraAdapters_.end(), n) != loraAdapters_.end()) continue;
    std::string loaded;
    for (const auto& a : loraAdapters_) loaded += (loaded.empty() ? "" : ", ") + a;
    invalid("setAdapters: no LoRA adapter named \"" + n + "\" is loaded (loaded: " +
            (loaded.empty() ? std::string("none") : loaded) + ")");
  }
  for (double w : weights)
    if (!std::isfinite(w)) invalid("setAdapters: weights must be finite numbers");
  for (const auto& [name, w] : stores())
    if (nn::anyLoraFused(*w)) invalid("setAdapters: a LoRA is fused into the weights; call unfuseLora() first");
  for (const auto& [name, w] : stores()) {
    for (auto& [module, slot] : w->loraSlots()) {
      for (nn::LoraDelta& d : slot->deltas) {
        auto it = std::find(names.begin(), names.end(), d.adapter);
        d.active = it != names.end();
        if (d.active) d.weight = weights[static_cast<size_t>(it - names.begin())];
      }
    }
  }
}

int64_t PipelineBase::fuseLora(double scale) {
  if (!std::isfinite(scale)) invalid("fuseLora: loraScale must be a finite number");
  std::lock_guard<std::mutex> lock(mutex_);
  if (loraAdapters_.empty()) invalid("fuseLora: no LoRA is loaded");
  int64_t n = 0;
  for (const auto& [name, w] : stores()) n += nn::fuseLora(*w, scale);
  return n;
}

int64_t PipelineBase::unfuseLora() {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t n = 0;
  for (const auto& [name, w] : stores()) n += nn::unfuseLora(*w);
  return n;
}

void PipelineBase::unloadLora(const std::string& adapter) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!adapter.empty() && std::find(loraAdapters_.begin(), loraAdapters_.end(), adapter) == loraAdapters_.end())
    invalid("no LoRA adapter named \"" + adapter + "\" is loaded");
  for (const auto& [name, w] : stores()) nn::removeLora(*w, adapter);
  if (adapter.empty())
    loraAdapters_.clear();
  else
    loraAdapters_.erase(std::find(loraAdapters_.begin(), loraAdapters_.end(), adapter));
}

std::vector<std::string> PipelineBase::loraAdapters() {
  std::lock_guard<std::mutex> lock(mutex_);
  return loraAdapters_;
}

at::Tensor PipelineBase::componentWeight(const std::string& component, const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  const nn::Weights* w = store(component);
  if (!w) {
    std::string have;
    for (const auto& [n, s] : stores()) have += (have.empty() ? "\"" : ", \"") + n + "\"";
    invalid("component must be one of " + have + "; received \"" + component + "\"");
  }
  auto it = w->tensors().find(name);
  if (it == w->tensors().end()) invalid(component + " has no weight \"" + name + "\"");
  if (nn::isFp8Storage(it->second)) return nn::decodeFp8Storage(it->second, at::kCPU, at::kFloat);
  return it->second.to(at::kCPU, at::kFloat).clone();
}

// ---- Textual inversion (diffusers load_textual_inversion: resize_token_embeddings + rows) --------

namespace {
models::CLIPTextModel* encoderOrFail(const std::shared_ptr<models::CLIPTextModel>& te1,
                                     const std::shared_ptr<models::CLIPTextModel>& te2, const std::string& component) {
  models::CLIPTextModel* te = component == "text_encoder" ? te1.get() : component == "text_encoder_2" ? te2.get() : nullptr;
  if (!te)
    invalid("this pipeline has no text encoder \"" + component + "\" (" +
            (te1 ? std::string("text_encoder") : std::string()) + (te1 && te2 ? ", " : "") +
            (te2 ? std::string("text_encoder_2") : std::string()) + ")");
  return te;
}
}  // namespace

void PipelineBase::setTokenEmbeddings(const std::string& component, int64_t firstId, const at::Tensor& rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  models::CLIPTextModel* te = encoderOrFail(textEncoder_, textEncoder2_, component);
  const int64_t d = te->config().hiddenSize;
  if (!rows.defined() || rows.dim() != 2 || rows.size(1) != d)
    fail(codes::kBadCheckpoint, "the embedding has vectors of width " +
                                    (rows.defined() && rows.dim() == 2 ? std::to_string(rows.size(1)) : nn::shapeString(rows.sizes())) +
                                    " but " + component + " of this " + family_ + " model needs " + std::to_string(d) +
                                    " (an embedding made for another model family?)");
  te->setTokenEmbeddings(firstId, rows);
}

int64_t PipelineBase::vocabSize(const std::string& component) {
  std::lock_guard<std::mutex> lock(mutex_);
  return encoderOrFail(textEncoder_, textEncoder2_, component)->vocabSize();
}

}  // namespace sd::pipelines
