#include "runtime/device_graph.h"

#include <string>

#include "util/error.h"
#include "util/torch_compat.h"

#if defined(SD_NATIVE_WITH_CUDA)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace sd::runtime {

#if defined(SD_NATIVE_WITH_CUDA)
struct DeviceGraph::Cuda {
  at::cuda::CUDAGraph graph;
};
bool DeviceGraph::cudaGraphsBuilt() { return true; }
#else
struct DeviceGraph::Cuda {};
bool DeviceGraph::cudaGraphsBuilt() { return false; }
#endif

DeviceGraph::DeviceGraph(Kind kind, at::Device device) : kind_(kind), device_(device) {
  if (kind_ != Kind::kCuda) return;
  if (!device_.is_cuda()) fail(codes::kInvalidArgument, "CUDA graphs run on a CUDA device, not " + device_.str());
  if (!cudaGraphsBuilt())
    fail(codes::kUnsupportedModel,
         "this build of sd-native has no CUDA graph support (it was not compiled against a CUDA libtorch with "
         "CMake; rebuild with `npm rebuild sd-native` where PyTorch's CUDA libtorch is found)");
  cuda_ = std::make_unique<Cuda>();
}

DeviceGraph::~DeviceGraph() = default;

at::Tensor DeviceGraph::warmUpAndCapture(const std::function<at::Tensor()>& body, GraphPoolId* pool) {
  if (output_.defined() || body_) fail(codes::kInternal, "DeviceGraph: captured twice");
  if (kind_ == Kind::kEmulated) {
    at::Tensor eager = body();  // the warm-up, returned to the caller
    output_ = body();           // the "capture": what replay() overwrites
    body_ = body;
    return eager;
  }
#if defined(SD_NATIVE_WITH_CUDA)
  const c10::cuda::CUDAGuard deviceGuard(device_);
  // Capture needs a stream other than the legacy default one, and the work queued so far (the
  // static inputs' copies) finished before it reads them: torch.cuda.graph's side stream and sync.
  c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device_.index());
  c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index());
  current.synchronize();
  at::Tensor eager;
  {
    const c10::cuda::CUDAStreamGuard streamGuard(side);
    eager = body();  // warm-up: cuDNN benchmark search, kernel caches, sd-native's one-time probes
    side.synchronize();
    if (pool->first == 0 && pool->second == 0) *pool = at::cuda::graph_pool_handle();
#if SD_TORCH_AT_LEAST(2, 0)
    // thread-local mode: another pipeline's worker thread may keep allocating on this GPU meanwhile
    cuda_->graph.capture_begin(*pool, cudaStreamCaptureModeThreadLocal);
#else
    cuda_->graph.capture_begin(*pool);  // libtorch 1.x: global capture mode only
#endif
    try {
      output_ = body();
    } catch (...) {
      try {
        cuda_->graph.capture_end();  // leaves capture mode (throws: the capture was invalidated)
      } catch (...) {
      }
      cuda_->graph.reset();
      output_ = at::Tensor();
      throw;
    }
    try {
      cuda_->graph.capture_end();
    } catch (const std::exception& e) {
      cuda_->graph.reset();
      output_ = at::Tensor();
      fail(codes::kInternal, std::string("CUDA graph capture failed: ") + e.what());
    }
    side.synchronize();
  }
  // the warm-up's result was allocated on the side stream: hand the caller a copy made on its own
  return eager.clone();
#else
  fail(codes::kUnsupportedModel, "this build of sd-native has no CUDA graph support");
#endif
}

void DeviceGraph::replay() {
  if (!output_.defined()) fail(codes::kInternal, "DeviceGraph: replay before capture");
  if (kind_ == Kind::kEmulated) {
    output_.copy_(body_());
    return;
  }
#if defined(SD_NATIVE_WITH_CUDA)
  const c10::cuda::CUDAGuard deviceGuard(device_);
  cuda_->graph.replay();
#endif
}

}  // namespace sd::runtime
