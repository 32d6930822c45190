// LCMScheduler, after diffusers v0.30.3 src/diffusers/schedulers/scheduling_lcm.py (LCMScheduler).
// Latent Consistency Models, Luo et al. 2023 (https://arxiv.org/abs/2310.04378): each step predicts
// the consistency-function output `denoised`, then re-noises it to the next timestep.
#include <cmath>

#include "schedulers/common.h"
#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {
namespace {

using namespace detail;

class LCMScheduler final : public Scheduler {
 public:
  explicit LCMScheduler(const Json& config) {
    const ConfigReader cfg = configReader(config, name());
    // diffusers defaults: beta 0.00085..0.012 "scaled_linear", original_inference_steps 50,
    // clip_sample false, set_alpha_to_one true, steps_offset 0, prediction_type "epsilon",
    // timestep_spacing "leading", timestep_scaling 10.0.
    initNoiseSchedule(cfg, {0.00085, 0.012, "scaled_linear"}, ZeroSnr::kPlain, numTrainTimesteps_, betas_, alphasCumprod_);
    finalAlphaCumprod_ = cfg.getBool("set_alpha_to_one", true)
                             ? at::scalar_tensor(1.0, at::TensorOptions().dtype(at::kFloat))
                             : alphasCumprod_[0];
    originalInferenceSteps_ = cfg.getInt("original_inference_steps", 50);
    if (originalInferenceSteps_ < 1 || originalInferenceSteps_ > numTrainTimesteps_)
      cfg.error("original_inference_steps", "must be in [1, num_train_timesteps]");
    clipSample_ = cfg.getBool("clip_sample", false);
    clipSampleRange_ = cfg.getDoubleIn("clip_sample_range", 1.0, 0, 1e6);
    predictionType_ = enumField(cfg, "prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    thresholding_ = cfg.getBool("thresholding", false);
    thresholdRatio_ = cfg.getDoubleIn("dynamic_thresholding_ratio", 0.995, 0, 1);
    sampleMaxValue_ = cfg.getDoubleIn("sample_max_value", 1.0, 0, 1e6);
    timestepScaling_ = cfg.getDoubleIn("timestep_scaling", 10.0, 0, 1e6);
    // timestep_spacing is a config field of LCMScheduler but set_timesteps does not use it.
    enumField(cfg, "timestep_spacing", "leading", {"leading", "trailing", "linspace"});
  }

  const char* name() const override { return "LCMScheduler"; }

  void setTimesteps(int64_t n) override {
    checkNumSteps(n);
    const int64_t originalSteps = originalInferenceSteps_;
    if (n > originalSteps)
      fail(codes::kInvalidArgument, "LCMScheduler.setTimesteps: numInferenceSteps " + std::to_string(n) +
                                        " cannot be larger than original_inference_steps " + std::to_string(originalSteps));
    // LCM training schedule: [1 .. original_steps] * k - 1 (strength 1), reversed.
    const int64_t k = numTrainTimesteps_ / originalSteps;
    std::vector<int64_t> origin;
    for (int64_t i = originalSteps; i >= 1; --i) origin.push_back(i * k - 1);
    // inference_indices = floor(np.linspace(0, len, n, endpoint=False))
    std::vector<int64_t> ts;
    for (double v : npLinspace(0, static_cast<double>(origin.size()), n, false))
      ts.push_back(origin[static_cast<size_t>(std::floor(v))]);
    timesteps_ = longTensor(ts);  // int64 [n]
    numInferenceSteps_ = n;
    stepIndex_.reset();
    beginIndex_.reset();
    predOriginalSample_ = at::Tensor();
  }

  at::Tensor step(const at::Tensor& modelOutput, double timestep, const at::Tensor& sample, const runtime::Generators& generator,
                  double) override {
    requireTimesteps("step");
    checkSameShape(modelOutput, sample, "LCMScheduler.step");
    const int64_t t = integerTimestep(timestep, numTrainTimesteps_, "LCMScheduler.step");
    if (!stepIndex_) initStepIndex(timestep);
    // 1. previous step value
    const int64_t prevStepIndex = *stepIndex_ + 1;
    const int64_t prevT = prevStepIndex < timesteps_.size(0) ? timesteps_[prevStepIndex].item<int64_t>() : t;
    // 2. alphas, betas (0-d float32)
    at::Tensor alphaProdT = alphasCumprod_[t];
    at::Tensor alphaProdTPrev = prevT >= 0 ? alphasCumprod_[prevT] : finalAlphaCumprod_;
    at::Tensor betaProdT = at::rsub(alphaProdT, 1);
    at::Tensor betaProdTPrev = at::rsub(alphaProdTPrev, 1);
    // 3. boundary-condition scalings (get_scalings_for_boundary_condition_discrete); diffusers
    //    receives the timestep as an int64 tensor, so these are float32 tensor ops.
    const double sigmaData = 0.5;
    at::Tensor scaled = scalarLong(t) * timestepScaling_;                              // float32
    at::Tensor cSkip = (scaled.pow(2) + sigmaData * sigmaData).reciprocal() * (sigmaData * sigmaData);
    at::Tensor cOut = scaled / (scaled.pow(2) + sigmaData * sigmaData).pow(0.5);
    // 4. predicted original sample
    at::Tensor predOriginal;
    if (predictionType_ == "epsilon") predOriginal = (sample - betaProdT.sqrt() * modelOutput) / alphaProdT.sqrt();
    else if (predictionType_ == "sample") predOriginal = modelOutput;
    else predOriginal = alphaProdT.sqrt() * sample - betaProdT.sqrt() * modelOutput;
    // 5. clip or threshold
    if (thresholding_) predOriginal = thresholdSample(predOriginal, thresholdRatio_, sampleMaxValue_);
    else if (clipSample_) predOriginal = clipSample(predOriginal, clipSampleRange_);
    // 6. denoised = consistency-model output
    at::Tensor denoised = cOut * predOriginal + cSkip * sample;
    // 7. re-noise to the next timestep (one randn per step, except after the last one)
    at::Tensor prevSample;
    if (*stepIndex_ != numInferenceSteps_ - 1) {
      at::Tensor noise = randnTensor(modelOutput.sizes(), generator, modelOutput.options().dtype(denoised.scalar_type()));
      prevSample = alphaProdTPrev.sqrt() * denoised + betaProdTPrev.sqrt() * noise;
    } else {
      prevSample = denoised;
    }
    ++*stepIndex_;
    predOriginalSample_ = denoised;
    return prevSample;
  }

  at::Tensor addNoise(const at::Tensor& original, const at::Tensor& noise, double timestep) override {
    return ddpmAddNoise(alphasCumprod_, original, noise,
                        integerTimestep(timestep, numTrainTimesteps_, "LCMScheduler.addNoise"));
  }

 private:
  at::Tensor finalAlphaCumprod_;
  int64_t originalInferenceSteps_ = 50;
  bool clipSample_ = false;
  double clipSampleRange_ = 1.0;
  std::string predictionType_;
  bool thresholding_ = false;
  double thresholdRatio_ = 0.995;
  double sampleMaxValue_ = 1.0;
  double timestepScaling_ = 10.0;
};

}  // namespace

std::unique_ptr<Scheduler> detail::makeLCM(const Json& config) { return std::make_unique<LCMScheduler>(config); }

}  // namespace sd::schedulers
