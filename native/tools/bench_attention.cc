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
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "nn/attention.h"
#include "nn/flash_attention.h"

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

// softmax(q kᵀ / sqrt(D)) v in float64: the reference the kernels are compared with.
at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads) {
  const int64_t b = q.size(0), n = q.size(1), m = k.size(1), d = q.size(2) / heads;
  auto split = [&](const at::Tensor& x, int64_t len) {
    return x.to(at::kDouble).reshape({b, len, heads, d}).transpose(1, 2);  // [B, H, len, D]
  };
  at::Tensor s = at::matmul(split(q, n), split(k, m).transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  return at::matmul(at::softmax(s, -1), split(v, m)).transpose(1, 2).reshape({b, n, heads * d});
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 512, m = 0, heads = 8, d = 40;
  int repeat = 3;
  // intra-op threads as a pipeline on this machine uses them by default (one per core)
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--size")) size = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--keys")) m = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--heads")) heads = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--dim")) d = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  at::set_num_threads(threads);
  at::NoGradGuard noGrad;
  const int64_t b = 2, n = (size / 8) * (size / 8);
  if (m <= 0) m = n;  // self-attention unless --keys (77 for cross-attention)
  std::printf("libtorch %s, %d threads, flash kernel %s; attention at %lld²: q [%lld, %lld, %lld], k/v [%lld, %lld, "
              "%lld], %lld heads of %lld\n",
              TORCH_VERSION, at::get_num_threads(), sd::nn::flashAttentionIsa(), static_cast<long long>(size),
              static_cast<long long>(b), static_cast<long long>(n), static_cast<long long>(heads * d),
              static_cast<long long>(b), static_cast<long long>(m), static_cast<long long>(heads * d),
              static_cast<long long>(heads), static_cast<long long>(d));
  std::printf("%-9s %-34s %10s %14s\n", "dtype", "backend", "ms/call", "max|err|/max|ref|");
  at::manual_seed(0);
  const at::Tensor q64 = at::randn({b, n, heads * d}), k64 = at::randn({b, m, heads * d}), v64 = at::randn({b, m, heads * d});
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor q = q64.to(dtype), k = k64.to(dtype), v = v64.to(dtype);
    const at::Tensor ref = reference(q, k, v, heads);  // the rounded inputs, exact arithmetic
    struct Case { const char* name; sd::nn::AttentionOptions o; };
    std::vector<Case> cases;
    sd::nn::AttentionOptions math;
    math.backend = sd::nn::AttentionOptions::Backend::kMath;
    cases.push_back({"math", math});
    sd::nn::AttentionOptions sliced = math;
    sliced.sliceSize = sd::nn::AttentionOptions::kSliceAuto;
    cases.push_back({"sliced 'auto' (half the heads)", sliced});
    sd::nn::AttentionOptions flash;
    flash.backend = sd::nn::AttentionOptions::Backend::kFlash;
    cases.push_back({"flash (sd-native CPU kernel)", flash});
    if (sd::nn::sdpaAvailable()) {
      sd::nn::AttentionOptions sdpa;
      sdpa.backend = sd::nn::AttentionOptions::Backend::kSdpa;
      cases.push_back({"sdpa", sdpa});
    }
    const char* dn = dtype == at::kFloat ? "float32" : "bfloat16";
    for (const Case& c : cases) {
      at::Tensor out;
      const double ms = medianMs([&] { out = sd::nn::attention(q, k, v, heads, c.o); }, repeat);
      const double err = (out.to(at::kDouble) - ref).abs().max().item<double>() / ref.abs().max().item<double>();
      std::printf("%-9s %-34s %10.1f %14.2e\n", dn, c.name, ms, err);
    }
    sd::nn::AttentionOptions autoOpts;
    const auto kernel = sd::nn::chooseAttentionKernel(autoOpts, at::kCPU, dtype, n, m, d);
    std::printf("%-9s 'auto' picks: %s\n", dn,
                kernel == sd::nn::AttentionKernel::kSdpa ? "sdpa" : kernel == sd::nn::AttentionKernel::kFlash ? "flash" : "math");
  }
  return 0;
}
