// UniPCMultistepScheduler, after diffusers v0.30.3
// src/diffusers/schedulers/scheduling_unipc_multistep.py (UniPCMultistepScheduler):
// UniPC, Zhao et al. 2023 (https://arxiv.org/abs/2302.04867): a multistep predictor (UniP) with a
// corrector (UniC) that reuses the next model evaluation; B(h) variants bh1/bh2.
#include <algorithm>
#include <cmath>

#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class UniPCMultistepScheduler final : public Scheduler {
 public:
  explicit UniPCMultistepScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.0001..0.02 "linear", solver_order 2, prediction_type "epsilon",
    // thresholding false, predict_x0 true, solver_type "bh2", lower_order_final true,
    // disable_corrector [], solver_p None, use_karras_sigmas false, timestep_spacing "linspace",
    // steps_offset 0, final_sigmas_type "zero", rescale_betas_zero_snr false.
    initNoiseSchedule(cfg, {0.0001, 0.02, "linear"}, ZeroSnr::kSigmaSafe, numTrainTimesteps_, betas_, alphasCumprod_);
    solverOrder_ = cfg.getInt("solver_order", 2);
    if (solverOrder_ < 1 || solverOrder_ > 10) cfg.error("solver_order", "must be an integer in [1, 10]");
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    thresholding_ = cfg.getBool("thresholding", false);
    thresholdRatio_ = cfg.getDoubleIn("dynamic_thresholding_ratio", 0.995, 0, 1);
    sampleMaxValue_ = cfg.getDoubleIn("sample_max_value", 1.0, 0, 1e6);
    predictX0_ = cfg.getBool("predict_x0", true);
    solverType_ = enumField(cfg, "solver_type", "bh2", {"bh1", "bh2", "midpoint", "heun", "logrho"});
    if (solverType_ != "bh1") solverType_ = "bh2";  // diffusers re-registers midpoint/heun/logrho as bh2
    lowerOrderFinal_ = cfg.getBool("lower_order_final", true);
    if (cfg.has("disable_corrector")) disableCorrector_ = cfg.requireIntList("disable_corrector");
    if (cfg.has("solver_p")) unsupported(name(), "solver_p", "a scheduler", "UniPC with an external predictor");
    useKarras_ = cfg.getBool("use_karras_sigmas", false);
    spacing_ = enumField(cfg, "timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
    finalSigmaMin_ = enumField(cfg, "final_sigmas_type", "zero", {"zero", "sigma_min"}) == "sigma_min";
    sigmas_ = trainSigmas(alphasCumprod_);
  }

  const char* name() const override { return "UniPCMultistepScheduler"; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    const int64_t T = numTrainTimesteps_;
    std::vector<double> ts;
    if (spacing_ == "linspace") {
      std::vector<double> v = npLinspace(0, static_cast<double>(T - 1), n + 1);
      for (int64_t i = n; i >= 1; --i) ts.push_back(npRound(v[static_cast<size_t>(i)]));  // [::-1][:-1]
    } else if (spacing_ == "leading") {
      const int64_t ratio = T / (n + 1);
      for (int64_t i = n; i >= 1; --i) ts.push_back(static_cast<double>(i * ratio + stepsOffset_));
    } else {  // trailing
      for (double v : npArange(static_cast<double>(T), 0, -static_cast<double>(T) / static_cast<double>(n)))
        ts.push_back(npRound(v) - 1);
    }
    const at::Tensor train = trainSigmas(alphasCumprod_);  // float32 [T], ascending
    const std::vector<double> trainD = toDoubles(train);
    std::vector<double> sig;
    double sigmaLast = 0.0;
    if (useKarras_) {
      const std::vector<float> logSigmas = logFloats(toFloats(train));
      sig = karrasSigmas(trainD.front(), trainD.back(), n);
      ts.clear();
      for (double s : sig) ts.push_back(npRound(sigmaToT(s, logSigmas)));
      if (finalSigmaMin_) sigmaLast = sig.back();
    } else {
      sig = npInterpIndex(ts, trainD);
      if (finalSigmaMin_) sigmaLast = train[0].item<double>();
    }
    sig.push_back(sigmaLast);
    sigmas_ = floatTensor(sig);  // float32 [n+1]
    std::vector<int64_t> tsInt;
    for (double v : ts) tsInt.push_back(static_cast<int64_t>(v));
    timesteps_ = longTensor(tsInt);  // int64 [n]
    numInferenceSteps_ = static_cast<int64_t>(tsInt.size());
    modelOutputs_.assign(static_cast<size_t>(solverOrder_), at::Tensor());
    lowerOrderNums_ = 0;
    thisOrder_ = 0;
    lastSample_ = at::Tensor();
    stepIndex_.reset();
    beginIndex_.reset();
    predOriginalSample_ = at::Tensor();
  }

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sampleIn, const runtime::Generators&,
                  double) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sampleIn, "UniPCMultistepScheduler.step");
    if (!stepIndex_) initStepIndex(timestep, /*lastWhenMissing=*/true);
    const int64_t i = *stepIndex_;
    const bool useCorrector =
        i > 0 && std::find(disableCorrector_.begin(), disableCorrector_.end(), i - 1) == disableCorrector_.end() &&
        lastSample_.defined();
    at::Tensor converted = convertModelOutput(modelOutput, sampleIn, i);
    at::Tensor sample = sampleIn;
    // 1. corrector (UniC) on the previous predictor step, with this model evaluation
    if (useCorrector) sample = correctorUpdate(converted, lastSample_, sample, thisOrder_, i);
    // 2. history
    for (int64_t k = 0; k + 1 < solverOrder_; ++k) modelOutputs_[k] = modelOutputs_[k + 1];
    modelOutputs_.back() = converted;
    // 3. predictor (UniP) order: warm-up, and lower orders at the end
    const int64_t n = timesteps_.size(0);
    const int64_t order = lowerOrderFinal_ ? std::min(solverOrder_, n - i) : solverOrder_;
    thisOrder_ = std::min(order, lowerOrderNums_ + 1);
    lastSample_ = sample;
    at::Tensor prevSample = predictorUpdate(sample, thisOrder_, i);
    if (lowerOrderNums_ < solverOrder_) ++lowerOrderNums_;
    stepIndex_ = i + 1;
    return prevSample;
  }

  at::Tensor addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) override {
    requireTimesteps("addNoise");
    const int64_t index = !beginIndex_ ? indexForTimestep(timestep, true) : stepIndex_ ? *stepIndex_ : *beginIndex_;
    return alphaSigmaAddNoise(sigmas_, index, original, noise);
  }

 private:
  struct Point {
    at::Tensor alpha, sigma, lambda;  // 0-d float32
  };
  Point point(int64_t index) const {
    auto [alpha, sigma] = sigmaToAlphaSigmaT(sigmas_[index]);
    return {alpha, sigma, at::log(alpha) - at::log(sigma)};
  }

  at::Tensor convertModelOutput(const at::Tensor& modelOutput, const at::Tensor& sample, int64_t i) const {
    auto [alphaT, sigmaT] = sigmaToAlphaSigmaT(sigmas_[i]);
    if (predictX0_) {
      at::Tensor x0;
      if (predictionType_ == "epsilon") x0 = (sample - sigmaT * modelOutput) / alphaT;
      else if (predictionType_ == "sample") x0 = modelOutput;
      else x0 = alphaT * sample - sigmaT * modelOutput;
      if (thresholding_) x0 = thresholdSample(x0, thresholdRatio_, sampleMaxValue_);
      return x0;
    }
    if (predictionType_ == "epsilon") return modelOutput;
    if (predictionType_ == "sample") return (sample - alphaT * modelOutput) / sigmaT;
    return alphaT * modelOutput + sigmaT * sample;
  }

  // The shared part of UniP/UniC: R (Vandermonde in r_k) and b (φ-function coefficients), from
  // the λ-ratios `rks` (without the trailing 1). Returns {hPhi1, Bh, R, b}.
  struct Coefficients {
    at::Tensor hPhi1, bH, R, b;
  };
  Coefficients coefficients(std::vector<at::Tensor> rks, const at::Tensor& h, int64_t order) const {
    rks.push_back(at::scalar_tensor(1.0, at::TensorOptions().dtype(at::kFloat)));
    at::Tensor rk = at::stack(rks);                         // [order] float32
    at::Tensor hh = predictX0_ ? -h : h;
    at::Tensor hPhi1 = at::expm1(hh);                       // h·φ1(h) = e^h − 1
    at::Tensor hPhiK = hPhi1 / hh - 1;
    int64_t factorial = 1;
    at::Tensor bH = solverType_ == "bh1" ? hh : at::expm1(hh);
    std::vector<at::Tensor> R, b;
    for (int64_t k = 1; k <= order; ++k) {
      R.push_back(at::pow(rk, k - 1));
      b.push_back(hPhiK * factorial / bH);
      factorial *= k + 1;
      hPhiK = hPhiK / hh - 1.0 / static_cast<double>(factorial);
    }
    return {hPhi1, bH, at::stack(R), at::stack(b)};
  }

  // B(h) predictor (diffusers multistep_uni_p_bh_update).
  at::Tensor predictorUpdate(const at::Tensor& x, int64_t order, int64_t i) const {
    const size_t k = modelOutputs_.size();
    const at::Tensor& m0 = modelOutputs_[k - 1];
    const Point t = point(i + 1), s0 = point(i);
    at::Tensor h = t.lambda - s0.lambda;
    std::vector<at::Tensor> rks, d1s;
    for (int64_t j = 1; j < order; ++j) {
      const Point si = point(i - j);
      const at::Tensor& mi = modelOutputs_[k - 1 - static_cast<size_t>(j)];
      at::Tensor rk = (si.lambda - s0.lambda) / h;
      rks.push_back(rk);
      d1s.push_back((mi - m0) / rk);
    }
    const Coefficients c = coefficients(rks, h, order);
    at::Tensor predRes;
    if (!d1s.empty()) {
      at::Tensor d1 = at::stack(d1s, 1);  // [B, K, C, H, W]
      at::Tensor rhosP = order == 2 ? at::full({1}, 0.5, x.options().device(at::kCPU))
                                    : at::linalg_solve(c.R.slice(0, 0, -1).slice(1, 0, -1), c.b.slice(0, 0, -1)).to(x.scalar_type());
      predRes = at::einsum("k,bkc...->bc...", {rhosP.to(x.device()), d1});
    }
    at::Tensor xT;
    if (predictX0_) {
      at::Tensor xT_ = (t.sigma / s0.sigma) * x - (t.alpha * c.hPhi1) * m0;
      xT = predRes.defined() ? xT_ - (t.alpha * c.bH) * predRes : xT_ - (t.alpha * c.bH) * 0;
    } else {
      at::Tensor xT_ = (t.alpha / s0.alpha) * x - (t.sigma * c.hPhi1) * m0;
      xT = predRes.defined() ? xT_ - (t.sigma * c.bH) * predRes : xT_ - (t.sigma * c.bH) * 0;
    }
    return xT.to(x.scalar_type());
  }

  // B(h) corrector (diffusers multistep_uni_c_bh_update): `thisModel` is the converted output at
  // the current sample `xT`, `x` the sample the previous predictor step started from.
  at::Tensor correctorUpdate(const at::Tensor& thisModel, const at::Tensor& x, const at::Tensor& xT, int64_t order,
                             int64_t i) const {
    const size_t k = modelOutputs_.size();
    const at::Tensor& m0 = modelOutputs_[k - 1];
    const Point t = point(i), s0 = point(i - 1);
    at::Tensor h = t.lambda - s0.lambda;
    std::vector<at::Tensor> rks, d1s;
    for (int64_t j = 1; j < order; ++j) {
      const Point si = point(i - (j + 1));
      const at::Tensor& mi = modelOutputs_[k - 1 - static_cast<size_t>(j)];
      at::Tensor rk = (si.lambda - s0.lambda) / h;
      rks.push_back(rk);
      d1s.push_back((mi - m0) / rk);
    }
    const Coefficients c = coefficients(rks, h, order);
    at::Tensor rhosC = order == 1 ? at::full({1}, 0.5, xT.options().device(at::kCPU))
                                  : at::linalg_solve(c.R, c.b).to(x.scalar_type());
    rhosC = rhosC.to(xT.device());
    at::Tensor corrRes;
    if (!d1s.empty()) corrRes = at::einsum("k,bkc...->bc...", {rhosC.slice(0, 0, -1), at::stack(d1s, 1)});
    at::Tensor d1T = thisModel - m0;
    at::Tensor last = rhosC[-1] * d1T;
    at::Tensor sum = corrRes.defined() ? corrRes + last : last;  // python: 0 + tensor when no history
    at::Tensor out;
    if (predictX0_) {
      at::Tensor xT_ = (t.sigma / s0.sigma) * x - (t.alpha * c.hPhi1) * m0;
      out = xT_ - (t.alpha * c.bH) * sum;
    } else {
      at::Tensor xT_ = (t.alpha / s0.alpha) * x - (t.sigma * c.hPhi1) * m0;
      out = xT_ - (t.sigma * c.bH) * sum;
    }
    return out.to(x.scalar_type());
  }

  int64_t solverOrder_ = 2;
  std::string predictionType_;
  bool thresholding_ = false;
  double thresholdRatio_ = 0.995;
  double sampleMaxValue_ = 1.0;
  bool predictX0_ = true;
  std::string solverType_;
  bool lowerOrderFinal_ = true;
  std::vector<int64_t> disableCorrector_;
  bool useKarras_ = false;
  std::string spacing_;
  int64_t stepsOffset_ = 0;
  bool finalSigmaMin_ = false;
  std::vector<at::Tensor> modelOutputs_;
  int64_t lowerOrderNums_ = 0;
  int64_t thisOrder_ = 0;
  at::Tensor lastSample_;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeUniPCMultistep(const Json& config) {
  return std::make_unique<UniPCMultistepScheduler>(config);
}

}  // namespace sd::schedulers
