// CUDA graphs (issue 13, item 3): a fixed sequence of device work captured once and replayed with
// one launch, as torch.cuda.CUDAGraph / torch.cuda.graph do (PyTorch's at::cuda::CUDAGraph under
// it). What the body reads and writes is fixed at capture: its inputs must be tensors that stay
// alive and are refilled in place before each replay ("static inputs"), and its output is the
// same memory after every replay. The intermediate tensors live in a private memory pool of the
// caching allocator, shared by the graphs of one owner (they are replayed one at a time on one
// stream, so they may reuse each other's intermediates; each graph's output stays allocated).
//
// Built with CUDA support only where CMake found a CUDA libtorch (SD_NATIVE_WITH_CUDA, CMakeLists);
// elsewhere kCuda graphs are E_UNSUPPORTED_MODEL. kEmulated is the same contract on any device
// without a capture: replay() runs the body again and copies its result into the output captured
// first. It exists so that what is built on graphs (pipelines/unet_graphs.h: which inputs are
// static, when a graph is stale) is tested on machines without a GPU; it saves no time.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <utility>

namespace sd::runtime {

/// at::cuda::MempoolId_t without the CUDA headers: {0, 0} = no pool yet (the first capture makes one).
using GraphPoolId = std::pair<unsigned long long, unsigned long long>;

class DeviceGraph {
 public:
  enum class Kind {
    kCuda,      // at::cuda::CUDAGraph: capture on a side stream, replay on the current stream
    kEmulated,  // replay = run the body again into the captured output (tests; any device)
  };
  /// Whether this build captures CUDA graphs (compiled against a CUDA libtorch).
  static bool cudaGraphsBuilt();

  /// `device`: where the body runs (kCuda: a CUDA device, else E_INVALID_ARGUMENT).
  /// E_UNSUPPORTED_MODEL for kCuda in a build without CUDA graphs.
  DeviceGraph(Kind kind, at::Device device);
  ~DeviceGraph();
  DeviceGraph(const DeviceGraph&) = delete;
  DeviceGraph& operator=(const DeviceGraph&) = delete;

  /// Runs `body` once eagerly (the warm-up: cuDNN's benchmark search, lazy initialisations and
  /// one-time probes happen outside the capture) and returns that result; then records `body` into
  /// the graph (kCuda: on a side stream, in the private pool `pool`, made on first use; nothing is
  /// computed while recording). Call once. Anything `body` does that a capture forbids (a host
  /// synchronisation, a pageable host copy) fails the capture: the graph is reset and the error
  /// rethrown (E_INTERNAL naming what failed, or the body's own SdException), so the caller can
  /// run eagerly instead. `body` and what it reads must outlive the graph (kEmulated calls it again).
  at::Tensor warmUpAndCapture(const std::function<at::Tensor()>& body, GraphPoolId* pool);

  /// Launches the recorded work on the current stream; afterwards output() holds its result.
  void replay();
  /// The tensor the captured body returned: overwritten by every replay.
  const at::Tensor& output() const { return output_; }
  Kind kind() const { return kind_; }

 private:
  struct Cuda;  // the at::cuda::CUDAGraph, in device_graph.cc (CUDA builds only)
  Kind kind_;
  at::Device device_;
  std::function<at::Tensor()> body_;  // kEmulated
  at::Tensor output_;
  std::unique_ptr<Cuda> cuda_;
};

}  // namespace sd::runtime
