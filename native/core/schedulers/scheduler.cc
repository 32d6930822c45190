// The SchedulerMixin-like base and the factory, after diffusers v0.30.3
// src/diffusers/schedulers/scheduling_utils.py (SchedulerMixin) and the per-class
// index_for_timestep / _init_step_index / set_begin_index helpers.
#include "schedulers/scheduler.h"

#include <functional>

#include "schedulers/factories.h"
#include "util/error.h"

namespace sd::schedulers {

std::optional<at::Tensor> Scheduler::sigmas() const {
  if (!sigmas_.defined()) return std::nullopt;
  return sigmas_;
}

at::Tensor Scheduler::scaleModelInput(const at::Tensor& sample, double) { return sample; }

void Scheduler::setBeginIndex(int64_t beginIndex) {
  requireTimesteps("setBeginIndex");
  if (beginIndex < 0 || beginIndex >= timesteps_.size(0))
    fail(codes::kInvalidArgument, std::string(name()) + ".setBeginIndex: beginIndex " + std::to_string(beginIndex) +
                                      " is outside [0, " + std::to_string(timesteps_.size(0)) + ")");
  beginIndex_ = beginIndex;
}

void Scheduler::requireTimesteps(const char* what) const {
  if (numInferenceSteps_ <= 0)
    fail(codes::kInvalidArgument,
         std::string(name()) + "." + what + ": call setTimesteps(numInferenceSteps) first");
}

void Scheduler::checkNumSteps(int64_t n) const {
  if (n < 1 || n > numTrainTimesteps_)
    fail(codes::kInvalidArgument, std::string(name()) + ".setTimesteps: numInferenceSteps must be an integer in [1, " +
                                      std::to_string(numTrainTimesteps_) + "] (num_train_timesteps), got " +
                                      std::to_string(n));
}

int64_t Scheduler::indexForTimestep(double timestep, bool lastWhenMissing) const {
  at::Tensor matches;
  if (at::isIntegralType(timesteps_.scalar_type(), false)) {
    if (timestep == std::floor(timestep) && std::abs(timestep) < 9.0e15)
      matches = (timesteps_ == static_cast<int64_t>(timestep)).nonzero();
  } else {
    matches = (timesteps_ == timestep).nonzero();  // compared in the schedule's float32
  }
  const int64_t count = matches.defined() ? matches.size(0) : 0;
  if (count == 0) {
    if (lastWhenMissing) return timesteps_.size(0) - 1;
    fail(codes::kInvalidArgument, std::string(name()) + ": timestep " + std::to_string(timestep) +
                                      " is not one of the scheduler's timesteps");
  }
  // The first step of a schedule with a repeated timestep uses the second match, so that starting
  // in the middle of a denoising schedule (img2img) does not skip a sigma.
  return matches[count > 1 ? 1 : 0][0].item<int64_t>();
}

void Scheduler::initStepIndex(double timestep, bool lastWhenMissing) {
  stepIndex_ = beginIndex_ ? *beginIndex_ : indexForTimestep(timestep, lastWhenMissing);
}

const std::vector<std::string>& schedulerNames() {
  static const std::vector<std::string> names = {
      "DDIMScheduler",       "PNDMScheduler",
      "LMSDiscreteScheduler", "EulerDiscreteScheduler",
      "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
      "HeunDiscreteScheduler", "UniPCMultistepScheduler",
      "LCMScheduler"};
  return names;
}

std::unique_ptr<Scheduler> createScheduler(const std::string& className, const Json& config) {
  using Factory = std::unique_ptr<Scheduler> (*)(const Json&);
  static const std::pair<const char*, Factory> table[] = {
      {"DDIMScheduler", &detail::makeDDIM},
      {"PNDMScheduler", &detail::makePNDM},
      {"LMSDiscreteScheduler", &detail::makeLMSDiscrete},
      {"EulerDiscreteScheduler", &detail::makeEulerDiscrete},
      {"EulerAncestralDiscreteScheduler", &detail::makeEulerAncestralDiscrete},
      {"DPMSolverMultistepScheduler", &detail::makeDPMSolverMultistep},
      {"HeunDiscreteScheduler", &detail::makeHeunDiscrete},
      {"UniPCMultistepScheduler", &detail::makeUniPCMultistep},
      {"LCMScheduler", &detail::makeLCM},
  };
  for (const auto& [n, make] : table)
    if (className == n) return make(config);
  std::string list;
  for (const auto& n : schedulerNames()) list += (list.empty() ? "" : ", ") + n;
  fail(codes::kUnsupportedModel, "unknown scheduler \"" + className + "\"; supported: " + list);
}

}  // namespace sd::schedulers
