// PNDMScheduler, after diffusers v0.30.3 src/diffusers/schedulers/scheduling_pndm.py (PNDMScheduler).
// Pseudo Numerical Methods for Diffusion Models, Liu et al. 2022 (https://arxiv.org/abs/2202.09778):
// Runge-Kutta warm-up steps (PRK) then linear multistep (PLMS); SD ships skip_prk_steps = true.
#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class PNDMScheduler final : public Scheduler {
 public:
  explicit PNDMScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.0001..0.02 "linear", skip_prk_steps false, set_alpha_to_one false,
    // prediction_type "epsilon", timestep_spacing "leading", steps_offset 0.
    initNoiseSchedule(cfg, {0.0001, 0.02, "linear"}, ZeroSnr::kNone, numTrainTimesteps_, betas_, alphasCumprod_);
    finalAlphaCumprod_ = cfg.getBool("set_alpha_to_one", false)
                             ? at::scalar_tensor(1.0, at::TensorOptions().dtype(at::kFloat))
                             : alphasCumprod_[0];
    skipPrkSteps_ = cfg.getBool("skip_prk_steps", false);
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "v_prediction"});
    spacing_ = enumField(cfg, "timestep_spacing", "leading", {"leading", "trailing", "linspace"});
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
  }

  const char* name() const override { return "PNDMScheduler"; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    const int64_t T = numTrainTimesteps_;
    // _timesteps: ascending
    std::vector<int64_t> base;
    if (spacing_ == "linspace") {
      for (double v : npLinspace(0, static_cast<double>(T - 1), n)) base.push_back(static_cast<int64_t>(npRound(v)));
    } else if (spacing_ == "leading") {
      for (int64_t i = 0; i < n; ++i) base.push_back(i * (T / n) + stepsOffset_);
    } else {  // trailing: np.round(np.arange(T, 0, -T / n))[::-1] - 1
      for (double v : npArange(static_cast<double>(T), 0, -static_cast<double>(T) / static_cast<double>(n)))
        base.push_back(static_cast<int64_t>(npRound(v)) - 1);
      std::reverse(base.begin(), base.end());
    }
    const auto m = static_cast<int64_t>(base.size());
    std::vector<int64_t> prk, plms;
    if (skipPrkSteps_) {
      // plms = concat(_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:])[::-1]: the
      // second-to-last timestep is visited twice (the "counter == 1" warm-up step).
      plms.assign(base.begin(), base.end() - 1);
      if (m >= 2) plms.push_back(base[static_cast<size_t>(m - 2)]);
      plms.push_back(base.back());
      std::reverse(plms.begin(), plms.end());
    } else {
      if (m < kPndmOrder)
        fail(codes::kInvalidArgument, "PNDMScheduler.setTimesteps: with skip_prk_steps false numInferenceSteps must be >= 4");
      // prk = (repeat(_timesteps[-4:], 2) + tile([0, T // n // 2], 4))[:-1].repeat(2)[1:-1][::-1]
      std::vector<int64_t> a;
      for (int64_t i = m - kPndmOrder; i < m; ++i)
        for (int64_t k = 0; k < 2; ++k) a.push_back(base[static_cast<size_t>(i)] + (k == 1 ? T / n / 2 : 0));
      a.pop_back();
      std::vector<int64_t> rep;
      for (int64_t v : a) { rep.push_back(v); rep.push_back(v); }
      prk.assign(rep.begin() + 1, rep.end() - 1);
      std::reverse(prk.begin(), prk.end());
      plms.assign(base.begin(), base.end() - 3);  // _timesteps[:-3][::-1]
      std::reverse(plms.begin(), plms.end());
    }
    prkTimesteps_ = prk;
    std::vector<int64_t> all = prk;
    all.insert(all.end(), plms.begin(), plms.end());
    timesteps_ = longTensor(all);  // int64
    numInferenceSteps_ = n;
    ets_.clear();
    counter_ = 0;
    curModelOutput_ = at::Tensor();
    curSample_ = at::Tensor();
    stepIndex_.reset();
    beginIndex_.reset();
  }

  void setBeginIndex(int64_t) override {}  // PNDM indexes by timestep value

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sample, const runtime::Generators&,
                  double) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sample, "PNDMScheduler.step");
    const int64_t t = integerTimestep(timestep, numTrainTimesteps_, "PNDMScheduler.step");
    if (counter_ < static_cast<int64_t>(prkTimesteps_.size()) && !skipPrkSteps_) return stepPrk(modelOutput, t, sample);
    return stepPlms(modelOutput, t, sample);
  }

  at::Tensor addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) override {
    return ddpmAddNoise(alphasCumprod_, original, noise,
                        integerTimestep(timestep, numTrainTimesteps_, "PNDMScheduler.addNoise"));
  }

 private:
  static constexpr int64_t kPndmOrder = 4;

  // Runge-Kutta warm-up (diffusers step_prk).
  at::Tensor stepPrk(at::Tensor modelOutput, int64_t timestep, const at::Tensor& sample) {
    const int64_t diffToPrev = (counter_ % 2) ? 0 : numTrainTimesteps_ / numInferenceSteps_ / 2;
    const int64_t prevTimestep = timestep - diffToPrev;
    timestep = prkTimesteps_[static_cast<size_t>(counter_ / 4 * 4)];
    auto accumulate = [this](const at::Tensor& x) {
      curModelOutput_ = curModelOutput_.defined() ? curModelOutput_ + x : x;  // 0 + x on the first use
    };
    if (counter_ % 4 == 0) {
      accumulate(modelOutput * (1.0 / 6));
      ets_.push_back(modelOutput);
      curSample_ = sample;
    } else if ((counter_ - 1) % 4 == 0) {
      accumulate(modelOutput * (1.0 / 3));
    } else if ((counter_ - 2) % 4 == 0) {
      accumulate(modelOutput * (1.0 / 3));
    } else {
      modelOutput = curModelOutput_ + modelOutput * (1.0 / 6);
      curModelOutput_ = at::Tensor();
    }
    const at::Tensor& curSample = curSample_.defined() ? curSample_ : sample;
    at::Tensor prev = prevSample(curSample, timestep, prevTimestep, modelOutput);
    ++counter_;
    return prev;
  }

  // Linear multistep (diffusers step_plms).
  at::Tensor stepPlms(at::Tensor modelOutput, int64_t timestep, at::Tensor sample) {
    if (!skipPrkSteps_ && ets_.size() < 3)
      fail(codes::kInvalidArgument, "PNDMScheduler.step: PLMS steps need the PRK warm-up steps first");
    int64_t prevTimestep = timestep - numTrainTimesteps_ / numInferenceSteps_;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(modelOutput);
    } else {
      prevTimestep = timestep;
      timestep = timestep + numTrainTimesteps_ / numInferenceSteps_;
    }
    const size_t n = ets_.size();
    if (n == 1 && counter_ == 0) {
      curSample_ = sample;
    } else if (n == 1 && counter_ == 1) {
      modelOutput = (modelOutput + ets_[n - 1]) / 2;
      sample = curSample_;
      curSample_ = at::Tensor();
    } else if (n == 2) {
      modelOutput = (3 * ets_[n - 1] - ets_[n - 2]) / 2;
    } else if (n == 3) {
      modelOutput = (23 * ets_[n - 1] - 16 * ets_[n - 2] + 5 * ets_[n - 3]) / 12;
    } else {
      modelOutput = (55 * ets_[n - 1] - 59 * ets_[n - 2] + 37 * ets_[n - 3] - 9 * ets_[n - 4]) * (1.0 / 24);
    }
    at::Tensor prev = prevSample(sample, timestep, prevTimestep, modelOutput);
    ++counter_;
    return prev;
  }

  // diffusers _get_prev_sample: formula (9) of the PNDM paper.
  at::Tensor prevSample(const at::Tensor& sample, int64_t timestep, int64_t prevTimestep, at::Tensor modelOutput) const {
    if (timestep < 0 || timestep >= numTrainTimesteps_)
      fail(codes::kInvalidArgument, "PNDMScheduler.step: timestep " + std::to_string(timestep) + " out of range");
    at::Tensor alphaProdT = alphasCumprod_[timestep];
    at::Tensor alphaProdTPrev = prevTimestep >= 0 ? alphasCumprod_[prevTimestep] : finalAlphaCumprod_;
    at::Tensor betaProdT = at::rsub(alphaProdT, 1);
    at::Tensor betaProdTPrev = at::rsub(alphaProdTPrev, 1);
    if (predictionType_ == "v_prediction")
      modelOutput = alphaProdT.pow(0.5) * modelOutput + betaProdT.pow(0.5) * sample;
    at::Tensor sampleCoeff = (alphaProdTPrev / alphaProdT).pow(0.5);
    at::Tensor denomCoeff = alphaProdT * betaProdTPrev.pow(0.5) + (alphaProdT * betaProdT * alphaProdTPrev).pow(0.5);
    return sampleCoeff * sample - (alphaProdTPrev - alphaProdT) * modelOutput / denomCoeff;
  }

  at::Tensor finalAlphaCumprod_;
  bool skipPrkSteps_ = false;
  std::string predictionType_;
  std::string spacing_;
  int64_t stepsOffset_ = 0;
  std::vector<int64_t> prkTimesteps_;
  std::vector<at::Tensor> ets_;
  int64_t counter_ = 0;
  at::Tensor curModelOutput_;
  at::Tensor curSample_;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makePNDM(const Json& config) { return std::make_unique<PNDMScheduler>(config); }

}  // namespace sd::schedulers
