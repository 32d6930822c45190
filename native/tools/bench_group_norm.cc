// Times nn/group_norm_silu (GroupNorm + SiLU fused on the CPU) against ATen's at::group_norm +
// at::silu, alternating A and B in one process (a shared machine's load hits both alike), at the
// shapes of SD 1.5's VAE decoder and UNet at 512², float32 and bfloat16; then, with --model, a
// whole UNet step or VAE decode with the fusion off and on (nn::setFusedGroupNormEnabled):
//
//   cmake -S . -B build-tools -DSD_BUILD_TOOLS=ON && cmake --build build-tools --target bench_group_norm
//   ./build-tools/bench_group_norm [--repeat 7] [--threads N] [--geglu-only 1]
//   ./build-tools/bench_group_norm --model DIR --what unet|vae [--size 256] [--dtype float32] [--repeat 5]
//
// Then GEGLU (nn::gegluCpu vs chunk + at::gelu + mul) at the transformer shapes. Each
// GroupNorm shape also times GroupNorm alone (the kernel without SiLU, used by nn::GroupNorm). Prints
// milliseconds per call (median), the ratio ATen / fused (> 1: the fusion is faster), each
// side's max|err| against a float64 reference, and the load average before and after.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "models/autoencoder_kl.h"
#include "models/unet_2d_condition.h"
#include "nn/group_norm_silu.h"

namespace {

std::string loadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

double seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Alternates a and b `repeat` times after one warm-up each; medians in ms.
std::pair<double, double> abMs(const std::function<void()>& a, const std::function<void()>& b, int repeat) {
  a();
  b();
  std::vector<double> ta, tb;
  for (int i = 0; i < repeat; ++i) {
    ta.push_back(seconds(a) * 1e3);
    tb.push_back(seconds(b) * 1e3);
  }
  return {median(ta), median(tb)};
}

double relErr(const at::Tensor& got, const at::Tensor& ref) {
  return (got.to(at::kDouble) - ref).abs().max().item<double>() / std::max(1e-30, ref.abs().max().item<double>());
}

at::ScalarType parseDtype(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  std::fprintf(stderr, "unknown dtype %s (float32 or bfloat16)\n", s.c_str());
  std::exit(2);
}

void kernels(int repeat) {
  struct Shape { int64_t n, c, h, w; const char* where; };
  const std::vector<Shape> shapes = {
      {1, 512, 64, 64, "VAE mid/up0"},    {1, 512, 128, 128, "VAE up1"}, {1, 256, 256, 256, "VAE up2"},
      {1, 128, 512, 512, "VAE up3/out"},  {2, 320, 64, 64, "UNet 320"},  {2, 640, 32, 32, "UNet 640"},
      {2, 1280, 16, 16, "UNet 1280"},
  };
  std::printf("%-9s %-12s %-20s %10s %10s %7s %12s %12s\n", "dtype", "where", "shape", "aten ms", "fused ms",
              "ratio", "aten err", "fused err");
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Shape& s : shapes) {
      at::manual_seed(0);
      const at::Tensor x = (at::randn({s.n, s.c, s.h, s.w}) * 3 + 0.5).to(dtype);
      const at::Tensor gamma = (at::rand({s.c}) + 0.5).to(dtype), beta = (at::randn({s.c}) * 0.2).to(dtype);
      const double eps = 1e-6;
      at::Tensor ya, yb;
      const auto [ma, mb] = abMs([&] { ya = at::silu(at::group_norm(x, 32, gamma, beta, eps)); },
                                 [&] { yb = sd::nn::groupNormSiluCpu(x, 32, gamma, beta, eps); }, repeat);
      const at::Tensor ref = at::silu(at::group_norm(x.to(at::kDouble), 32, gamma.to(at::kDouble), beta.to(at::kDouble), eps));
      at::Tensor na, nb;
      const auto [ga, gb] = abMs([&] { na = at::group_norm(x, 32, gamma, beta, eps); },
                                 [&] { nb = sd::nn::groupNormSiluCpu(x, 32, gamma, beta, eps, /*silu=*/false); }, repeat);
      const at::Tensor nref = at::group_norm(x.to(at::kDouble), 32, gamma.to(at::kDouble), beta.to(at::kDouble), eps);
      char shape[64];
      std::snprintf(shape, sizeof shape, "[%lld,%lld,%lld,%lld]", static_cast<long long>(s.n),
                    static_cast<long long>(s.c), static_cast<long long>(s.h), static_cast<long long>(s.w));
      std::printf("%-9s %-12s %-20s %10.1f %10.1f %6.2fx %12.2e %12.2e\n", dtype == at::kFloat ? "float32" : "bfloat16",
                  s.where, shape, ma, mb, ma / mb, relErr(ya, ref), relErr(yb, ref));
      std::printf("%-9s %-12s %-20s %10.1f %10.1f %6.2fx %12.2e %12.2e  (GroupNorm alone)\n", "", "", "", ga, gb,
                  ga / gb, relErr(na, nref), relErr(nb, nref));
      std::fflush(stdout);
    }
  }
}

// GEGLU after the feed-forward projection at SD 1.5's 512² transformer shapes: ATen's
// chunk + gelu + mul against nn::gegluCpu.
void geglu(int repeat) {
  struct Shape { int64_t n, f; const char* where; };
  const std::vector<Shape> shapes = {{4096, 1280, "level 1 (dim 320)"}, {1024, 2560, "level 2 (dim 640)"},
                                     {256, 5120, "level 3 (dim 1280)"}};
  std::printf("\n%-9s %-20s %-18s %10s %10s %7s %12s %12s\n", "dtype", "GEGLU", "proj shape", "aten ms", "fused ms",
              "ratio", "aten err", "fused err");
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const Shape& s : shapes) {
      at::manual_seed(0);
      const at::Tensor proj = (at::randn({2, s.n, 2 * s.f}) * 2).to(dtype);  // [2, N, 2F]
      at::Tensor ya, yb;
      const auto [ma, mb] = abMs(
          [&] {
            auto parts = proj.chunk(2, -1);
            ya = parts[0] * at::gelu(parts[1]);
          },
          [&] { yb = sd::nn::gegluCpu(proj); }, repeat);
      const auto parts = proj.to(at::kDouble).chunk(2, -1);
      const at::Tensor ref = parts[0] * at::gelu(parts[1]);
      char shape[64];
      std::snprintf(shape, sizeof shape, "[2,%lld,%lld]", static_cast<long long>(s.n), static_cast<long long>(2 * s.f));
      std::printf("%-9s %-20s %-18s %10.1f %10.1f %6.2fx %12.2e %12.2e\n", dtype == at::kFloat ? "float32" : "bfloat16",
                  s.where, shape, ma, mb, ma / mb, relErr(ya, ref), relErr(yb, ref));
      std::fflush(stdout);
    }
  }
}

void model(const std::string& dir, const std::string& what, int64_t size, at::ScalarType dtype, int repeat) {
  std::function<at::Tensor()> call;
  std::unique_ptr<sd::models::UNet2DConditionModel> unet;
  std::shared_ptr<sd::models::AutoencoderKL> vae;
  const int64_t h = size / 8;
  at::manual_seed(0);
  at::Tensor x, ctx, t, z;
  if (what == "unet") {
    unet = sd::models::UNet2DConditionModel::fromPretrained(dir + "/unet", at::kCPU, dtype);
    x = at::randn({2, 4, h, h}).to(dtype);                                        // [2, 4, h, w] CFG batch
    ctx = at::randn({2, 77, unet->config().crossAttentionDim.at(0)}).to(dtype);  // [2, 77, 768]
    t = at::full({}, 999, at::kLong);
    call = [&] { return unet->forward(x, t, ctx); };
  } else {
    vae = sd::models::AutoencoderKL::fromPretrained(dir + "/vae", at::kCPU, dtype);
    z = at::randn({1, 4, h, h}).to(dtype);  // [1, 4, h, w]
    call = [&] { return vae->decode(z); };
  }
  at::Tensor off, on;
  const auto [ms0, ms1] = abMs(
      [&] {
        sd::nn::setFusedGroupNormEnabled(false);
        off = call();
      },
      [&] {
        sd::nn::setFusedGroupNormEnabled(true);
        on = call();
      },
      repeat);
  const double diff = relErr(on, off.to(at::kDouble));
  std::printf("%s %s at %lld²: ATen %.0f ms, fused %.0f ms (median of %d, alternating): ratio %.3fx; "
              "outputs differ by max|Δ|/max|off| %.2e\n",
              what.c_str(), dtype == at::kFloat ? "float32" : "bfloat16", static_cast<long long>(size), ms0, ms1, repeat,
              ms0 / ms1, diff);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, what = "unet", dtypeName = "float32";
  int64_t size = 256;
  int repeat = 7;
  bool gegluOnly = false;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") dir = v;
    else if (a == "--what") what = v;
    else if (a == "--size") size = std::atoll(v.c_str());
    else if (a == "--dtype") dtypeName = v;
    else if (a == "--repeat") repeat = std::max(1, std::atoi(v.c_str()));
    else if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--geglu-only") gegluOnly = v == "1";
  }
  at::set_num_threads(threads);
  at::NoGradGuard noGrad;
  std::printf("libtorch %s, %d threads, group_norm_silu kernel %s; load average %s\n", TORCH_VERSION,
              at::get_num_threads(), sd::nn::groupNormSiluIsa(), loadAverage().c_str());
  if (dir.empty()) {
    if (!gegluOnly) kernels(repeat);
    geglu(repeat);
  }
  else model(dir, what, size, parseDtype(dtypeName), repeat);
  std::printf("load average at the end: %s\n", loadAverage().c_str());
  return 0;
}
