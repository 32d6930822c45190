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
         x.dim() >= 2 && x.is_contiguous();
}

at::Tensor groupNormSiluCpu(const at::Tensor& x, int64_t groups, const at::Tensor& gamma, const at::Tensor& beta,
                            double eps, bool silu) {
  RECORD_FUNCTION(silu ? "sd::group_norm_silu" : "sd::group_norm", std::vector<c10::IValue>({x}));
  if (!groupNormSiluSupports(x))
    fail(codes::kInvalidArgument, "group_norm_silu: x must be a contiguous float32 or bfloat16 CPU tensor [N, C, *]");
  const int64_t n = x.size(0), c = x.size(1);
  if (groups <= 0 || c % groups != 0)
    fail(codes::kInvalidArgument, "group_norm_silu: " + std::to_string(c) + " channels are not divisible into " +
                                      std::to_string(groups) + " groups");
  if (!gamma.defined() || !beta.defined() || gamma.numel() != c || beta.numel() != c)
    fail(codes::kInvalidArgument, "group_norm_silu: gamma and beta must hold " + std::to_string(c) + " elements");
  const at::Tensor g = gamma.to(at::kCPU, at::kFloat).contiguous(), b = beta.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);  // [N, C, *]
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
