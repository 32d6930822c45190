// The one attention entry point used by the UNet transformer blocks, the VAE mid-block and CLIP.
// Follows diffusers' AttnProcessor (math), SlicedAttnProcessor (slicing) and AttnProcessor2_0
// (torch scaled_dot_product_attention).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace sd::nn {

/// How attention is computed. Shared by all attention layers of a model; set by the pipeline.
struct AttentionOptions {
  /// Sliced attention over the batch·heads dimension, as diffusers' enable_attention_slicing:
  /// 0 = off, kSliceAuto = half the heads of each layer, kSliceMax = one head at a time,
  /// n > 0 = n heads·batch per slice.
  int64_t sliceSize = 0;
  static constexpr int64_t kSliceAuto = -1;
  static constexpr int64_t kSliceMax = -2;
  /// Which kernel computes unsliced attention (ignored while slicing is on):
  /// - kAuto (default): at::scaled_dot_product_attention where libtorch has it (>= 2.0) and it is
  ///   the faster choice — always on CUDA (diffusers' AttnProcessor2_0 default), on the CPU for
  ///   float32 only (measured on Debian's libtorch 2.6, 2 cores: SDPA 4.8× faster than the math
  ///   path in float32 at 512², 1.27× slower in bfloat16; docs/BENCHMARKS.md); else, on the CPU,
  ///   the flash kernel where it measured faster than the math path (chooseAttentionKernel: float32
  ///   head dims ≤ 160 with ≥ 64×64 scores), the math path elsewhere (bfloat16 always: faster there).
  /// - kSdpa: SDPA whenever libtorch has it (enableMemoryEfficientAttention).
  /// - kMath: always the math path (setAttentionBackend('math')).
  /// - kFlash: sd-native's memory-efficient CPU kernel (nn/flash_attention.h: query blocks, online
  ///   softmax, float32 accumulation; never materialises the N×N scores) on the CPU, SDPA on CUDA
  ///   where libtorch has it, else the math path.
  enum class Backend { kAuto, kMath, kSdpa, kFlash };
  Backend backend = Backend::kAuto;
  /// Memory bound of unsliced math attention (issue 19): with sliceSize 0, a call whose score
  /// tensors (scores in the compute dtype + float32 softmax + probabilities, per batch·head
  /// N·M elements each) would exceed this many bytes is sliced with diffusers' slice sizes — half
  /// the heads ('auto'), else one head at a time ('max') — which computes the same values per
  /// batch·head (parity: test/attention-budget.test.ts). 0 = no bound. Default
  /// defaultAttentionBudgetBytes(). SDPA (libtorch >= 2.0) bounds its own memory and is not sliced.
  int64_t budgetBytes = defaultAttentionBudgetBytes();
  /// 1 GiB, or SD_NATIVE_ATTENTION_BUDGET_MB (MiB; 0 = no bound) when set in the environment.
  static int64_t defaultAttentionBudgetBytes();
};

/// The slice size (batch·heads rows per slice; 0 = unsliced) that attention() uses for a call of
/// `total` = batch·heads rows with `heads` heads, N queries and M keys, `bytesPerScore` bytes per
/// score element over its lifetime, under `options` (sliceSize, then budgetBytes).
int64_t attentionSliceSize(const AttentionOptions& options, int64_t total, int64_t heads, int64_t n, int64_t m,
                           int64_t bytesPerScore);
/// Queries per chunk (issue 19: the VAE mid-block's single head at a large size) for a slice of
/// `rows` batch·heads: `n` (no chunking) when rows·N·M·bytesPerScore fits options.budgetBytes or
/// there is no budget, else the most queries whose scores fit (at least 1). Softmax is row-wise, so
/// chunking over queries computes the same values.
int64_t attentionQueryChunk(const AttentionOptions& options, int64_t rows, int64_t n, int64_t m, int64_t bytesPerScore);
/// Which parts of attention run in float32 when the compute dtype is reduced (bfloat16/float16),
/// as diffusers' Attention flags (models/attention_processor.py, get_attention_scores):
/// - kNone: scores, softmax and probabilities in the compute dtype (UNet/SDXL default; CLIP);
/// - kSoftmax: `upcast_softmax` — scores in the compute dtype, softmax in float32, probabilities
///   cast back (the VAE mid-block attention);
/// - kAttention: `upcast_attention` — q and k cast to float32, scores and softmax in float32,
///   probabilities cast back (SD 2.1's UNet config).
/// float32 inputs compute the same in all three. The SDPA and flash kernels accumulate in float32
/// whatever this says (diffusers' AttnProcessor2_0 ignores both flags too).
enum class Upcast { kNone, kSoftmax, kAttention };

/// The kernel attention() runs for one call.
enum class AttentionKernel { kMath, kSliced, kSdpa, kFlash };

/// The kernel attention() picks for q [B, N, H·D], k/v [B, M, H·D] with `options` on `device` in
/// `dtype` (slicing first, then the backend; 'auto' picks per device, dtype and sequence length by
/// the crossovers measured in docs/BENCHMARKS.md).
AttentionKernel chooseAttentionKernel(const AttentionOptions& options, at::Device device, at::ScalarType dtype,
                                      int64_t n, int64_t m, int64_t headDim);

/// The peak bytes of the score tensors attention() holds for q [B, N, heads·D], k [B, M, heads·D] in
/// `dtype` on `device` with `options` and `upcast` (the kernel chooseAttentionKernel picks; 0 for
/// flash and SDPA, which hold no N×N scores; slicing and query chunking as attention() does them).
/// What the peak-memory estimate (pipelines/memory_guard.h) uses.
double attentionScoreBytes(const AttentionOptions& options, at::Device device, at::ScalarType dtype, int64_t b,
                           int64_t heads, int64_t n, int64_t m, int64_t headDim, Upcast upcast);

/// True when this build has at::scaled_dot_product_attention.
bool sdpaAvailable();

/// Whether attention with `options` on `device` in `dtype` runs SDPA (see Backend) at the UNet's
/// largest self-attention (4096 tokens of 40 channels), slicing off.
bool usesSdpa(const AttentionOptions& options, at::Device device, at::ScalarType dtype);

/// Multi-head attention on projected inputs.
/// q [B, N, H·D], k and v [B, M, H·D] (any float dtype) → [B, N, H·D] in q's dtype.
/// Scale 1/sqrt(D). `mask` is additive, broadcastable to [B, H, N, M] (e.g. CLIP's causal mask).
/// `upcast`: which parts run in float32 in a reduced compute dtype (see Upcast).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                     const AttentionOptions& options, const std::optional<at::Tensor>& mask = std::nullopt,
                     Upcast upcast = Upcast::kNone);

}  // namespace sd::nn
