// Internal helpers shared by the scheduler ports (not part of the public interface):
// beta schedules, numpy-exact emulation of the timestep/sigma arithmetic diffusers does in
// numpy (float64), and diffusers' randn_tensor.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "runtime/generators.h"

#include "config/config_reader.h"
#include "schedulers/scheduler.h"

namespace sd::schedulers::detail {

// ---- config ------------------------------------------------------------------------------------

/// A ConfigReader over the merged scheduler config; errors name "<className> config".
ConfigReader configReader(const Json& config, const char* className);
/// A string field restricted to `allowed` (E_BAD_CONFIG listing them otherwise).
std::string enumField(const ConfigReader& cfg, const std::string& key, const std::string& fallback,
                      const std::vector<std::string>& allowed);
/// E_UNSUPPORTED_MODEL: "<className>: <key> = <value> is not supported by sd-native (...)".
[[noreturn]] void unsupported(const char* className, const std::string& key, const std::string& value,
                              const std::string& hint = "");

// ---- betas -------------------------------------------------------------------------------------

struct BetaDefaults {
  double betaStart = 0.0001;
  double betaEnd = 0.02;
  const char* betaSchedule = "linear";
  bool allowExp = false;  // HeunDiscreteScheduler also has beta_schedule "exp"
};

/// Reads num_train_timesteps / beta_start / beta_end / beta_schedule / trained_betas and returns
/// the float32 betas [T] exactly as diffusers builds them (torch.linspace in float32; the
/// squaredcos_cap_v2 schedule = betas_for_alpha_bar in double with true division).
at::Tensor makeBetas(const ConfigReader& cfg, const BetaDefaults& defaults, int64_t& numTrainTimesteps);
/// Whether a class reads `rescale_betas_zero_snr`, as its diffusers class does: kNone (PNDM, LMS,
/// Heun lack it), kPlain (DDIM, LCM), kSigmaSafe (the sigma-based Euler, Euler a, DPM-Solver,
/// UniPC also set the last ᾱ to 2⁻²⁴ so the last sigma stays finite).
enum class ZeroSnr { kNone, kPlain, kSigmaSafe };

/// betas (makeBetas), the optional zero-terminal-SNR rescale, and ᾱ = cumprod(1 − β): float32 [T].
void initNoiseSchedule(const ConfigReader& cfg, const BetaDefaults& defaults, ZeroSnr zeroSnr,
                       int64_t& numTrainTimesteps, at::Tensor& betas, at::Tensor& alphasCumprod);

/// diffusers rescale_zero_terminal_snr(betas) (float32 torch ops).
at::Tensor rescaleZeroTerminalSnr(const at::Tensor& betas);
/// ((1 - ᾱ) / ᾱ) ** 0.5 in float32 (the training sigmas, ascending with t).
at::Tensor trainSigmas(const at::Tensor& alphasCumprod);

// ---- numpy emulation (float64) -----------------------------------------------------------------

/// np.linspace(start, stop, num, endpoint): i·step + start, last = stop (float64).
std::vector<double> npLinspace(double start, double stop, int64_t num, bool endpoint = true);
/// np.arange(start, stop, step) for float arguments (start + i·delta, numpy's fill).
std::vector<double> npArange(double start, double stop, double step);
/// np.round: half to even.
double npRound(double x);
/// np.interp(x, arange(len(fp)), fp).
std::vector<double> npInterpIndex(const std::vector<double>& x, const std::vector<double>& fp);
/// diffusers `_sigma_to_t(sigma, log_sigmas)` with numpy 1.24's float32/float64 mix
/// (log_sigmas float32: the distances and the weight w are float32, t is float64).
double sigmaToT(double sigma, const std::vector<float>& logSigmas);
/// diffusers `_convert_to_karras`: (max^(1/ρ) + ramp·(min^(1/ρ) − max^(1/ρ)))^ρ, ρ = 7.
std::vector<double> karrasSigmas(double sigmaMin, double sigmaMax, int64_t n);
/// Float32 values of a 1-d tensor, widened.
std::vector<double> toDoubles(const at::Tensor& t);
std::vector<float> toFloats(const at::Tensor& t);
/// np.log of one float32 (numpy's x86 SIMD float32 log kernel, not correctly rounded).
float npLogFloat32(float x);
/// np.log of a float32 array (float32 results), as npLogFloat32.
std::vector<float> logFloats(const std::vector<float>& v);
/// 1-d CPU tensors from values (float32: each value rounded to float; int64).
at::Tensor floatTensor(const std::vector<double>& v);
at::Tensor longTensor(const std::vector<int64_t>& v);

/// Float32 "linspace"/"leading"/"trailing" timesteps of the Euler-family schedulers (descending).
std::vector<double> floatSpacedTimesteps(const std::string& spacing, int64_t T, int64_t n, int64_t stepsOffset);

// ---- tensors -----------------------------------------------------------------------------------

/// diffusers randn_tensor(shape, generator, device, dtype): drawn on the CPU when a (CPU)
/// generator or a list of them is given, then moved; else on the device with its default generator.
at::Tensor randnTensor(at::IntArrayRef shape, const runtime::Generators& generator, const at::TensorOptions& options);
/// E_INVALID_ARGUMENT unless a and b have the same shape.
void checkSameShape(const at::Tensor& a, const at::Tensor& b, const char* what);
/// The timestep as an int64 (E_INVALID_ARGUMENT when not integral or out of [0, T)).
int64_t integerTimestep(double t, int64_t T, const char* who);
/// The training-index timestep as a 0-d int64 tensor (what diffusers indexes alphas_cumprod with).
at::Tensor scalarLong(int64_t v);
/// x.clamp(-range, range) (clip_sample); CPU float16 (no clamp kernel in libtorch 1.13) clamps
/// through float32, which is exact.
at::Tensor clipSample(const at::Tensor& x, double range);
/// diffusers `_threshold_sample` (dynamic thresholding, Imagen).
at::Tensor thresholdSample(const at::Tensor& sample, double ratio, double maxValue);
/// DDPM-style add_noise of DDIM/PNDM/LCM: sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·noise, with ᾱ cast to x0's
/// device and dtype first (as diffusers does).
at::Tensor ddpmAddNoise(const at::Tensor& alphasCumprod, const at::Tensor& original, const at::Tensor& noise,
                        int64_t t);
/// Integer "linspace"/"leading"/"trailing" timesteps of DDIM (descending, int64).
std::vector<int64_t> ddimSpacedTimesteps(const std::string& spacing, int64_t T, int64_t n, int64_t stepsOffset);
/// Broadcasts a [B]/[1] coefficient over a sample of `ndim` dims ([B,1,1,1]).
at::Tensor unsqueezeTo(at::Tensor t, int64_t ndim);

// ---- shared bases ------------------------------------------------------------------------------

/// What Euler, EulerAncestral, LMS and Heun share (k-diffusion-style σ parametrisation):
/// init_noise_sigma by timestep spacing, scale_model_input x/sqrt(σ²+1), add_noise x0 + σ·noise.
class KarrasStyleScheduler : public Scheduler {
 public:
  double initNoiseSigma() const override;
  at::Tensor scaleModelInput(const at::Tensor& sample, double timestep) override;
  at::Tensor addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) override;

 protected:
  std::string spacing_ = "linspace";
  /// The step index add_noise uses: by timestep unless a begin index was set.
  int64_t addNoiseIndex(double timestep) const;
};

/// DPMSolver/UniPC `_sigma_to_alpha_sigma_t`: α_t = 1/sqrt(σ²+1), σ_t = σ·α_t (0-d tensor ops).
std::pair<at::Tensor, at::Tensor> sigmaToAlphaSigmaT(const at::Tensor& sigma);
/// DPMSolver/UniPC add_noise: α_t·x0 + σ_t·noise at the step index of `timestep`.
at::Tensor alphaSigmaAddNoise(const at::Tensor& sigmas, int64_t index, const at::Tensor& original,
                              const at::Tensor& noise);

}  // namespace sd::schedulers::detail
