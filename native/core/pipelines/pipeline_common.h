// Internal helpers shared by the Stable Diffusion pipelines (SD 1.x/2.x and SDXL): the denoising
// loop and the VAE decode + postprocess of diffusers v0.30.3 (pipeline_stable_diffusion.py and
// pipeline_stable_diffusion_xl.py, `__call__` steps "Denoising loop" and the decode that follows).
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <utility>
#include <string>
#include <vector>

#include "nn/weight_storage.h"
#include "pipelines/stable_diffusion.h"
#include "util/error.h"

namespace sd::models {
struct UNetAddedCond;
class AutoencoderTiny;
}
namespace sd::schedulers {
class Scheduler;
}

namespace sd::pipelines::detail {

/// Milliseconds since t0 (pipeline timings).
inline double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

/// Throws SdException(E_INVALID_ARGUMENT, msg).
[[noreturn]] inline void invalid(const std::string& msg) { fail(codes::kInvalidArgument, msg); }

/// diffusers' scale_lora_layers … unscale_lora_layers: sets the LoRA scale of one call on the
/// given weight stores and puts 1.0 back when it goes out of scope (also on errors).
/// E_INVALID_ARGUMENT for a non-finite scale.
class ScopedLoraScale {
 public:
  ScopedLoraScale(std::vector<double*> slots, double scale) : slots_(std::move(slots)) {
    if (!std::isfinite(scale)) invalid("loraScale must be a finite number");
    for (double* s : slots_) *s = scale;
  }
  ~ScopedLoraScale() {
    for (double* s : slots_) *s = 1.0;
  }
  ScopedLoraScale(const ScopedLoraScale&) = delete;
  ScopedLoraScale& operator=(const ScopedLoraScale&) = delete;

 private:
  std::vector<double*> slots_;
};

/// Model CPU offload (diffusers enable_model_cpu_offload): while alive, a model's weights are on
/// the GPU; release() (or the destructor, also on errors) sends them back to pinned host memory.
/// Inactive (does nothing) when `active` is false.
class OnDevice {
 public:
  OnDevice(nn::Weights* w, at::Device device, bool active) : w_(active ? w : nullptr) {
    if (w_) nn::moveTo(*w_, device);
  }
  ~OnDevice() {
    try {
      release();
    } catch (...) {  // never throw from a destructor; the weights stay where they are
    }
  }
  void release() {
    if (!w_) return;
    nn::Weights* w = w_;
    w_ = nullptr;
    nn::offloadToPinnedCpu(*w);
  }
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;

 private:
  nn::Weights* w_;
};

/// AUTOMATIC1111's "Original" emphasis (modules/sd_hijack_clip.py process_tokens) on one 77-token
/// chunk: z [P, 77, D] · weights [P, 77], then rescaled so the mean of z is what it was.
at::Tensor applyEmphasis(const at::Tensor& z, const at::Tensor& weights);

/// The denoising loop over `timesteps` (0-d entries, int64 or float32 as the scheduler made them):
/// x_in = cat([latents]·2) when guidanceScale > 1, scale_model_input, unet(x_in, t,
/// encoderHiddenStates, added), CFG (uncond first), scheduler.step(…, generator, eta). The
/// scheduler's noise comes from `generator`'s noise bank (all steps' draws made at the first,
/// in diffusers' order, one device copy: no host synchronisation per step).
/// latents [B, C, h, w]; encoderHiddenStates [2B or B, 77, D]; added (SDXL) rows as the batch.
/// Appends each timestep run to `ran` and calls onStep after each step; `aborted` is polled
/// before each step (E_ABORTED). `channelsLast` converts the UNet input to channels_last
/// (enableChannelsLast). `control` (when set and non-empty) gives the ControlNet residuals of each
/// UNet call. `graphs` (enableCudaGraphs), when set, runs the UNet calls without ControlNet
/// residuals through its captured graphs, with the timesteps moved to the UNet's device once.
/// Returns the final latents.
at::Tensor denoise(const models::UNet2DConditionModel& unet, schedulers::Scheduler& scheduler, at::Tensor latents,
                   const at::Tensor& timesteps, const at::Tensor& encoderHiddenStates,
                   const models::UNetAddedCond* added, double guidanceScale, const runtime::Generators& generator, double eta,
                   const StepCallback& onStep, const AbortCheck& aborted, std::vector<double>& ran,
                   bool channelsLast = false, const ControlHook* control = nullptr, UNetGraphs* graphs = nullptr);

/// vae.decode(latents / scaling_factor) in `vaeDtype` → float32 [B, 3, H, W] on the VAE's device,
/// as decoded (it may hold NaN/inf: check with allFinite). `channelsLast`: feed the models
/// NHWC-strided activations (enableChannelsLast).
at::Tensor decodeLatents(models::AutoencoderKL& vae, const at::Tensor& latents, at::ScalarType vaeDtype,
                         bool channelsLast = false);

/// tiny.decode(latents / scaling_factor) in the tiny VAE's dtype → float32 [B, 3, H, W] (diffusers'
/// decode with an AutoencoderTiny as the pipeline's vae).
at::Tensor decodeLatents(models::AutoencoderTiny& vae, const at::Tensor& latents);

/// True when every element of `t` is finite (one host sync on a device tensor).
bool allFinite(const at::Tensor& t);

/// VaeImageProcessor.postprocess of a finite decoded image float [B, 3, H, W] in [-1, 1]:
/// (x / 2 + 0.5).clamp(0, 1) → NHWC → round(x · 255) as uint8 [B, H, W, 3] on the CPU.
at::Tensor postprocessImages(const at::Tensor& image);

}  // namespace sd::pipelines::detail
