// DDIMScheduler, after diffusers v0.30.3 src/diffusers/schedulers/scheduling_ddim.py (DDIMScheduler).
// Denoising Diffusion Implicit Models, Song et al. 2020 (https://arxiv.org/abs/2010.02502).
#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class DDIMScheduler final : public Scheduler {
 public:
  explicit DDIMScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.0001..0.02 "linear", clip_sample true, set_alpha_to_one true,
    // steps_offset 0, prediction_type "epsilon", timestep_spacing "leading".
    initNoiseSchedule(cfg, {0.0001, 0.02, "linear"}, ZeroSnr::kPlain, numTrainTimesteps_, betas_, alphasCumprod_);
    finalAlphaCumprod_ = cfg.getBool("set_alpha_to_one", true)
                             ? at::scalar_tensor(1.0, at::TensorOptions().dtype(at::kFloat))
                             : alphasCumprod_[0];
    clipSample_ = cfg.getBool("clip_sample", true);
    clipSampleRange_ = cfg.getDoubleIn("clip_sample_range", 1.0, 0, 1e6);
    stepsOffset_ = cfg.getIntIn("steps_offset", 0, 0, numTrainTimesteps_ - 1);
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    thresholding_ = cfg.getBool("thresholding", false);
    thresholdRatio_ = cfg.getDoubleIn("dynamic_thresholding_ratio", 0.995, 0, 1);
    sampleMaxValue_ = cfg.getDoubleIn("sample_max_value", 1.0, 0, 1e6);
    spacing_ = enumField(cfg, "timestep_spacing", "leading", {"leading", "trailing", "linspace"});
  }

  const char* name() const override { return "DDIMScheduler"; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    numInferenceSteps_ = n;
    timesteps_ = longTensor(ddimSpacedTimesteps(spacing_, numTrainTimesteps_, n, stepsOffset_));  // int64 [n]
    stepIndex_.reset();
    beginIndex_.reset();
    predOriginalSample_ = at::Tensor();
  }

  void setBeginIndex(int64_t) override {}  // DDIM indexes by timestep value

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sample, const runtime::Generators& generator,
                  double eta) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sample, "DDIMScheduler.step");
    if (!(eta >= 0)) fail(codes::kInvalidArgument, "DDIMScheduler.step: eta must be >= 0");
    const int64_t t = integerTimestep(timestep, numTrainTimesteps_, "DDIMScheduler.step");
    // 1. previous step value (= t - 1 in the DDIM paper's notation)
    const int64_t prevT = t - numTrainTimesteps_ / numInferenceSteps_;
    // 2. alphas, betas (0-d float32)
    at::Tensor alphaProdT = alphasCumprod_[t];
    at::Tensor alphaProdTPrev = prevT >= 0 ? alphasCumprod_[prevT] : finalAlphaCumprod_;
    at::Tensor betaProdT = at::rsub(alphaProdT, 1);
    // 3. predicted original sample x0 and predicted noise, from the model output
    at::Tensor predOriginal, predEpsilon;
    if (predictionType_ == "epsilon") {
      predOriginal = (sample - betaProdT.pow(0.5) * modelOutput) / alphaProdT.pow(0.5);
      predEpsilon = modelOutput;
    } else if (predictionType_ == "sample") {
      predOriginal = modelOutput;
      predEpsilon = (sample - alphaProdT.pow(0.5) * predOriginal) / betaProdT.pow(0.5);
    } else {  // v_prediction
      predOriginal = alphaProdT.pow(0.5) * sample - betaProdT.pow(0.5) * modelOutput;
      predEpsilon = alphaProdT.pow(0.5) * modelOutput + betaProdT.pow(0.5) * sample;
    }
    // 4. clip or threshold x0
    if (thresholding_) predOriginal = thresholdSample(predOriginal, thresholdRatio_, sampleMaxValue_);
    else if (clipSample_) predOriginal = clipSample(predOriginal, clipSampleRange_);
    // 5. variance σ_t(η) (formula (16))
    at::Tensor betaProdTPrev = at::rsub(alphaProdTPrev, 1);
    at::Tensor variance = (betaProdTPrev / betaProdT) * at::rsub(alphaProdT / alphaProdTPrev, 1);
    at::Tensor stdDevT = variance.pow(0.5) * eta;
    // 6. direction pointing to x_t, then x_{t-1} without noise (formula (12))
    at::Tensor direction = (at::rsub(alphaProdTPrev, 1) - stdDevT.pow(2)).pow(0.5) * predEpsilon;
    at::Tensor prevSample = alphaProdTPrev.pow(0.5) * predOriginal + direction;
    // 7. add noise (one randn(model_output.shape) from the generator per step when eta > 0)
    if (eta > 0) {
      at::Tensor noise = randnTensor(modelOutput.sizes(), generator, modelOutput.options());
      prevSample = prevSample + stdDevT * noise;
    }
    predOriginalSample_ = predOriginal;
    return prevSample;
  }

  at::Tensor addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) override {
    return ddpmAddNoise(alphasCumprod_, original, noise, integerTimestep(timestep, numTrainTimesteps_, "DDIMScheduler.addNoise"));
  }

 private:
  at::Tensor finalAlphaCumprod_;
  bool clipSample_ = true;
  double clipSampleRange_ = 1.0;
  int64_t stepsOffset_ = 0;
  std::string predictionType_;
  bool thresholding_ = false;
  double thresholdRatio_ = 0.995;
  double sampleMaxValue_ = 1.0;
  std::string spacing_;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeDDIM(const Json& config) { return std::make_unique<DDIMScheduler>(config); }

}  // namespace sd::schedulers
