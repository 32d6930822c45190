// EulerAncestralDiscreteScheduler, after diffusers v0.30.3
// src/diffusers/schedulers/scheduling_euler_ancestral_discrete.py (EulerAncestralDiscreteScheduler):
// k-diffusion's sample_euler_ancestral (Euler step to σ_down, then fresh noise of std σ_up).
#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class EulerAncestralDiscreteScheduler final : public KarrasStyleScheduler {
 public:
  explicit EulerAncestralDiscreteScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.0001..0.02 "linear", prediction_type "epsilon", timestep_spacing
    // "linspace", steps_offset 0, rescale_betas_zero_snr false.
    initNoiseSchedule(cfg, {0.0001, 0.02, "linear"}, ZeroSnr::kSigmaSafe, numTrainTimesteps_, betas_, alphasCumprod_);
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "v_prediction", "sample"});
    if (predictionType_ == "sample")
      unsupported(name(), "prediction_type", "\"sample\"", "diffusers raises NotImplementedError for it too");
    spacing_ = enumField(cfg, "timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
    sigmas_ = at::cat({trainSigmas(alphasCumprod_).flip(0), at::zeros({1}, at::kFloat)});
  }

  const char* name() const override { return "EulerAncestralDiscreteScheduler"; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    const std::vector<double> ts = floatSpacedTimesteps(spacing_, numTrainTimesteps_, n, stepsOffset_);
    std::vector<double> sig = npInterpIndex(ts, toDoubles(trainSigmas(alphasCumprod_)));
    sig.push_back(0.0);
    sigmas_ = floatTensor(sig);  // float32 [n+1]
    timesteps_ = floatTensor(ts);  // float32 [n]
    numInferenceSteps_ = n;
    stepIndex_.reset();
    beginIndex_.reset();
    predOriginalSample_ = at::Tensor();
  }

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sampleIn, const runtime::Generators& generator,
                  double) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sampleIn, "EulerAncestralDiscreteScheduler.step");
    if (!stepIndex_) initStepIndex(timestep);
    const int64_t i = *stepIndex_;
    at::Tensor sigma = sigmas_[i];
    at::Tensor sample = sampleIn.to(at::kFloat);
    // 1. predicted original sample x0
    at::Tensor predOriginal;
    if (predictionType_ == "epsilon") predOriginal = sample - sigma * modelOutput;
    else predOriginal = modelOutput * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (sample / (sigma.pow(2) + 1));
    // 2. split the step into a deterministic part (to σ_down) and fresh noise (σ_up)
    at::Tensor sigmaFrom = sigmas_[i];
    at::Tensor sigmaTo = sigmas_[i + 1];
    at::Tensor sigmaUp = (sigmaTo.pow(2) * (sigmaFrom.pow(2) - sigmaTo.pow(2)) / sigmaFrom.pow(2)).pow(0.5);
    at::Tensor sigmaDown = (sigmaTo.pow(2) - sigmaUp.pow(2)).pow(0.5);
    // 3. Euler step to σ_down
    at::Tensor derivative = (sample - predOriginal) / sigma;
    at::Tensor dt = sigmaDown - sigma;
    at::Tensor prevSample = sample + derivative * dt;
    // 4. ancestral noise: one randn(model_output.shape) per step, CPU generator, model dtype
    at::Tensor noise = randnTensor(modelOutput.sizes(), generator, modelOutput.options());
    prevSample = prevSample + noise * sigmaUp;
    stepIndex_ = i + 1;
    predOriginalSample_ = predOriginal;
    return prevSample.to(modelOutput.scalar_type());
  }

 private:
  std::string predictionType_;
  int64_t stepsOffset_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeEulerAncestralDiscrete(const Json& config) {
  return std::make_unique<EulerAncestralDiscreteScheduler>(config);
}

}  // namespace sd::schedulers
