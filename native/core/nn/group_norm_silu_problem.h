// The shared description of one nn/group_norm_silu call, handed from the dispatcher
// (group_norm_silu.cc) to the per-instruction-set loops (group_norm_silu_kernel.h).
// Not a public header: include nn/group_norm_silu.h.
#pragma once

#include <cmath>
#include <cstdint>

namespace sd::nn::detail {

struct GroupNormProblem {
  const void* x = nullptr;      // [N, C, S] contiguous ([N, S, C] for the channels-last loops), float32 or bfloat16 (S: H·W)
  void* out = nullptr;          // x's layout and dtype
  const float* gamma = nullptr;  // [C] float32
  const float* beta = nullptr;   // [C] float32
  int64_t channels = 0, groups = 1, spatial = 0;
  float eps = 1e-5f;
  bool bfloat16 = false;  // x and out are bfloat16 (else float32)
  bool silu = true;       // y = silu(x̂·γ + β); else y = x̂·γ + β
};

/// Runs the groups [begin, end) of the problem (group t = n·groups + g): statistics, then output.
using GroupNormFn = void (*)(const GroupNormProblem&, int64_t groupBegin, int64_t groupEnd);

/// The AVX2+FMA loop, or nullptr where this build has none (not GCC/Clang on x86-64).
GroupNormFn groupNormAvx2();

// ---- channels-last: x and out laid out [N, S, C] (a 4-d tensor in at::MemoryFormat::ChannelsLast) ----

/// Count, mean and M2 (Σ(x − mean)²) of one group over some of its elements, in float64.
struct GroupMoments {
  double count = 0, mean = 0, m2 = 0;

  /// Adds the moments of `n` more elements (Chan, Golub & LeVeque 1983: the pairwise update).
  void merge(double n, double otherMean, double otherM2) {
    const double total = count + n, delta = otherMean - mean;
    mean += delta * n / total;
    m2 += otherM2 + delta * delta * count * n / total;
    count = total;
  }

  /// 1/√(var + eps) of the biased variance, as torch.nn.GroupNorm (0 elements: 1/√eps).
  float rstd(double eps) const { return static_cast<float>(1.0 / std::sqrt((count > 0 ? m2 / count : 0.0) + eps)); }
};

/// The moments of every group of sample n over the rows (spatial positions) [rowBegin, rowEnd):
/// out[g] for g < groups. `work`: 3·C floats of scratch.
using GroupNormNhwcStatsFn = void (*)(const GroupNormProblem&, int64_t n, int64_t rowBegin, int64_t rowEnd,
                                      float* work, GroupMoments* out);
/// y = x·scale[c] + shift[c] (then silu) over the rows [rowBegin, rowEnd) of sample n.
using GroupNormNhwcApplyFn = void (*)(const GroupNormProblem&, int64_t n, int64_t rowBegin, int64_t rowEnd,
                                      const float* scale, const float* shift);

struct GroupNormNhwcFns {
  GroupNormNhwcStatsFn stats = nullptr;
  GroupNormNhwcApplyFn apply = nullptr;
};

/// The AVX2+FMA channels-last loops, or nullptrs where this build has none.
GroupNormNhwcFns groupNormNhwcAvx2();

struct GegluProblem {
  const void* in = nullptr;  // [rows, ≥ 2F] float32 or bfloat16: row r at r·inStride, hidden then gate
  int64_t inStride = 0;
  void* out = nullptr;       // [rows, F] contiguous, in's dtype
  int64_t features = 0;      // F
  bool bfloat16 = false;
};

/// Runs the rows [begin, end) of a GEGLU problem: out = hidden · gelu(gate).
using GegluFn = void (*)(const GegluProblem&, int64_t rowBegin, int64_t rowEnd);

/// The AVX2+FMA GEGLU loop, or nullptr where this build has none.
GegluFn gegluAvx2();

}  // namespace sd::nn::detail
