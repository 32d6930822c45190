// Probes for wrong reduced-precision CPU kernels (see kernel_quirks.h); no diffusers counterpart.
#include "runtime/kernel_quirks.h"

#include <ATen/core/grad_mode.h>

#include <mutex>

namespace sd::runtime {

namespace {

// Deterministic, well-spread values (the global generator is left alone).
at::Tensor probeInput(at::IntArrayRef shape, double phase) {
  const int64_t n = c10::multiply_integers(shape);
  return at::sin(at::arange(n, at::kFloat).mul(0.7311).add(phase)).mul(1.5).reshape(shape);
}

double relError(const at::Tensor& got, const at::Tensor& want) {
  return (got.to(at::kFloat) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

constexpr double kBound = 1.0 / 16;  // 2^-4

CpuKernelQuirks probe(at::ScalarType dtype) {
  at::NoGradGuard noGrad;
  CpuKernelQuirks q;
  try {
    at::Tensor x = probeInput({1, 32, 8, 8}, 0.0).to(dtype);        // [1, 32, 8, 8]
    at::Tensor w = probeInput({4, 32, 3, 3}, 1.0).mul(0.1).to(dtype);  // 4 output channels, 3×3
    at::Tensor want = at::conv2d(x.to(at::kFloat), w.to(at::kFloat), {}, 1, 1);
    q.conv2dNarrowOutput = relError(at::conv2d(x, w, {}, 1, 1), want) > kBound;
  } catch (const c10::Error&) {
    // no kernel in this dtype: checkDtypeSupported reports it where it matters
  }
  try {
    at::Tensor x = probeInput({1, 32, 16, 16}, 2.0).mul(3).add(1).to(dtype);
    at::Tensor gamma = probeInput({32}, 3.0).to(dtype), beta = probeInput({32}, 4.0).to(dtype);
    at::Tensor want = at::group_norm(x.to(at::kFloat), 8, gamma.to(at::kFloat), beta.to(at::kFloat), 1e-6);
    at::Tensor got = at::group_norm(x.contiguous(at::MemoryFormat::ChannelsLast), 8, gamma, beta, 1e-6);
    q.groupNormChannelsLast = relError(got, want) > kBound;
  } catch (const c10::Error&) {
  }
  return q;
}

}  // namespace

const CpuKernelQuirks& cpuKernelQuirks(at::ScalarType dtype) {
  static const CpuKernelQuirks kNone;
  static std::once_flag bf16Once, f16Once;
  static CpuKernelQuirks bf16, f16;
  switch (dtype) {
    case at::kBFloat16:
      std::call_once(bf16Once, [] { bf16 = probe(at::kBFloat16); });
      return bf16;
    case at::kHalf:
      std::call_once(f16Once, [] { f16 = probe(at::kHalf); });
      return f16;
    default:
      return kNone;
  }
}

}  // namespace sd::runtime
