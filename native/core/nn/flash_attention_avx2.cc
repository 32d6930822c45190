// nn/flash_attention's block loop compiled for AVX2+FMA (FlashAttention, Dao et al. 2022): the
// vector-extension code of flash_attention_kernel.h as 256-bit FMA instructions; chosen at run
// time only on CPUs that have both.
#include "nn/flash_attention_problem.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// Everything outside the kernel's own namespaces is included before the target switch, so no
// inline function shared with other files is compiled here with AVX2 (only sd_flash_avx2's is).
#include <c10/util/BFloat16.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define SD_FLASH_LANES 8
#define SD_FLASH_NAMESPACE sd_flash_avx2
#include "nn/flash_attention_kernel.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace sd::nn::detail {
FlashBlockFn flashBlocksAvx2() { return &sd_flash_avx2::flashBlocks; }
}  // namespace sd::nn::detail

#else

namespace sd::nn::detail {
FlashBlockFn flashBlocksAvx2() { return nullptr; }
}  // namespace sd::nn::detail

#endif
