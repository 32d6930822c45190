// Phase timings that measure the device's work, not the host's launches (issue 13, item 2). On
// the CPU (and any device without events) a host clock. On CUDA with libtorch >= 2.6 a pair of
// timing events recorded on the current stream, read once at stop() — the only synchronisation,
// one per phase, never one per step; with an older libtorch, stop() synchronises the device and
// reads the host clock. The CUDA path is compiled against c10's device-generic Event (no CUDA
// headers), and only exercised on a GPU machine (scripts/gpu-check.sh).
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Event.h>

#include <chrono>
#include <optional>

namespace sd::runtime {

class DeviceTimer {
 public:
  /// Starts timing work queued on `device` from now on.
  explicit DeviceTimer(at::Device device);
  /// Milliseconds from construction to now, the device's queued work included (waits for it).
  double stopMs();

 private:
  at::Device device_;
  std::chrono::steady_clock::time_point host0_;
  std::optional<c10::Event> start_;  // CUDA (libtorch >= 2.6): timing events
};

}  // namespace sd::runtime
