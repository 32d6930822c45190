// Internal: one factory per scheduler class (each defined in its own <name>.cc), used by
// createScheduler(). Not part of the public interface.
#pragma once

#include <memory>

#include "schedulers/scheduler.h"

namespace sd::schedulers::detail {
std::unique_ptr<Scheduler> makeDDIM(const Json& config);                     // ddim.cc
std::unique_ptr<Scheduler> makePNDM(const Json& config);                     // pndm.cc
std::unique_ptr<Scheduler> makeLMSDiscrete(const Json& config);              // lms_discrete.cc
std::unique_ptr<Scheduler> makeEulerDiscrete(const Json& config);            // euler_discrete.cc
std::unique_ptr<Scheduler> makeEulerAncestralDiscrete(const Json& config);   // euler_ancestral_discrete.cc
std::unique_ptr<Scheduler> makeDPMSolverMultistep(const Json& config);       // dpm_solver_multistep.cc
std::unique_ptr<Scheduler> makeHeunDiscrete(const Json& config);             // heun_discrete.cc
std::unique_ptr<Scheduler> makeUniPCMultistep(const Json& config);           // unipc_multistep.cc
std::unique_ptr<Scheduler> makeLCM(const Json& config);                      // lcm.cc
}  // namespace sd::schedulers::detail
