// Times sd-native's attention entry point (nn/attention: diffusers AttnProcessor / SlicedAttnProcessor
// / AttnProcessor2_0) per backend and dtype on the CPU, at the shapes of SD 1.5's UNet, so the
// 'auto' choice in nn::usesSdpa rests on a measurement (docs/BENCHMARKS.md):
//
//   cmake -S . -B build-tools -DSD_BUILD_TOOLS=ON && cmake --build build-tools --target bench_attention
//   ./build-tools/bench_attention [--size 512] [--repeat 3] [--threads N]
//
// Shapes: CFG batch 2, 8 heads of 40 channels, self-attention over the (size/8)² latent pixels of
// the first down block (the largest attention in the UNet). Prints milliseconds per call (median).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "nn/attention.h"

namespace {

double medianMs(const std::function<void()>& f, int repeat) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 512;
  int repeat = 3;
  // intra-op threads as a pipeline on this machine uses them by default (one per core)
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--size")) size = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  at::set_num_threads(threads);
  at::NoGradGuard noGrad;
  const int64_t b = 2, heads = 8, d = 40, n = (size / 8) * (size / 8);
  std::printf("libtorch %s, %d threads, SD 1.5 self-attention at %lld²: q/k/v [%lld, %lld, %lld], %lld heads\n",
              TORCH_VERSION, at::get_num_threads(), static_cast<long long>(size), static_cast<long long>(b),
              static_cast<long long>(n), static_cast<long long>(heads * d), static_cast<long long>(heads));
  std::printf("%-9s %-34s %10s\n", "dtype", "backend", "ms/call");
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const auto opts = at::TensorOptions().dtype(dtype);
    at::Tensor q = at::randn({b, n, heads * d}).to(opts), k = at::randn({b, n, heads * d}).to(opts),
               v = at::randn({b, n, heads * d}).to(opts);
    struct Case { const char* name; sd::nn::AttentionOptions o; };
    std::vector<Case> cases;
    sd::nn::AttentionOptions math;
    math.backend = sd::nn::AttentionOptions::Backend::kMath;
    cases.push_back({"math", math});
    sd::nn::AttentionOptions sliced = math;
    sliced.sliceSize = sd::nn::AttentionOptions::kSliceAuto;
    cases.push_back({"sliced 'auto' (half the heads)", sliced});
    if (sd::nn::sdpaAvailable()) {
      sd::nn::AttentionOptions sdpa;
      sdpa.backend = sd::nn::AttentionOptions::Backend::kSdpa;
      cases.push_back({"sdpa", sdpa});
    }
    const char* dn = dtype == at::kFloat ? "float32" : "bfloat16";
    for (const Case& c : cases) {
      const double ms = medianMs([&] { (void)sd::nn::attention(q, k, v, heads, c.o); }, repeat);
      std::printf("%-9s %-34s %10.1f\n", dn, c.name, ms);
    }
    sd::nn::AttentionOptions autoOpts;
    std::printf("%-9s 'auto' picks: %s\n", dn, sd::nn::usesSdpa(autoOpts, at::kCPU, dtype) ? "sdpa" : "math");
  }
  return 0;
}
