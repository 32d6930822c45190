// HeunDiscreteScheduler, after diffusers v0.30.3 src/diffusers/schedulers/scheduling_heun_discrete.py
// (HeunDiscreteScheduler): Algorithm 1 of Karras et al. 2022 (https://arxiv.org/abs/2206.00364),
// Heun's 2nd-order method; every step but the first takes two model evaluations, so timesteps()
// holds 2·n−1 entries and order() is 2.
#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class HeunDiscreteScheduler final : public KarrasStyleScheduler {
 public:
  explicit HeunDiscreteScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.00085..0.012 "linear" (also "exp"), prediction_type "epsilon",
    // use_karras_sigmas false, clip_sample false, clip_sample_range 1.0, timestep_spacing
    // "linspace", steps_offset 0.
    initNoiseSchedule(cfg, {0.00085, 0.012, "linear", /*allowExp=*/true}, ZeroSnr::kNone, numTrainTimesteps_, betas_, alphasCumprod_);
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "v_prediction", "sample"});
    useKarras_ = cfg.getBool("use_karras_sigmas", false);
    clipSample_ = cfg.getBool("clip_sample", false);
    clipSampleRange_ = cfg.getDoubleIn("clip_sample_range", 1.0, 0, 1e6);
    spacing_ = enumField(cfg, "timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
    sigmas_ = at::cat({trainSigmas(alphasCumprod_).flip(0), at::zeros({1}, at::kFloat)});
  }

  const char* name() const override { return "HeunDiscreteScheduler"; }
  int64_t order() const override { return 2; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    std::vector<double> ts = floatSpacedTimesteps(spacing_, numTrainTimesteps_, n, stepsOffset_);
    const at::Tensor train = trainSigmas(alphasCumprod_);
    std::vector<double> sig = npInterpIndex(ts, toDoubles(train));
    if (useKarras_) {
      const std::vector<float> logSigmas = logFloats(toFloats(train));
      sig = karrasSigmas(sig.back(), sig.front(), n);
      ts.clear();
      for (double s : sig) ts.push_back(sigmaToT(s, logSigmas));
    }
    sig.push_back(0.0);
    at::Tensor s = floatTensor(sig);  // float32 [n+1]
    // sigmas = [σ0, σ1, σ1, σ2, σ2, ..., σ_{n-1}, σ_{n-1}, 0]                       [2n]
    sigmas_ = at::cat({s.slice(0, 0, 1), s.slice(0, 1, n).repeat_interleave(2), s.slice(0, n, n + 1)});
    // timesteps = [t0, t1, t1, ..., t_{n-1}, t_{n-1}] (float32; float64 with Karras sigmas)   [2n-1]
    at::Tensor t = useKarras_ ? at::tensor(ts, at::TensorOptions().dtype(at::kDouble)) : floatTensor(ts);
    timesteps_ = at::cat({t.slice(0, 0, 1), t.slice(0, 1, n).repeat_interleave(2)});
    numInferenceSteps_ = n;
    prevDerivative_ = at::Tensor();
    dt_ = at::Tensor();
    sample_ = at::Tensor();
    stepIndex_.reset();
    beginIndex_.reset();
    predOriginalSample_ = at::Tensor();
  }

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sampleIn, const runtime::Generators&,
                  double) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sampleIn, "HeunDiscreteScheduler.step");
    if (!stepIndex_) initStepIndex(timestep);
    const int64_t i = *stepIndex_;
    const bool firstOrder = !dt_.defined();  // state_in_first_order
    at::Tensor sigma = firstOrder ? sigmas_[i] : sigmas_[i - 1];
    at::Tensor sigmaNext = firstOrder ? sigmas_[i + 1] : sigmas_[i];
    at::Tensor sigmaHat = sigma * 1;  // gamma = 0: sigma * (gamma + 1)
    // 1. predicted original sample x0
    at::Tensor sample = sampleIn;
    at::Tensor predOriginal;
    if (predictionType_ == "epsilon") {
      at::Tensor sigmaInput = firstOrder ? sigmaHat : sigmaNext;
      predOriginal = sample - sigmaInput * modelOutput;
    } else if (predictionType_ == "v_prediction") {
      at::Tensor sigmaInput = firstOrder ? sigmaHat : sigmaNext;
      predOriginal = modelOutput * (-sigmaInput / (sigmaInput.pow(2) + 1).pow(0.5)) + (sample / (sigmaInput.pow(2) + 1));
    } else {
      predOriginal = modelOutput;
    }
    if (clipSample_) predOriginal = clipSample(predOriginal, clipSampleRange_);
    // 2. first order: Euler step, remembered; second order: average the two slopes from the
    //    first-order step's sample.
    at::Tensor derivative, dt;
    if (firstOrder) {
      derivative = (sample - predOriginal) / sigmaHat;
      dt = sigmaNext - sigmaHat;
      prevDerivative_ = derivative;
      dt_ = dt;
      sample_ = sample;
    } else {
      derivative = (sample - predOriginal) / sigmaNext;
      derivative = (prevDerivative_ + derivative) / 2;
      dt = dt_;
      sample = sample_;
      prevDerivative_ = at::Tensor();
      dt_ = at::Tensor();
      sample_ = at::Tensor();
    }
    at::Tensor prevSample = sample + derivative * dt;
    stepIndex_ = i + 1;
    return prevSample;
  }

 private:
  std::string predictionType_;
  bool useKarras_ = false;
  bool clipSample_ = false;
  double clipSampleRange_ = 1.0;
  int64_t stepsOffset_ = 0;
  at::Tensor prevDerivative_, dt_, sample_;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeHeunDiscrete(const Json& config) {
  return std::make_unique<HeunDiscreteScheduler>(config);
}

}  // namespace sd::schedulers
