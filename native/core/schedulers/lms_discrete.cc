// LMSDiscreteScheduler, after diffusers v0.30.3 src/diffusers/schedulers/scheduling_lms_discrete.py
// (LMSDiscreteScheduler): k-diffusion's linear multistep method (up to 4 past derivatives).
#include <deque>

#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

// QUADPACK's 21-point Gauss-Kronrod rule (dqk21), what scipy.integrate.quad evaluates first; for
// the LMS integrands (polynomials of degree <= 3) its error estimate passes at once, so the
// result is this single rule, summed in QUADPACK's order.
constexpr double kXgk[11] = {0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
                             0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
                             0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
                             0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
                             0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
                             0.000000000000000000000000000000000};
constexpr double kWgk[11] = {0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
                             0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
                             0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
                             0.123491976262065851077208936120320, 0.134709217311473325928054001771707,
                             0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
                             0.149445554002916905664936468389821};

template <typename F>
double gaussKronrod21(const F& f, double a, double b) {
  const double centr = 0.5 * (a + b);
  const double hlgth = 0.5 * (b - a);
  double resk = kWgk[10] * f(centr);
  for (int j = 1; j <= 5; ++j) {  // Gauss nodes (Fortran xgk(2j))
    const double absc = hlgth * kXgk[2 * j - 1];
    resk += kWgk[2 * j - 1] * (f(centr - absc) + f(centr + absc));
  }
  for (int j = 1; j <= 5; ++j) {  // Kronrod nodes (Fortran xgk(2j-1))
    const double absc = hlgth * kXgk[2 * j - 2];
    resk += kWgk[2 * j - 2] * (f(centr - absc) + f(centr + absc));
  }
  return resk * hlgth;
}

class LMSDiscreteScheduler final : public KarrasStyleScheduler {
 public:
  explicit LMSDiscreteScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.0001..0.02 "linear", use_karras_sigmas false, prediction_type
    // "epsilon", timestep_spacing "linspace", steps_offset 0.
    initNoiseSchedule(cfg, {0.0001, 0.02, "linear"}, ZeroSnr::kNone, numTrainTimesteps_, betas_, alphasCumprod_);
    useKarras_ = cfg.getBool("use_karras_sigmas", false);
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "v_prediction", "sample"});
    spacing_ = enumField(cfg, "timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
    sigmas_ = at::cat({trainSigmas(alphasCumprod_).flip(0), at::zeros({1}, at::kFloat)});
  }

  const char* name() const override { return "LMSDiscreteScheduler"; }

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
    sigmas_ = floatTensor(sig);  // float32 [n+1]
    // float32 timesteps; with Karras sigmas diffusers keeps _sigma_to_t's float64 array
    timesteps_ = useKarras_ ? at::tensor(ts, at::TensorOptions().dtype(at::kDouble)) : floatTensor(ts);
    numInferenceSteps_ = n;
    stepIndex_.reset();
    beginIndex_.reset();
    derivatives_.clear();
    predOriginalSample_ = at::Tensor();
  }

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sample, const runtime::Generators&,
                  double) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sample, "LMSDiscreteScheduler.step");
    if (!stepIndex_) initStepIndex(timestep);
    const int64_t i = *stepIndex_;
    constexpr int64_t kMaxOrder = 4;
    at::Tensor sigma = sigmas_[i];
    // 1. predicted original sample x0
    at::Tensor predOriginal;
    if (predictionType_ == "epsilon") predOriginal = sample - sigma * modelOutput;
    else if (predictionType_ == "v_prediction")
      predOriginal = modelOutput * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (sample / (sigma.pow(2) + 1));
    else predOriginal = modelOutput;
    // 2. ODE derivative, kept for the multistep combination
    derivatives_.push_back((sample - predOriginal) / sigma);
    if (static_cast<int64_t>(derivatives_.size()) > kMaxOrder) derivatives_.pop_front();
    // 3. linear multistep coefficients: ∫ over [σ_i, σ_{i+1}] of the Lagrange basis polynomials
    const int64_t order = std::min(i + 1, kMaxOrder);
    at::Tensor sum;  // python: sum(coeff * derivative ...) starts from 0
    auto rev = derivatives_.rbegin();
    for (int64_t cur = 0; cur < order && rev != derivatives_.rend(); ++cur, ++rev) {
      at::Tensor term = *rev * lmsCoefficient(order, i, cur);
      sum = sum.defined() ? sum + term : term;
    }
    at::Tensor prevSample = sample + sum;
    stepIndex_ = i + 1;
    predOriginalSample_ = predOriginal;
    return prevSample;
  }

 private:
  // diffusers get_lms_coefficient: the integrand runs on float32 torch scalars (σ are float32
  // tensors), so it is evaluated in float32 here too; the quadrature itself is float64.
  double lmsCoefficient(int64_t order, int64_t t, int64_t current) const {
    const std::vector<float> s = toFloats(sigmas_);
    auto sg = [&s](int64_t k) { return s[static_cast<size_t>(k)]; };
    auto integrand = [&](double tau) -> double {
      bool any = false;
      float prod = 1.0f;
      const auto tauF = static_cast<float>(tau);
      for (int64_t k = 0; k < order; ++k) {
        if (k == current) continue;
        const float factor = (tauF - sg(t - k)) / (sg(t - current) - sg(t - k));
        prod = any ? prod * factor : factor;  // 1.0 * factor is exact
        any = true;
      }
      return any ? static_cast<double>(prod) : 1.0;
    };
    return gaussKronrod21(integrand, static_cast<double>(sg(t)), static_cast<double>(sg(t + 1)));
  }

  bool useKarras_ = false;
  std::string predictionType_;
  int64_t stepsOffset_ = 0;
  std::deque<at::Tensor> derivatives_;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeLMSDiscrete(const Json& config) {
  return std::make_unique<LMSDiscreteScheduler>(config);
}

}  // namespace sd::schedulers
