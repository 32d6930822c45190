// The addon's entry point: registers every binding file's exports.
#include <ATen/Parallel.h>
#include <napi.h>

#include <thread>

#include "addon/bindings.h"
#include "runtime/cpu_caching_allocator.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // libtorch's CPU intra-op pool defaults to what OpenMP reports, which can be 1 in containers;
  // DESIGN.md: default to all cores (a pipeline's `threads` option overrides it at load).
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cores > 0 && at::get_num_threads() < cores) at::set_num_threads(cores);
  // Large CPU tensor buffers are reused within a call instead of being faulted in afresh by each
  // mmap (runtime/cpu_caching_allocator.h; SD_CPU_CACHING_ALLOCATOR=0 turns it off).
  sd::runtime::installCpuCachingAllocator();
  sd::addon::InitIo(env, exports);
  sd::addon::InitTextEncoder(env, exports);
  sd::addon::InitVae(env, exports);
  sd::addon::InitUNet(env, exports);
  sd::addon::InitSchedulers(env, exports);
  sd::addon::InitCheckpoint(env, exports);
  sd::addon::InitPipeline(env, exports);
  sd::addon::InitModels(env, exports);
  sd::addon::InitBackends(env, exports);
  sd::addon::InitLora(env, exports);
  sd::addon::InitControlNet(env, exports);
  sd::addon::InitAutoencoderTiny(env, exports);
  sd::addon::InitPipelineVae(env, exports);
  sd::addon::InitCanny(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(sd_native, Init)
