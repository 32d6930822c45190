// DPMSolverMultistepScheduler, after diffusers v0.30.3
// src/diffusers/schedulers/scheduling_dpmsolver_multistep.py (DPMSolverMultistepScheduler):
// DPM-Solver / DPM-Solver++ (Lu et al. 2022, https://arxiv.org/abs/2206.00927 and
// https://arxiv.org/abs/2211.01095), orders 1-3, midpoint/heun, ODE and SDE variants.
// "DPM++ 2M" = algorithm_type "dpmsolver++", solver_order 2; "Karras" = use_karras_sigmas.
#include <array>
#include <cmath>

#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class DPMSolverMultistepScheduler final : public Scheduler {
 public:
  explicit DPMSolverMultistepScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.0001..0.02 "linear", solver_order 2, prediction_type "epsilon",
    // thresholding false, algorithm_type "dpmsolver++", solver_type "midpoint", lower_order_final
    // true, euler_at_final false, use_karras_sigmas false, use_lu_lambdas false,
    // final_sigmas_type "zero", lambda_min_clipped -inf, variance_type None, timestep_spacing
    // "linspace", steps_offset 0, rescale_betas_zero_snr false.
    initNoiseSchedule(cfg, {0.0001, 0.02, "linear"}, ZeroSnr::kSigmaSafe, numTrainTimesteps_, betas_, alphasCumprod_);
    at::Tensor alphaT = at::sqrt(alphasCumprod_);
    at::Tensor sigmaT = at::sqrt(at::rsub(alphasCumprod_, 1));
    lambdaT_ = at::log(alphaT) - at::log(sigmaT);  // [T]

    solverOrder_ = cfg.getInt("solver_order", 2);
    if (solverOrder_ < 1 || solverOrder_ > 3) cfg.error("solver_order", "must be 1, 2 or 3");
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    thresholding_ = cfg.getBool("thresholding", false);
    thresholdRatio_ = cfg.getDoubleIn("dynamic_thresholding_ratio", 0.995, 0, 1);
    sampleMaxValue_ = cfg.getDoubleIn("sample_max_value", 1.0, 0, 1e6);
    algorithm_ = enumField(cfg, "algorithm_type", "dpmsolver++", {"dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++", "deis"});
    if (algorithm_ == "deis") algorithm_ = "dpmsolver++";  // diffusers re-registers deis as dpmsolver++
    solverType_ = enumField(cfg, "solver_type", "midpoint", {"midpoint", "heun", "logrho", "bh1", "bh2"});
    if (solverType_ != "midpoint" && solverType_ != "heun") solverType_ = "midpoint";
    lowerOrderFinal_ = cfg.getBool("lower_order_final", true);
    eulerAtFinal_ = cfg.getBool("euler_at_final", false);
    useKarras_ = cfg.getBool("use_karras_sigmas", false);
    useLuLambdas_ = cfg.getBool("use_lu_lambdas", false);
    finalSigmaMin_ = enumField(cfg, "final_sigmas_type", "zero", {"zero", "sigma_min"}) == "sigma_min";
    // -inf: a number, "-Infinity" (cases.json), or null (JSON.stringify(-Infinity))
    lambdaMinClipped_ = cfg.getDouble("lambda_min_clipped", -INFINITY);
    const std::string variance = cfg.getString("variance_type", "");
    if (!variance.empty() && variance != "learned" && variance != "learned_range")
      cfg.error("variance_type", "is \"" + variance + "\"; expected null, \"learned\" or \"learned_range\"");
    learnedVariance_ = !variance.empty();
    spacing_ = enumField(cfg, "timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
    if (!isPlusPlus() && !finalSigmaMin_)
      cfg.error("final_sigmas_type", "\"zero\" is not supported for algorithm_type \"" + algorithm_ +
                                         "\"; use \"sigma_min\" (as diffusers requires)");
    if (isSde() && solverOrder_ == 3)
      unsupported(name(), "solver_order", "3", "diffusers has no third-order update for the SDE variants");
    sigmas_ = trainSigmas(alphasCumprod_);
  }

  const char* name() const override { return "DPMSolverMultistepScheduler"; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    const int64_t T = numTrainTimesteps_;
    // 1. timesteps (int64), clipped to lambda_min_clipped for numerical stability (cosine schedules)
    const int64_t clippedIdx = at::searchsorted(lambdaT_.flip(0), at::Scalar(lambdaMinClipped_)).item<int64_t>();
    const int64_t lastTimestep = T - clippedIdx;
    std::vector<double> ts;
    if (spacing_ == "linspace") {
      std::vector<double> v = npLinspace(0, static_cast<double>(lastTimestep - 1), n + 1);
      for (int64_t i = n; i >= 1; --i) ts.push_back(npRound(v[static_cast<size_t>(i)]));  // [::-1][:-1]
    } else if (spacing_ == "leading") {
      const int64_t ratio = lastTimestep / (n + 1);
      for (int64_t i = n; i >= 1; --i) ts.push_back(static_cast<double>(i * ratio + stepsOffset_));
    } else {  // trailing
      for (double v : npArange(static_cast<double>(lastTimestep), 0, -static_cast<double>(T) / static_cast<double>(n)))
        ts.push_back(npRound(v) - 1);
    }
    // 2. sigmas
    const at::Tensor train = trainSigmas(alphasCumprod_);  // float32 [T], ascending
    const std::vector<double> trainD = toDoubles(train);
    const std::vector<float> logSigmas = logFloats(toFloats(train));
    std::vector<double> sig;
    if (useKarras_) {
      sig = karrasSigmas(trainD.front(), trainD.back(), n);
      ts.clear();
      for (double s : sig) ts.push_back(npRound(sigmaToT(s, logSigmas)));
    } else if (useLuLambdas_) {
      // uniform in λ = log σ between log σ_max and log σ_min (Lu et al. "uniform logSNR")
      const double lambdaMin = logSigmas.front(), lambdaMax = logSigmas.back();
      ts.clear();
      for (double r : npLinspace(0, 1, n)) {
        sig.push_back(std::exp(lambdaMax + r * (lambdaMin - lambdaMax)));
        ts.push_back(npRound(sigmaToT(sig.back(), logSigmas)));
      }
    } else {
      sig = npInterpIndex(ts, trainD);
    }
    sig.push_back(finalSigmaMin_ ? train[0].item<double>() : 0.0);
    sigmas_ = floatTensor(sig);  // float32 [n+1]
    std::vector<int64_t> tsInt;
    for (double v : ts) tsInt.push_back(static_cast<int64_t>(v));
    timesteps_ = longTensor(tsInt);  // int64 [n]
    numInferenceSteps_ = static_cast<int64_t>(tsInt.size());
    modelOutputs_.assign(static_cast<size_t>(solverOrder_), at::Tensor());
    lowerOrderNums_ = 0;
    stepIndex_.reset();
    beginIndex_.reset();
    predOriginalSample_ = at::Tensor();
  }

  at::Tensor step(const at::Tensor& modelOutputIn, double timestep, const at::Tensor& sampleIn, const runtime::Generators& generator,
                  double) override {
    requireTimesteps("step");
    if (!learnedVariance_) checkSameShape(modelOutputIn, sampleIn, "DPMSolverMultistepScheduler.step");
    if (!stepIndex_) initStepIndex(timestep, /*lastWhenMissing=*/true);
    const int64_t i = *stepIndex_;
    const int64_t n = timesteps_.size(0);
    // Improve numerical stability for small numbers of steps: lower orders at the end.
    const bool lowerOrderFinal =
        (i == n - 1) && (eulerAtFinal_ || (lowerOrderFinal_ && n < 15) || !finalSigmaMin_);
    const bool lowerOrderSecond = (i == n - 2) && lowerOrderFinal_ && n < 15;

    at::Tensor modelOutput = convertModelOutput(modelOutputIn, sampleIn, i);
    for (int64_t k = 0; k + 1 < solverOrder_; ++k) modelOutputs_[k] = modelOutputs_[k + 1];
    modelOutputs_.back() = modelOutput;

    at::Tensor sample = sampleIn.to(at::kFloat);
    at::Tensor noise;
    if (isSde()) noise = randnTensor(modelOutput.sizes(), generator, modelOutput.options().dtype(at::kFloat));

    at::Tensor prevSample;
    if (solverOrder_ == 1 || lowerOrderNums_ < 1 || lowerOrderFinal) prevSample = firstOrderUpdate(modelOutput, sample, noise, i);
    else if (solverOrder_ == 2 || lowerOrderNums_ < 2 || lowerOrderSecond) prevSample = secondOrderUpdate(sample, noise, i);
    else prevSample = thirdOrderUpdate(sample, i);
    if (lowerOrderNums_ < solverOrder_) ++lowerOrderNums_;
    stepIndex_ = i + 1;
    if (isPlusPlus()) predOriginalSample_ = modelOutput;
    return prevSample.to(modelOutput.scalar_type());
  }

  at::Tensor addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) override {
    requireTimesteps("addNoise");
    const int64_t index = !beginIndex_ ? indexForTimestep(timestep, true) : stepIndex_ ? *stepIndex_ : *beginIndex_;
    return alphaSigmaAddNoise(sigmas_, index, original, noise);
  }

 private:
  bool isPlusPlus() const { return algorithm_ == "dpmsolver++" || algorithm_ == "sde-dpmsolver++"; }
  bool isSde() const { return algorithm_ == "sde-dpmsolver" || algorithm_ == "sde-dpmsolver++"; }

  struct Point {
    at::Tensor alpha, sigma, lambda;  // 0-d float32
  };
  Point point(int64_t index) const {
    auto [alpha, sigma] = sigmaToAlphaSigmaT(sigmas_[index]);
    return {alpha, sigma, at::log(alpha) - at::log(sigma)};
  }

  // diffusers convert_model_output: x0 prediction (dpmsolver++) or noise prediction (dpmsolver).
  at::Tensor convertModelOutput(at::Tensor modelOutput, const at::Tensor& sample, int64_t i) const {
    if (isPlusPlus()) {
      at::Tensor x0;
      if (predictionType_ == "epsilon") {
        if (learnedVariance_) modelOutput = modelOutput.slice(1, 0, 3);
        auto [alphaT, sigmaT] = sigmaToAlphaSigmaT(sigmas_[i]);
        x0 = (sample - sigmaT * modelOutput) / alphaT;
      } else if (predictionType_ == "sample") {
        x0 = modelOutput;
      } else {
        auto [alphaT, sigmaT] = sigmaToAlphaSigmaT(sigmas_[i]);
        x0 = alphaT * sample - sigmaT * modelOutput;
      }
      if (thresholding_) x0 = thresholdSample(x0, thresholdRatio_, sampleMaxValue_);
      return x0;
    }
    at::Tensor epsilon;
    if (predictionType_ == "epsilon") {
      epsilon = learnedVariance_ ? modelOutput.slice(1, 0, 3) : modelOutput;
    } else if (predictionType_ == "sample") {
      auto [alphaT, sigmaT] = sigmaToAlphaSigmaT(sigmas_[i]);
      epsilon = (sample - alphaT * modelOutput) / sigmaT;
    } else {
      auto [alphaT, sigmaT] = sigmaToAlphaSigmaT(sigmas_[i]);
      epsilon = alphaT * modelOutput + sigmaT * sample;
    }
    if (thresholding_) {
      auto [alphaT, sigmaT] = sigmaToAlphaSigmaT(sigmas_[i]);
      at::Tensor x0 = (sample - sigmaT * epsilon) / alphaT;
      x0 = thresholdSample(x0, thresholdRatio_, sampleMaxValue_);
      epsilon = (sample - alphaT * x0) / sigmaT;
    }
    return epsilon;
  }

  // DPM-Solver first-order update (= DDIM).
  at::Tensor firstOrderUpdate(const at::Tensor& m, const at::Tensor& sample, const at::Tensor& noise, int64_t i) const {
    const Point t = point(i + 1), s = point(i);
    at::Tensor h = t.lambda - s.lambda;
    if (algorithm_ == "dpmsolver++") return (t.sigma / s.sigma) * sample - (t.alpha * (at::exp(-h) - 1.0)) * m;
    if (algorithm_ == "dpmsolver") return (t.alpha / s.alpha) * sample - (t.sigma * (at::exp(h) - 1.0)) * m;
    if (algorithm_ == "sde-dpmsolver++")
      return (t.sigma / s.sigma * at::exp(-h)) * sample + (t.alpha * at::rsub(at::exp(h * -2.0), 1)) * m +
             t.sigma * at::sqrt(at::rsub(at::exp(h * -2), 1.0)) * noise;
    // sde-dpmsolver
    return (t.alpha / s.alpha) * sample - (t.sigma * (at::exp(h) - 1.0)) * 2.0 * m +
           t.sigma * at::sqrt(at::exp(h * 2) - 1.0) * noise;
  }

  // Multistep DPM-Solver second-order update.
  at::Tensor secondOrderUpdate(const at::Tensor& sample, const at::Tensor& noise, int64_t i) const {
    const Point t = point(i + 1), s0 = point(i), s1 = point(i - 1);
    const at::Tensor& m0 = modelOutputs_[modelOutputs_.size() - 1];
    const at::Tensor& m1 = modelOutputs_[modelOutputs_.size() - 2];
    at::Tensor h = t.lambda - s0.lambda;
    at::Tensor h0 = s0.lambda - s1.lambda;
    at::Tensor r0 = h0 / h;
    const at::Tensor& d0 = m0;
    at::Tensor d1 = r0.reciprocal() * (m0 - m1);  // (1.0 / r0) * (m0 - m1)
    const bool midpoint = solverType_ == "midpoint";
    if (algorithm_ == "dpmsolver++") {
      at::Tensor e = at::exp(-h) - 1.0;
      if (midpoint) return (t.sigma / s0.sigma) * sample - (t.alpha * e) * d0 - (t.alpha * e) * 0.5 * d1;
      return (t.sigma / s0.sigma) * sample - (t.alpha * e) * d0 + (t.alpha * (e / h + 1.0)) * d1;
    }
    if (algorithm_ == "dpmsolver") {
      at::Tensor e = at::exp(h) - 1.0;
      if (midpoint) return (t.alpha / s0.alpha) * sample - (t.sigma * e) * d0 - (t.sigma * e) * 0.5 * d1;
      return (t.alpha / s0.alpha) * sample - (t.sigma * e) * d0 - (t.sigma * (e / h - 1.0)) * d1;
    }
    if (algorithm_ == "sde-dpmsolver++") {
      at::Tensor a = t.alpha * at::rsub(at::exp(h * -2.0), 1);
      at::Tensor noiseTerm = t.sigma * at::sqrt(at::rsub(at::exp(h * -2), 1.0)) * noise;
      if (midpoint)
        return (t.sigma / s0.sigma * at::exp(-h)) * sample + a * d0 + a * 0.5 * d1 + noiseTerm;
      return (t.sigma / s0.sigma * at::exp(-h)) * sample + a * d0 +
             (t.alpha * (at::rsub(at::exp(h * -2.0), 1.0) / (h * -2.0) + 1.0)) * d1 + noiseTerm;
    }
    // sde-dpmsolver
    at::Tensor e = at::exp(h) - 1.0;
    at::Tensor noiseTerm = t.sigma * at::sqrt(at::exp(h * 2) - 1.0) * noise;
    if (midpoint) return (t.alpha / s0.alpha) * sample - (t.sigma * e) * 2.0 * d0 - (t.sigma * e) * d1 + noiseTerm;
    return (t.alpha / s0.alpha) * sample - (t.sigma * e) * 2.0 * d0 - (t.sigma * (e / h - 1.0)) * 2.0 * d1 + noiseTerm;
  }

  // Multistep DPM-Solver third-order update (ODE variants only).
  at::Tensor thirdOrderUpdate(const at::Tensor& sample, int64_t i) const {
    const Point t = point(i + 1), s0 = point(i), s1 = point(i - 1), s2 = point(i - 2);
    const size_t k = modelOutputs_.size();
    const at::Tensor& m0 = modelOutputs_[k - 1];
    const at::Tensor& m1 = modelOutputs_[k - 2];
    const at::Tensor& m2 = modelOutputs_[k - 3];
    at::Tensor h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda, h1 = s1.lambda - s2.lambda;
    at::Tensor r0 = h0 / h, r1 = h1 / h;
    const at::Tensor& d0 = m0;
    at::Tensor d10 = r0.reciprocal() * (m0 - m1);
    at::Tensor d11 = r1.reciprocal() * (m1 - m2);
    at::Tensor d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
    at::Tensor d2 = (r0 + r1).reciprocal() * (d10 - d11);
    if (algorithm_ == "dpmsolver++") {
      at::Tensor e = at::exp(-h) - 1.0;
      return (t.sigma / s0.sigma) * sample - (t.alpha * e) * d0 + (t.alpha * (e / h + 1.0)) * d1 -
             (t.alpha * ((e + h) / h.pow(2) - 0.5)) * d2;
    }
    at::Tensor e = at::exp(h) - 1.0;
    return (t.alpha / s0.alpha) * sample - (t.sigma * e) * d0 - (t.sigma * (e / h - 1.0)) * d1 -
           (t.sigma * ((e - h) / h.pow(2) - 0.5)) * d2;
  }

  at::Tensor lambdaT_;
  int64_t solverOrder_ = 2;
  std::string predictionType_;
  bool thresholding_ = false;
  double thresholdRatio_ = 0.995;
  double sampleMaxValue_ = 1.0;
  std::string algorithm_;
  std::string solverType_;
  bool lowerOrderFinal_ = true;
  bool eulerAtFinal_ = false;
  bool useKarras_ = false;
  bool useLuLambdas_ = false;
  bool finalSigmaMin_ = false;
  double lambdaMinClipped_ = -INFINITY;
  bool learnedVariance_ = false;
  std::string spacing_;
  int64_t stepsOffset_ = 0;
  std::vector<at::Tensor> modelOutputs_;
  int64_t lowerOrderNums_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeDPMSolverMultistep(const Json& config) {
  return std::make_unique<DPMSolverMultistepScheduler>(config);
}

}  // namespace sd::schedulers
