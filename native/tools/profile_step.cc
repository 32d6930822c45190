// Where a UNet step or a VAE decode spends its time, per ATen op (libtorch's legacy autograd
// profiler, self time: an op's time minus that of the ops it calls), on a diffusers folder such as
// `sd-native create-model --preset sd15 --scale full`. Follows the shapes of diffusers'
// StableDiffusionPipeline on the CPU: UNet at CFG batch 2 with 77 text tokens, VAE decode of batch 1.
//
//   cmake -S . -B build-tools -DSD_BUILD_TOOLS=ON && cmake --build build-tools --target profile_step
//   ./build-tools/profile_step --model DIR [--what unet|vae] [--size 512] [--dtype bfloat16]
//       [--attention auto|math|flash|sdpa|sliced] [--repeat 1] [--threads N] [--top 25] [--channels-last 1]
//       [--cache-scope run|call]
//
// Prints the wall time of each call (with its CPU time in user and kernel mode, minor page faults
// and the caching CPU allocator's counters, runtime/cpu_caching_allocator.h) and a table of ops
// sorted by self time (ms per call, share). --channels-last 1: the weights and input in
// channels-last (the pipelines' enableChannelsLast). As the addon runs: install the allocator here
// (SD_CPU_CACHING_ALLOCATOR=0 to compare without) and run with GOMP_SPINCOUNT=1000 in the
// environment (lib/native.ts sets it before libtorch loads; a linked program reads it at start-up).
// Op shares stay meaningful on a loaded machine where absolute times do not.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include "models/autoencoder_kl.h"
#include "models/unet_2d_condition.h"
#include "nn/attention.h"
#include "nn/weight_storage.h"
#include "runtime/cpu_caching_allocator.h"

namespace {

namespace prof = torch::autograd::profiler;

struct OpStat {
  double selfUs = 0;
  int64_t calls = 0;
};

// Self time per op name from the calling thread's push/pop events.
void accumulate(const prof::thread_event_lists& lists, std::map<std::string, OpStat>& stats, double& totalUs) {
  for (const auto& list : lists) {
    struct Open {
      const prof::LegacyEvent* ev;
      double childUs;
    };
    std::vector<Open> stack;
    for (const auto& ev : list) {
      if (ev.kind() == prof::EventKind::PushRange) {
        stack.push_back({&ev, 0.0});
      } else if (ev.kind() == prof::EventKind::PopRange && !stack.empty()) {
        Open o = stack.back();
        stack.pop_back();
        const double us = o.ev->cpuElapsedUs(ev);
        OpStat& s = stats[o.ev->name()];
        s.selfUs += us - o.childUs;
        s.calls += 1;
        if (!stack.empty()) stack.back().childUs += us;
        else totalUs += us;
      }
    }
  }
}

at::ScalarType parseDtype(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  std::fprintf(stderr, "unknown dtype %s\n", s.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, what = "unet", dtypeName = "float32", attention = "auto";
  int64_t size = 512;
  int repeat = 1, top = 25;
  bool channelsLast = false;
  std::string cacheScope;  // "run" | "call"; default: run for the UNet, call for the VAE
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model = v;
    else if (a == "--what") what = v;
    else if (a == "--size") size = std::atoll(v.c_str());
    else if (a == "--dtype") dtypeName = v;
    else if (a == "--attention") attention = v;
    else if (a == "--repeat") repeat = std::atoi(v.c_str());
    else if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--top") top = std::atoi(v.c_str());
    else if (a == "--channels-last") channelsLast = v == "1";
    else if (a == "--cache-scope") cacheScope = v;
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: profile_step --model DIR [--what unet|vae] [--size 512] [--dtype float32|bfloat16]\n");
    return 2;
  }
  const bool caching = sd::runtime::installCpuCachingAllocator();  // as the addon does (SD_CPU_CACHING_ALLOCATOR=0: off)
  at::set_num_threads(threads);
  at::NoGradGuard noGrad;
  const at::ScalarType dtype = parseDtype(dtypeName);
  sd::nn::AttentionOptions ao;
  if (attention == "math") ao.backend = sd::nn::AttentionOptions::Backend::kMath;
  else if (attention == "sdpa") ao.backend = sd::nn::AttentionOptions::Backend::kSdpa;
  else if (attention == "flash") ao.backend = sd::nn::AttentionOptions::Backend::kFlash;
  else if (attention == "sliced") ao.sliceSize = sd::nn::AttentionOptions::kSliceAuto;

  std::function<at::Tensor()> call;
  std::unique_ptr<sd::models::UNet2DConditionModel> unet;
  std::shared_ptr<sd::models::AutoencoderKL> vae;
  const int64_t h = size / 8;
  at::manual_seed(0);
  at::Tensor x, ctx, t, z;
  if (what == "unet") {
    unet = sd::models::UNet2DConditionModel::fromPretrained(model + "/unet", at::kCPU, dtype);
    unet->setAttentionOptions(ao);
    x = at::randn({2, 4, h, h}).to(dtype);                                        // [2, 4, h, w] CFG batch
    if (channelsLast) {
      sd::nn::setMemoryFormat(unet->weights(), at::MemoryFormat::ChannelsLast);
      x = x.contiguous(at::MemoryFormat::ChannelsLast);
    }
    ctx = at::randn({2, 77, unet->config().crossAttentionDim.at(0)}).to(dtype);  // [2, 77, 768]
    t = at::full({}, 999, at::kLong);
    call = [&] { return unet->forward(x, t, ctx); };
  } else {
    vae = sd::models::AutoencoderKL::fromPretrained(model + "/vae", at::kCPU, dtype);
    *vae->attentionOptions() = ao;
    z = at::randn({1, 4, h, h}).to(dtype);  // [1, 4, h, w]
    if (channelsLast) {
      sd::nn::setMemoryFormat(vae->weights(), at::MemoryFormat::ChannelsLast);
      z = z.contiguous(at::MemoryFormat::ChannelsLast);
    }
    call = [&] { return vae->decode(z); };
  }
  std::printf("libtorch %s, %d threads (in this thread), %s %s at %lld², attention %s, CPU caching allocator %s\n",
              TORCH_VERSION, at::get_num_threads(), what.c_str(), dtypeName.c_str(), static_cast<long long>(size),
              attention.c_str(), caching ? "on" : "off");
  // The caching allocator's scope: a pipeline call runs all its UNet steps in one (--cache-scope
  // run: the cache outlives each profiled call) and one VAE decode (--cache-scope call).
  std::unique_ptr<sd::runtime::CpuCacheScope> outer;
  if (cacheScope == "run" || (cacheScope.empty() && what == "unet")) outer = std::make_unique<sd::runtime::CpuCacheScope>();
  {
    sd::runtime::CpuCacheScope perCall;  // one per call, as a pipeline's generate opens one
    call();  // warm-up (first-touch, oneDNN primitive caches)
  }
  std::map<std::string, OpStat> stats;
  double totalUs = 0;
  for (int r = 0; r < repeat; ++r) {
    rusage ru0{};
    getrusage(RUSAGE_SELF, &ru0);
    const auto t0 = std::chrono::steady_clock::now();
    {
      sd::runtime::CpuCacheScope perCall;
      prof::TLSLegacyProfilerGuard guard(
          torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU),
          [&](const prof::thread_event_lists& lists) { accumulate(lists, stats, totalUs); });
      call();
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rusage ru1{};
    getrusage(RUSAGE_SELF, &ru1);
    const auto secs = [](const timeval& a, const timeval& b) { return double(b.tv_sec - a.tv_sec) + 1e-6 * double(b.tv_usec - a.tv_usec); };
    const sd::runtime::CpuCacheStats cs = sd::runtime::cpuCacheStats();
    std::printf("call %d: %.2f s (user %.2f s, sys %.2f s, %ld minor page faults; cache hits %lld, misses %lld, "
                "recycled %lld, peak %.0f MiB, peak live %.0f MiB)\n",
                r + 1, wall, secs(ru0.ru_utime, ru1.ru_utime), secs(ru0.ru_stime, ru1.ru_stime),
                ru1.ru_minflt - ru0.ru_minflt, static_cast<long long>(cs.hits), static_cast<long long>(cs.misses),
                static_cast<long long>(cs.recycled), cs.peakBytes / 1048576.0, cs.peakLiveBytes / 1048576.0);
  }
  std::vector<std::pair<std::string, OpStat>> rows(stats.begin(), stats.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.selfUs > b.second.selfUs; });
  std::printf("%-44s %10s %8s %7s\n", "op (self time)", "ms/call", "calls", "share");
  for (int i = 0; i < top && i < static_cast<int>(rows.size()); ++i) {
    const auto& [name, s] = rows[i];
    std::printf("%-44s %10.1f %8lld %6.1f%%\n", name.c_str(), s.selfUs / 1000.0 / repeat,
                static_cast<long long>(s.calls / repeat), 100.0 * s.selfUs / totalUs);
  }
  std::printf("%-44s %10.1f\n", "total (profiled)", totalUs / 1000.0 / repeat);
  return 0;
}
