// torch.nn.GroupNorm + torch.nn.SiLU fused on the CPU (ATen's group_norm CPU kernel's statistics,
// aten/src/ATen/native/cpu/group_norm_kernel.cpp; diffusers models/resnet.py ResnetBlock2D): the
// dispatcher and the baseline (no AVX2) build of the loops; diffusers models/activations.py GEGLU.
#include "nn/group_norm_silu.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "nn/group_norm_silu_problem.h"
#include "runtime/cpu_features.h"
#include "util/error.h"

#define SD_GN_LANES 4
#define SD_GN_NAMESPACE sd_gn_baseline
#include "nn/group_norm_silu_kernel.h"

namespace sd::nn {

namespace {

detail::GroupNormFn pickLoop() {
  if (runtime::cpuHasAvx2Fma())
    if (detail::GroupNormFn f = detail::groupNormAvx2()) return f;
  return &sd_gn_baseline::groupNormGroups;
}

detail::GroupNormFn loop() {
  static const detail::GroupNormFn f = pickLoop();
  return f;
}

detail::GroupNormNhwcFns nhwcLoops() {
  static const detail::GroupNormNhwcFns f = [] {
    if (runtime::cpuHasAvx2Fma()) {
      const detail::GroupNormNhwcFns a = detail::groupNormNhwcAvx2();
      if (a.stats && a.apply) return a;
    }
    return detail::GroupNormNhwcFns{&sd_gn_baseline::groupNormNhwcStats, &sd_gn_baseline::groupNormNhwcApply};
  }();
  return f;
}

// A 4-d tensor laid out channels-last ([N, H, W, C] in memory) and not also contiguous.
bool channelsLastLayout(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

constexpr int64_t kNhwcRows = 64;  // spatial rows per statistics task: 64·C floats stay in L2

// The channels-last path: per (sample, 64 rows) the moments of every group (parallel), merged per
// group in float64 in row order (Chan et al., as the NCHW loop merges its chunks), then
// y = x·scale[c] + shift[c] row by row (parallel), vectorised across channels.
void groupNormNhwc(const detail::GroupNormProblem& pr, int64_t n) {
  const detail::GroupNormNhwcFns f = nhwcLoops();
  const int64_t S = pr.spatial, C = pr.channels, G = pr.groups, D = C / G;
  const int64_t chunks = (S + kNhwcRows - 1) / kNhwcRows;
  std::vector<detail::GroupMoments> moments(static_cast<size_t>(n * chunks * G));
  at::parallel_for(0, n * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> work(static_cast<size_t>(3 * C));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t k = t % chunks, r0 = k * kNhwcRows;
      f.stats(pr, t / chunks, r0, std::min(S, r0 + kNhwcRows), work.data(), moments.data() + t * G);
    }
  });
  std::vector<float> scale(static_cast<size_t>(n * C)), shift(static_cast<size_t>(n * C));
  for (int64_t s = 0; s < n; ++s)
    for (int64_t g = 0; g < G; ++g) {
      detail::GroupMoments group;
      for (int64_t k = 0; k < chunks; ++k) {
        const detail::GroupMoments& m = moments[static_cast<size_t>((s * chunks + k) * G + g)];
        group.merge(m.count, m.mean, m.m2);
      }
      const float rstd = group.rstd(pr.eps);
      const float meanF = static_cast<float>(group.mean);
      for (int64_t c = g * D; c < (g + 1) * D; ++c) {
        const float sc = rstd * pr.gamma[c];
        scale[static_cast<size_t>(s * C + c)] = sc;
        shift[static_cast<size_t>(s * C + c)] = pr.beta[c] - meanF * sc;
      }
    }
  at::parallel_for(0, n * S, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {  // split at sample boundaries
      const int64_t s = i / S, stop = std::min(end, (s + 1) * S);
      f.apply(pr, s, i - s * S, stop - s * S, scale.data() + s * C, shift.data() + s * C);
      i = stop;
    }
  });
}

detail::GegluFn gegluLoop() {
  static const detail::GegluFn f = [] {
    if (runtime::cpuHasAvx2Fma())
      if (detail::GegluFn g = detail::gegluAvx2()) return g;
    return &sd_gn_baseline::gegluRows;
  }();
  return f;
}

bool enabledAtStart() {
  const char* v = std::getenv("SD_FUSED_GROUP_NORM");
  return !(v && std::strcmp(v, "0") == 0);
}

std::atomic<bool>& enabledFlag() {
  static std::atomic<bool> on{enabledAtStart()};
  return on;
}

}  // namespace

bool fusedGroupNormEnabled() { return enabledFlag().load(std::memory_order_relaxed); }

void setFusedGroupNormEnabled(bool on) { enabledFlag().store(on, std::memory_order_relaxed); }

const char* groupNormSiluIsa() { return loop() == &sd_gn_baseline::groupNormGroups ? "baseline" : "avx2"; }

bool groupNormSiluSupports(const at::Tensor& x) {
  return x.defined() && x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
         x.dim() >= 2 && (x.is_contiguous() || channelsLastLayout(x));
}

at::Tensor groupNormSiluCpu(const at::Tensor& x, int64_t groups, const at::Tensor& gamma, const at::Tensor& beta,
                            double eps, bool silu) {
  RECORD_FUNCTION(silu ? "sd::group_norm_silu" : "sd::group_norm", std::vector<c10::IValue>({x}));
  if (!groupNormSiluSupports(x))
    fail(codes::kInvalidArgument,
         "group_norm_silu: x must be a contiguous (or 4-d channels-last) float32 or bfloat16 CPU tensor [N, C, *]");
  const int64_t n = x.size(0), c = x.size(1);
  if (groups <= 0 || c % groups != 0)
    fail(codes::kInvalidArgument, "group_norm_silu: " + std::to_string(c) + " channels are not divisible into " +
                                      std::to_string(groups) + " groups");
  if (!gamma.defined() || !beta.defined() || gamma.numel() != c || beta.numel() != c)
    fail(codes::kInvalidArgument, "group_norm_silu: gamma and beta must hold " + std::to_string(c) + " elements");
  const at::Tensor g = gamma.to(at::kCPU, at::kFloat).contiguous(), b = beta.to(at::kCPU, at::kFloat).contiguous();
  const bool nhwc = channelsLastLayout(x);
  at::Tensor out = at::empty_like(x, nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);  // [N, C, *]
  if (x.numel() == 0) return out;
  detail::GroupNormProblem pr;
  pr.x = x.data_ptr();
  pr.out = out.data_ptr();
  pr.gamma = g.data_ptr<float>();
  pr.beta = b.data_ptr<float>();
  pr.channels = c;
  pr.groups = groups;
  pr.spatial = x.numel() / (n * c);
  pr.eps = static_cast<float>(eps);
  pr.bfloat16 = x.scalar_type() == at::kBFloat16;
  pr.silu = silu;
  if (nhwc) {
    groupNormNhwc(pr, n);
    return out;
  }
  const detail::GroupNormFn run = loop();
  at::parallel_for(0, n * groups, 1, [&](int64_t begin, int64_t end) { run(pr, begin, end); });
  return out;
}

bool gegluCpuSupports(const at::Tensor& proj) {
  return proj.defined() && proj.device().is_cpu() &&
         (proj.scalar_type() == at::kFloat || proj.scalar_type() == at::kBFloat16) && proj.dim() >= 1 &&
         proj.size(-1) % 2 == 0 && proj.is_contiguous();
}

at::Tensor gegluCpu(const at::Tensor& proj) {
  RECORD_FUNCTION("sd::geglu", std::vector<c10::IValue>({proj}));
  if (!gegluCpuSupports(proj))
    fail(codes::kInvalidArgument,
         "geglu: proj must be a contiguous float32 or bfloat16 CPU tensor [..., 2F] with an even last dimension");
  const int64_t f = proj.size(-1) / 2;
  std::vector<int64_t> shape = proj.sizes().vec();
  shape.back() = f;
  at::Tensor out = at::empty(shape, proj.options());  // [..., F]
  const int64_t rows = f == 0 ? 0 : proj.numel() / (2 * f);
  if (rows == 0) return out;
  detail::GegluProblem pr;
  pr.in = proj.data_ptr();
  pr.inStride = 2 * f;
  pr.out = out.data_ptr();
  pr.features = f;
  pr.bfloat16 = proj.scalar_type() == at::kBFloat16;
  const detail::GegluFn run = gegluLoop();
  // ≈ 16 KiB of output per task at least: a GELU row costs tens of cycles per element
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, f));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { run(pr, begin, end); });
  return out;
}

}  // namespace sd::nn
