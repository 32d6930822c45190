// nn/group_norm_silu's loops (GroupNorm + SiLU, GEGLU) compiled for AVX2+FMA (torch.nn.GroupNorm + SiLU): the vector-extension
// code of group_norm_silu_kernel.h as 256-bit FMA instructions; chosen at run time only on CPUs
// that have both.
#include "nn/group_norm_silu_problem.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// Everything outside the kernel's own namespace is included before the target switch, so no
// inline function shared with other files is compiled here with AVX2 (only sd_gn_avx2's is).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define SD_GN_LANES 8
#define SD_GN_NAMESPACE sd_gn_avx2
#include "nn/group_norm_silu_kernel.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace sd::nn::detail {
GroupNormFn groupNormAvx2() { return &sd_gn_avx2::groupNormGroups; }
GroupNormNhwcFns groupNormNhwcAvx2() { return {&sd_gn_avx2::groupNormNhwcStats, &sd_gn_avx2::groupNormNhwcApply}; }
GegluFn gegluAvx2() { return &sd_gn_avx2::gegluRows; }
}  // namespace sd::nn::detail

#else

namespace sd::nn::detail {
GroupNormFn groupNormAvx2() { return nullptr; }
GroupNormNhwcFns groupNormNhwcAvx2() { return {}; }
GegluFn gegluAvx2() { return nullptr; }
}  // namespace sd::nn::detail

#endif
