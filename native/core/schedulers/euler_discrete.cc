// EulerDiscreteScheduler, after diffusers v0.30.3 src/diffusers/schedulers/scheduling_euler_discrete.py
// (EulerDiscreteScheduler): Algorithm 2 of Karras et al. 2022 (https://arxiv.org/abs/2206.00364)
// with s_churn = 0, i.e. the plain Euler method on the probability-flow ODE.
#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class EulerDiscreteScheduler final : public KarrasStyleScheduler {
 public:
  explicit EulerDiscreteScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.0001..0.02 "linear", prediction_type "epsilon", interpolation_type
    // "linear", use_karras_sigmas false, sigma_min/max None, timestep_spacing "linspace",
    // timestep_type "discrete", steps_offset 0, rescale_betas_zero_snr false, final_sigmas_type "zero".
    initNoiseSchedule(cfg, {0.0001, 0.02, "linear"}, ZeroSnr::kSigmaSafe, numTrainTimesteps_, betas_, alphasCumprod_);
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "v_prediction", "sample", "original_sample"});
    interpolationType_ = enumField(cfg, "interpolation_type", "linear", {"linear", "log_linear"});
    useKarras_ = cfg.getBool("use_karras_sigmas", false);
    if (cfg.has("sigma_min")) sigmaMin_ = cfg.requireDouble("sigma_min");
    if (cfg.has("sigma_max")) sigmaMax_ = cfg.requireDouble("sigma_max");
    spacing_ = enumField(cfg, "timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
    continuous_ = enumField(cfg, "timestep_type", "discrete", {"discrete", "continuous"}) == "continuous";
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
    finalSigmaMin_ = enumField(cfg, "final_sigmas_type", "zero", {"zero", "sigma_min"}) == "sigma_min";
    // the state diffusers' __init__ leaves: the full training schedule
    sigmas_ = at::cat({trainSigmas(alphasCumprod_).flip(0), at::zeros({1}, at::kFloat)});
  }

  const char* name() const override { return "EulerDiscreteScheduler"; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    std::vector<double> ts = floatSpacedTimesteps(spacing_, numTrainTimesteps_, n, stepsOffset_);
    const at::Tensor train = trainSigmas(alphasCumprod_);  // float32 [T], ascending
    const std::vector<double> trainD = toDoubles(train);
    const std::vector<float> logSigmas = logFloats(toFloats(train));
    std::vector<double> sig;
    if (interpolationType_ == "linear") {
      sig = npInterpIndex(ts, trainD);
    } else {  // log_linear: torch.linspace(log(σ_max), log(σ_min), n + 1).exp() (float32)
      sig = toDoubles(at::linspace(static_cast<double>(std::log(static_cast<float>(trainD.back()))),
                                   static_cast<double>(std::log(static_cast<float>(trainD.front()))), n + 1,
                                   at::TensorOptions().dtype(at::kFloat))
                          .exp());
    }
    if (useKarras_) {
      sig = karrasSigmas(sigmaMin_ ? *sigmaMin_ : sig.back(), sigmaMax_ ? *sigmaMax_ : sig.front(), n);
      ts.clear();
      for (double s : sig) ts.push_back(sigmaToT(s, logSigmas));
    }
    const double sigmaLast = finalSigmaMin_ ? train[0].item<double>() : 0.0;
    sig.push_back(sigmaLast);
    sigmas_ = floatTensor(sig);  // float32 [n+1]
    if (continuous_ && predictionType_ == "v_prediction") {
      // timesteps = [0.25 * log(σ) for σ in sigmas[:-1]] (float32)
      timesteps_ = sigmas_.slice(0, 0, sigmas_.size(0) - 1).log() * 0.25;
    } else {
      timesteps_ = floatTensor(ts);  // float32 [n]
    }
    numInferenceSteps_ = n;
    stepIndex_.reset();
    beginIndex_.reset();
    predOriginalSample_ = at::Tensor();
  }

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sampleIn, const runtime::Generators& generator,
                  double) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sampleIn, "EulerDiscreteScheduler.step");
    if (!stepIndex_) initStepIndex(timestep);
    const int64_t i = *stepIndex_;
    at::Tensor sample = sampleIn.to(at::kFloat);  // upcast to avoid precision issues (diffusers)
    at::Tensor sigma = sigmas_[i];
    // s_churn = 0 ⇒ gamma = 0, sigma_hat = sigma. diffusers still draws randn(model_output.shape)
    // every step; we draw it from the caller's generator too so the generator advances the same.
    if (!generator.empty()) (void)randnTensor(modelOutput.sizes(), generator, modelOutput.options());
    const double gamma = 0.0;
    at::Tensor sigmaHat = sigma * (gamma + 1);
    // 1. predicted original sample x0 from σ-scaled predicted noise
    at::Tensor predOriginal;
    if (predictionType_ == "sample" || predictionType_ == "original_sample") {
      predOriginal = modelOutput;
    } else if (predictionType_ == "epsilon") {
      predOriginal = sample - sigmaHat * modelOutput;
    } else {  // v_prediction
      predOriginal = modelOutput * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (sample / (sigma.pow(2) + 1));
    }
    // 2. ODE derivative and Euler step
    at::Tensor derivative = (sample - predOriginal) / sigmaHat;
    at::Tensor dt = sigmas_[i + 1] - sigmaHat;
    at::Tensor prevSample = sample + derivative * dt;
    stepIndex_ = i + 1;
    predOriginalSample_ = predOriginal;
    return prevSample.to(modelOutput.scalar_type());
  }

 private:
  std::string predictionType_;
  std::string interpolationType_;
  bool useKarras_ = false;
  std::optional<double> sigmaMin_, sigmaMax_;
  bool continuous_ = false;
  int64_t stepsOffset_ = 0;
  bool finalSigmaMin_ = false;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeEulerDiscrete(const Json& config) {
  return std::make_unique<EulerDiscreteScheduler>(config);
}

}  // namespace sd::schedulers
