#include "runtime/device_timer.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "util/torch_compat.h"

namespace sd::runtime {

namespace {
// c10::Event::elapsedTime exists from libtorch 2.x's device-generic events (checked on 2.6)
#if SD_TORCH_AT_LEAST(2, 6)
constexpr bool kEventTiming = true;
#else
constexpr bool kEventTiming = false;
#endif
}  // namespace

DeviceTimer::DeviceTimer(at::Device device) : device_(device), host0_(std::chrono::steady_clock::now()) {
  if (kEventTiming && device_.is_cuda()) {
    c10::impl::VirtualGuardImpl impl(device_.type());
    start_.emplace(device_.type(), c10::EventFlag::BACKEND_DEFAULT);  // timing enabled
    start_->record(impl.getStream(device_));
  }
}

double DeviceTimer::stopMs() {
  if (device_.type() == at::kCPU) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - host0_).count();
  }
  c10::impl::VirtualGuardImpl impl(device_.type());
#if SD_TORCH_AT_LEAST(2, 6)
  if (start_) {
    c10::Event end(device_.type(), c10::EventFlag::BACKEND_DEFAULT);
    end.record(impl.getStream(device_));
    end.synchronize();
    return start_->elapsedTime(end);
  }
#endif
  impl.synchronizeStream(impl.getStream(device_));  // older libtorch, other devices: wait, then the host clock
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - host0_).count();
}

}  // namespace sd::runtime
