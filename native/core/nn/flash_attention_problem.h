// The shared description of one nn/flash_attention call, handed from the dispatcher
// (flash_attention.cc) to the per-instruction-set block loops (flash_attention_kernel.h).
// Not a public header: include nn/flash_attention.h.
#pragma once

#include <cstdint>

namespace sd::nn::detail {

constexpr int64_t kFlashQueryBlock = 64;  // queries per task (rows of the running output)
constexpr int64_t kFlashKeyBlock = 64;    // keys per step of the online softmax

struct FlashProblem {
  const void* q = nullptr;  // [B, N, H·D] float or bfloat16; element (b, n, h, i) at
  int64_t qBatchStride = 0, qRowStride = 0;  //   b·qBatchStride + n·qRowStride + h·D + i
  void* out = nullptr;      // [B, N, H·D] in q's dtype, same indexing with the o strides
  int64_t oBatchStride = 0, oRowStride = 0;
  const float* kt = nullptr;  // [B·H, D, Mp] float32: kᵀ per head, keys zero-padded to Mp
  const float* vf = nullptr;  // [B·H, Mp, Dp] float32: v per head, zero-padded to Mp rows, Dp channels
  int64_t heads = 1, n = 0, m = 0, mp = 0, d = 0, dp = 0;
  float scale = 1.0f;
  bool bfloat16 = false;  // q and out are bfloat16 (else float32)
};

using FlashBlockFn = void (*)(const FlashProblem&, int64_t taskBegin, int64_t taskEnd);

/// The AVX2+FMA block loop, or nullptr where this build has none (not GCC/Clang on x86-64).
FlashBlockFn flashBlocksAvx2();

}  // namespace sd::nn::detail
