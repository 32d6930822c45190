// The diffusers noise schedulers (diffusers v0.30.3, src/diffusers/schedulers/scheduling_*.py),
// behind one interface modelled on diffusers' SchedulerMixin.
//
// Supported classes (diffusers class names): DDIMScheduler, PNDMScheduler, LMSDiscreteScheduler,
// EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler,
// HeunDiscreteScheduler, UniPCMultistepScheduler, LCMScheduler.
//
// Numerics follow diffusers exactly: what diffusers computes with numpy (timestep spacing, sigma
// interpolation, Karras sigmas) is computed here in double with numpy's formulas; what diffusers
// computes with torch (betas, alphas_cumprod, every per-step coefficient) is computed with the
// same ATen ops on 0-d float32 CPU tensors (numpy's float32/float64 promotion rules and its x86
// SIMD float32 log included). On libtorch 1.13 CPU the timesteps, sigmas and alphas_cumprod of
// every golden case (fixtures/goldens/*/cases.json, kind "scheduler") are bit-identical, and so is
// every step fed diffusers' own inputs.
//
// Randomness (fixtures/README.md "Conventions" 1): pass the pipeline's CPU generator to every
// step(); EulerAncestral (always), DDIM (eta > 0), LCM (all but the last step) and the SDE
// DPM-Solvers draw randn(model_output.shape) from it in diffusers' order. EulerDiscrete draws one
// unused randn per step too, as diffusers 0.30.3 does (with a generator only), so the generator's
// state after a run matches diffusers'.
//
// Typical txt2img loop (StableDiffusionPipeline.__call__):
//
//   auto s = createScheduler("EulerDiscreteScheduler", config);  // scheduler_config.json (+ overrides)
//   s->setTimesteps(25);
//   at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
//   at::Tensor latents = at::randn({B, 4, h, w}, gen) * s->initNoiseSigma();   // CPU fp32, then .to(device)
//   for (int64_t i = 0; i < s->timesteps().size(0); ++i) {
//     double t = s->timesteps()[i].item<double>();
//     at::Tensor xin = s->scaleModelInput(latents, t);       // CFG: scaleModelInput(cat([latents]*2), t)
//     at::Tensor eps = unet(xin, s->timesteps()[i], ...);     // the 0-d timestep as is (int64/float32)
//     latents = s->step(eps, t, latents, &gen);                // eta: DDIM only
//   }
//
// img2img (StableDiffusionImg2ImgPipeline.get_timesteps / prepare_latents):
//
//   s->setTimesteps(steps);
//   int64_t initTimestep = std::min<int64_t>(int64_t(steps * strength), steps);
//   int64_t tStart = std::max<int64_t>(steps - initTimestep, 0);
//   // denoise over timesteps()[tStart * order():] (Heun has order 2), and tell the scheduler:
//   s->setBeginIndex(tStart * s->order());
//   double t0 = s->timesteps()[tStart * s->order()].item<double>();
//   latents = s->addNoise(imageLatents, noise, t0);   // noise = randn(imageLatents.shape, gen); no initNoiseSigma
//
// Threading: a scheduler holds per-run state (step index, model-output history); use one per
// concurrent run. setTimesteps() resets all of it, so a scheduler can be reused run after run.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/generators.h"
#include "util/json.h"

namespace sd::schedulers {

/// One diffusers scheduler. All tensors returned by the accessors live on the CPU.
class Scheduler {
 public:
  virtual ~Scheduler() = default;

  /// The diffusers class name, e.g. "EulerDiscreteScheduler".
  virtual const char* name() const = 0;

  /// diffusers `set_timesteps(num_inference_steps)`: computes timesteps() and sigmas() and resets
  /// every per-run state (step index, begin index, model-output history).
  /// @throws SdException E_INVALID_ARGUMENT when numInferenceSteps < 1 or > num_train_timesteps
  ///   (LCMScheduler: > original_inference_steps).
  virtual void setTimesteps(int64_t numInferenceSteps) = 0;

  /// `scheduler.timesteps`, [numSteps] on CPU: int64 for DDIM/PNDM/DPMSolver/UniPC/LCM, float32
  /// for Euler/EulerAncestral/LMS/Heun (e.g. 999.0), exactly as diffusers 0.30.3. Heun has
  /// 2·steps−1 entries, PNDM (skip_prk_steps) steps+1. Undefined before setTimesteps().
  const at::Tensor& timesteps() const { return timesteps_; }
  /// `scheduler.sigmas` (float32 [len(timesteps)+1], CPU) for the sigma-based schedulers
  /// (Euler, EulerAncestral, LMS, Heun, DPMSolver, UniPC); nullopt for DDIM/PNDM/LCM.
  std::optional<at::Tensor> sigmas() const;
  /// `init_noise_sigma`: 1.0, or for the Karras-style schedulers max(sigmas) ("linspace" /
  /// "trailing" spacing) or sqrt(max(sigmas)²+1) ("leading"), computed in float32 as diffusers.
  /// Initial txt2img latents are randn · initNoiseSigma(). Valid after setTimesteps().
  virtual double initNoiseSigma() const { return 1.0; }
  /// `scheduler.order`: 2 for HeunDiscreteScheduler, 1 otherwise (img2img slices by it).
  virtual int64_t order() const { return 1; }
  /// `alphas_cumprod`: float32 [num_train_timesteps], CPU (after rescale_betas_zero_snr when set).
  const at::Tensor& alphasCumprod() const { return alphasCumprod_; }
  int64_t numTrainTimesteps() const { return numTrainTimesteps_; }

  /// diffusers `scale_model_input(sample, t)`: sample / sqrt(sigma²+1) for the Karras-style
  /// schedulers, identity otherwise. sample: any shape, dtype and device; returns the same.
  /// For the sigma-based schedulers the first call fixes the step index from `timestep`.
  virtual at::Tensor scaleModelInput(const at::Tensor& sample, double timestep);

  /// diffusers `step(model_output, t, sample, ...).prev_sample`.
  /// @param modelOutput the UNet output (after CFG) [B, C, H, W], same shape as sample.
  /// @param timestep    the current entry of timesteps() (as a double: int64 timesteps are exact).
  /// @param sample      the current latents [B, C, H, W]; any dtype/device.
  /// @param generator   a CPU generator (torch.Generator("cpu")), or one per batch item (a list), for
  ///                    ancestral/eta noise, drawn as diffusers' randn_tensor does (on the CPU in
  ///                    model_output's dtype, then moved to its device; with a list, row i from
  ///                    generator i); none uses the device's default generator.
  /// @param eta         DDIMScheduler only (η of the DDIM paper; 0 = deterministic).
  /// @returns prev_sample, model_output's dtype and device (for LCMScheduler: the next noisy sample;
  ///          the denoised x0 is predOriginalSample()).
  /// @throws SdException E_INVALID_ARGUMENT before setTimesteps(), for a timestep that is not in
  ///   the schedule, or for mismatched shapes.
  virtual at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sample,
                          const runtime::Generators& generator = {}, double eta = 0.0) = 0;

  /// The x0 prediction of the last step() (`pred_original_sample`; LCM's `denoised`); undefined
  /// when the scheduler does not form one (PNDM, Heun, UniPC) or before the first step.
  const at::Tensor& predOriginalSample() const { return predOriginalSample_; }

  /// diffusers `add_noise(original_samples, noise, timesteps)` with one timestep for the batch:
  /// DDPM-style sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·noise (DDIM/PNDM/LCM), x0 + σ·noise (Euler/LMS/Heun),
  /// α_t·x0 + σ_t·noise (DPMSolver/UniPC). original/noise: same shape, any dtype/device.
  /// For the sigma-based schedulers the sigma is looked up as diffusers does: by the begin index
  /// when setBeginIndex() was called (img2img), else by the position of `timestep` in timesteps().
  virtual at::Tensor addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) = 0;

  /// diffusers `set_begin_index(begin_index)`: the step index the first step()/scaleModelInput()
  /// starts from (img2img: tStart · order()). Call after setTimesteps() (which clears it). A no-op
  /// for DDIM and PNDM, which index by timestep value (diffusers' classes lack the method).
  /// @throws SdException E_INVALID_ARGUMENT when beginIndex is outside [0, len(timesteps)).
  virtual void setBeginIndex(int64_t beginIndex);

 protected:
  Scheduler() = default;

  int64_t numTrainTimesteps_ = 1000;
  at::Tensor betas_;          // float32 [T]
  at::Tensor alphasCumprod_;  // float32 [T]
  at::Tensor timesteps_;      // int64 or float32 [N]
  at::Tensor sigmas_;         // float32 [N+1] or undefined
  at::Tensor predOriginalSample_;
  std::optional<int64_t> stepIndex_;
  std::optional<int64_t> beginIndex_;
  int64_t numInferenceSteps_ = 0;  // 0 until setTimesteps()

  /// E_INVALID_ARGUMENT unless setTimesteps() ran.
  void requireTimesteps(const char* what) const;
  /// E_INVALID_ARGUMENT unless 1 <= n <= numTrainTimesteps_.
  void checkNumSteps(int64_t n) const;
  /// diffusers `_init_step_index`: beginIndex_ or the position of `timestep` (second match when
  /// it appears twice); `lastWhenMissing` gives DPMSolver/UniPC's "len(timesteps)-1" fallback.
  void initStepIndex(double timestep, bool lastWhenMissing = false);
  /// diffusers `index_for_timestep`.
  int64_t indexForTimestep(double timestep, bool lastWhenMissing = false) const;
};

/// The supported class names, in a stable order.
const std::vector<std::string>& schedulerNames();

/// Builds a scheduler from its diffusers class name and config (scheduler_config.json merged with
/// overrides, i.e. what `Cls.from_config(config, **overrides)` sees). Fields missing from the
/// config take that class's diffusers default; unknown fields (other classes' options, "_class_name")
/// are ignored; `lambda_min_clipped` accepts a number, the string "-Infinity" or null (= -inf).
/// @throws SdException E_UNSUPPORTED_MODEL for an unknown class name (the message lists the
///   supported ones) or an option value diffusers has but this port does not run;
///   E_BAD_CONFIG (naming the field) for a field of the wrong type or an invalid value.
std::unique_ptr<Scheduler> createScheduler(const std::string& className, const Json& config);

}  // namespace sd::schedulers
