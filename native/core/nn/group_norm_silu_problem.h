// The shared description of one nn/group_norm_silu call, handed from the dispatcher
// (group_norm_silu.cc) to the per-instruction-set loops (group_norm_silu_kernel.h).
// Not a public header: include nn/group_norm_silu.h.
#pragma once

#include <cstdint>

namespace sd::nn::detail {

struct GroupNormProblem {
  const void* x = nullptr;      // [N, C, S] contiguous, float32 or bfloat16 (S: the spatial size H·W)
  void* out = nullptr;          // [N, C, S] contiguous, x's dtype
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
