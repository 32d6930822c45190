// enableCudaGraphs (issue 13, item 3): the UNet forward of the denoising loop captured as a CUDA
// graph per input signature and replayed at every step — what torch.compile(mode="reduce-overhead")
// and stable-fast do for diffusers' UNet, done with at::cuda::CUDAGraph (runtime/device_graph.h).
//
// One graph per signature: the sample's shape, strides (channels_last or not) and dtype — i.e.
// (batch with both CFG halves, height, width, dtype) — the timestep's and text embeddings' shapes
// and dtypes, SDXL's added conditions. Before each replay the step's inputs are copied into the
// graph's static inputs; the scheduler (scale_model_input before, step after) and CFG stay outside,
// so every scheduler works unchanged. A graph is dropped when anything it baked in changes: any
// weight tensor replaced or cast (fp8 storage, LoRA fuse/unfuse, moves), the LoRA adapters, their
// weights or the call's LoRA scale (read as a number inside the kernels), the attention options,
// cuDNN / TF32 flags, or another UNet object.
//
// Not captured (run eagerly): UNet calls with ControlNet residuals (they would need static
// residual inputs per skip). Abort (runtime/cancellation.h) is seen between steps only while a
// graph replays: its check points run on the host at capture, not inside the replayed kernels.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device_graph.h"

namespace sd::models {
class UNet2DConditionModel;
struct UNetAddedCond;
}  // namespace sd::models

namespace sd::pipelines {

/// True when SD_NATIVE_CUDA_GRAPHS_EMULATE=1 is in the environment: enableCudaGraphs is then
/// accepted on a CPU pipeline and runs with DeviceGraph::Kind::kEmulated — a test hook for the
/// bookkeeping (static inputs, signatures, invalidation) on machines without a GPU; no speed-up.
bool cudaGraphsEmulated();

class UNetGraphs {
 public:
  /// kind: runtime::DeviceGraph::Kind::kCuda on a CUDA pipeline; kEmulated for tests without a GPU
  /// (SD_NATIVE_CUDA_GRAPHS_EMULATE=1: the same bookkeeping, no capture). At most `maxGraphs`
  /// signatures are kept (the least recently used is dropped).
  UNetGraphs(runtime::DeviceGraph::Kind kind, at::Device device, size_t maxGraphs = 4);
  ~UNetGraphs();
  UNetGraphs(const UNetGraphs&) = delete;
  UNetGraphs& operator=(const UNetGraphs&) = delete;

  /// unet.forward(sample, timestep, encoderHiddenStates, added) through the graph of this input
  /// signature: captured on first use (one eager warm-up whose result is returned, then the
  /// capture), replayed afterwards. sample [B, C, h, w] in the UNet's dtype on its device;
  /// timestep 0-d or [B] on that device (a CPU timestep works but costs a host copy per step);
  /// encoderHiddenStates [B, M, D]; added (SDXL) rows as the batch. Returns a new tensor [B, C_out,
  /// h, w] (a copy of the graph's output, so callers may keep it: multistep schedulers do).
  /// Errors: the UNet's own (E_INVALID_ARGUMENT for bad shapes, at the capture); E_INTERNAL when a
  /// capture fails (nothing is kept for that signature).
  at::Tensor forward(const models::UNet2DConditionModel& unet, const at::Tensor& sample, const at::Tensor& timestep,
                     const at::Tensor& encoderHiddenStates, const models::UNetAddedCond* added);

  /// Drops every graph (and, once no graph holds it, the private memory pool's blocks).
  void clear();

  struct Stats {
    int64_t captures = 0;       // graphs recorded
    int64_t replays = 0;        // forwards served by a replay
    int64_t invalidations = 0;  // times the graphs were dropped because what they baked in changed
    int64_t graphs = 0;         // graphs held now
  };
  Stats stats() const { return {captures_, replays_, invalidations_, static_cast<int64_t>(graphs_.size())}; }

 private:
  struct Graph;
  /// What a graph baked in besides its inputs' shapes: a hash of the UNet's identity, weights,
  /// LoRA state and scale, attention options and the cuDNN/TF32 flags.
  static uint64_t modelFingerprint(const models::UNet2DConditionModel& unet);
  static std::string signature(const at::Tensor& sample, const at::Tensor& timestep,
                               const at::Tensor& encoderHiddenStates, const models::UNetAddedCond* added);

  runtime::DeviceGraph::Kind kind_;
  at::Device device_;
  size_t maxGraphs_;
  runtime::GraphPoolId pool_{0, 0};
  uint64_t fingerprint_ = 0;
  std::list<std::unique_ptr<Graph>> graphs_;  // most recently used first
  int64_t captures_ = 0, replays_ = 0, invalidations_ = 0;
};

}  // namespace sd::pipelines
