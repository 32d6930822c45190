// A memory-efficient attention kernel for the CPU: the flash-attention recurrence (Dao et al. 2022,
// "FlashAttention", Algorithm 1; Rabe & Staats 2021, "Self-attention does not need O(n²) memory")
// over blocks of queries and keys, float32 accumulation, at::parallel_for over batch·heads·query
// blocks, register-tiled microkernels on GCC/Clang vector types (AVX2+FMA where the CPU has it,
// chosen at run time). Never materialises the N×N scores; used by
// nn::attention (AttentionOptions::Backend::kFlash, and 'auto' on the CPU where it is the faster
// kernel: see chooseAttentionKernel and docs/BENCHMARKS.md).
#pragma once

#include <ATen/ATen.h>

namespace sd::nn {

/// softmax(q kᵀ · scale) v per head, on the CPU.
/// q [B, N, H·D], k and v [B, M, H·D] (float32 or bfloat16, all three the same dtype; the last
/// dimension contiguous, any row stride: the outputs of a Linear are read in place) → a new
/// [B, N, H·D] tensor in q's dtype. Scores, softmax and the weighted sum are computed in float32
/// whatever the dtype (rounded once, at the output). Memory: O(B·H·M·D) for float32 copies of k
/// and v plus O(threads · block²), never O(N·M).
/// Errors: E_INVALID_ARGUMENT for another device, dtype, rank or mismatched shapes.
at::Tensor flashAttentionCpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                             double scale);

/// True when flashAttentionCpu computes `dtype` (float32, bfloat16).
bool flashAttentionSupports(at::ScalarType dtype);

/// The instruction set the kernel dispatched to on this CPU: "avx2" or "baseline".
const char* flashAttentionIsa();

}  // namespace sd::nn
