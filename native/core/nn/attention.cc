// diffusers AttnProcessor / SlicedAttnProcessor / AttnProcessor2_0 (models/attention_processor.py).
#include "nn/attention.h"

#include <cmath>
#include <cstdlib>

#include "nn/flash_attention.h"
#include "runtime/cancellation.h"
#include "util/error.h"
#include "util/torch_compat.h"

namespace sd::nn {

bool sdpaAvailable() {
#ifdef SD_HAVE_SDPA
  return true;
#else
  return false;
#endif
}

AttentionKernel chooseAttentionKernel(const AttentionOptions& options, at::Device device, at::ScalarType dtype,
                                      int64_t n, int64_t m, int64_t headDim) {
  if (options.sliceSize != 0) return AttentionKernel::kSliced;
  switch (options.backend) {
    case AttentionOptions::Backend::kSdpa:
      return sdpaAvailable() ? AttentionKernel::kSdpa : AttentionKernel::kMath;
    case AttentionOptions::Backend::kMath:
      return AttentionKernel::kMath;
    case AttentionOptions::Backend::kFlash:
      if (device.is_cpu()) return AttentionKernel::kFlash;
      return sdpaAvailable() ? AttentionKernel::kSdpa : AttentionKernel::kMath;
    case AttentionOptions::Backend::kAuto:
      if (!device.is_cpu()) return sdpaAvailable() ? AttentionKernel::kSdpa : AttentionKernel::kMath;
      if (sdpaAvailable() && dtype == at::kFloat) return AttentionKernel::kSdpa;
      // Measured on libtorch 1.13, 2 cores (docs/BENCHMARKS.md, native/tools/bench_attention and
      // profile_step):
      // float32: flash 1.5–2.5× faster than math for head dims ≤ 160 (every UNet attention), slower
      //   at the VAE's single 512-channel head; equal below ~64×64 scores. Whole SD 1.5 UNet step on
      //   a quiet machine: 1.29× (512²) and 1.44× (256²) faster than with math.
      // bfloat16: math (oneDNN bfloat16 GEMMs, softmax in bfloat16) is faster at every UNet
      //   attention: the whole step 1.29× (512²) and 1.13× (256²) faster than with flash at SD 1.5's
      //   first level, quiet machine (an earlier crossover, taken under load, had picked flash there).
      //   The attention budget still slices the math path when its scores would pass it.
      if (dtype == at::kFloat && headDim <= 160 && n * m >= 64 * 64) return AttentionKernel::kFlash;
      return AttentionKernel::kMath;
  }
  return AttentionKernel::kMath;
}

bool usesSdpa(const AttentionOptions& options, at::Device device, at::ScalarType dtype) {
  return chooseAttentionKernel(options, device, dtype, 4096, 4096, 40) == AttentionKernel::kSdpa;
}

int64_t AttentionOptions::defaultAttentionBudgetBytes() {
  static const int64_t bytes = [] {
    const char* env = std::getenv("SD_NATIVE_ATTENTION_BUDGET_MB");
    if (!env || !*env) return int64_t{1} << 30;
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    if (*end != '\0' || mb < 0 || mb > (int64_t{1} << 40)) return int64_t{1} << 30;  // unreadable: the default
    return static_cast<int64_t>(mb) << 20;
  }();
  return bytes;
}

int64_t attentionSliceSize(const AttentionOptions& options, int64_t total, int64_t heads, int64_t n, int64_t m,
                           int64_t bytesPerScore) {
  int64_t slice = options.sliceSize;
  if (slice == AttentionOptions::kSliceAuto) return std::max<int64_t>(1, heads / 2);
  if (slice == AttentionOptions::kSliceMax) return 1;
  if (slice > 0 || options.budgetBytes <= 0) return slice;
  // unsliced unless one call's scores exceed the budget; then diffusers' 'auto', else 'max'
  const double perRow = static_cast<double>(n) * static_cast<double>(m) * static_cast<double>(bytesPerScore);
  const double budget = static_cast<double>(options.budgetBytes);
  if (static_cast<double>(total) * perRow <= budget) return 0;
  slice = std::max<int64_t>(1, heads / 2);
  if (static_cast<double>(slice) * perRow <= budget) return slice;
  return 1;
}

int64_t attentionQueryChunk(const AttentionOptions& options, int64_t rows, int64_t n, int64_t m, int64_t bytesPerScore) {
  if (options.budgetBytes <= 0) return n;
  const double perQuery = static_cast<double>(rows) * static_cast<double>(m) * static_cast<double>(bytesPerScore);
  const double budget = static_cast<double>(options.budgetBytes);
  if (perQuery * static_cast<double>(n) <= budget) return n;
  return std::max<int64_t>(1, std::min<int64_t>(n, static_cast<int64_t>(budget / perQuery)));
}

namespace {

// Bytes per score element over a math-path call: the scores, the softmax (float32 unless
// Upcast::kNone), the probabilities (in v's dtype = the compute dtype).
int64_t scoreBytesPerElement(at::ScalarType dtype, Upcast upcast) {
  const at::ScalarType scoreType = upcast == Upcast::kAttention ? at::kFloat : dtype;
  const size_t softmaxBytes = upcast == Upcast::kNone ? c10::elementSize(dtype) : 4;
  return static_cast<int64_t>(c10::elementSize(scoreType) + softmaxBytes + c10::elementSize(dtype));
}

}  // namespace

double attentionScoreBytes(const AttentionOptions& options, at::Device device, at::ScalarType dtype, int64_t b,
                           int64_t heads, int64_t n, int64_t m, int64_t headDim, Upcast upcast) {
  const AttentionKernel kernel = chooseAttentionKernel(options, device, dtype, n, m, headDim);
  if (kernel == AttentionKernel::kSdpa) return 0;
  if (kernel == AttentionKernel::kFlash && flashAttentionSupports(dtype)) return 0;
  const int64_t total = b * heads;
  const int64_t bps = scoreBytesPerElement(dtype, upcast);
  const int64_t slice = attentionSliceSize(options, total, heads, n, m, bps);
  const int64_t rows = slice <= 0 || slice >= total ? total : slice;
  const int64_t chunk = attentionQueryChunk(options, rows, n, m, bps);
  return static_cast<double>(rows) * static_cast<double>(chunk) * static_cast<double>(m) * static_cast<double>(bps);
}

namespace {

// [B, N, H·D] → [B·H, N, D] (diffusers head_to_batch_dim).
at::Tensor headToBatch(const at::Tensor& x, int64_t heads) {
  const int64_t b = x.size(0), n = x.size(1), d = x.size(2) / heads;
  return x.reshape({b, n, heads, d}).permute({0, 2, 1, 3}).reshape({b * heads, n, d});
}

// [B·H, N, D] → [B, N, H·D] (diffusers batch_to_head_dim).
at::Tensor batchToHead(const at::Tensor& x, int64_t heads) {
  const int64_t bh = x.size(0), n = x.size(1), d = x.size(2);
  return x.reshape({bh / heads, heads, n, d}).permute({0, 2, 1, 3}).reshape({bh / heads, n, heads * d});
}

// Scores, softmax and weighted sum for q [S, N, D], k/v [S, M, D], mask broadcastable to [S, N, M].
// As diffusers' Attention.get_attention_scores + bmm: baddbmm with beta 0 (no mask) or 1 (mask),
// alpha = scale; the upcasts `upcast` asks for (attention.h, Upcast); probabilities in v's dtype.
at::Tensor mathAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                         const at::Tensor& mask, Upcast upcast) {
  const bool upcastQk = upcast == Upcast::kAttention && q.scalar_type() != at::kFloat;
  at::Tensor qq = upcastQk ? q.to(at::kFloat) : q;
  at::Tensor kk = upcastQk ? k.to(at::kFloat) : k;
  at::Tensor scores;
  if (mask.defined()) {
    scores = at::baddbmm(mask.to(qq.scalar_type()).expand({q.size(0), q.size(1), k.size(1)}), qq, kk.transpose(1, 2),
                         /*beta=*/1, /*alpha=*/scale);
  } else {
    scores = at::baddbmm(at::empty({q.size(0), q.size(1), k.size(1)}, qq.options()), qq, kk.transpose(1, 2),
                         /*beta=*/0, /*alpha=*/scale);
  }
  // upcast_softmax (and upcast_attention, whose scores are already float32): softmax in float32;
  // otherwise in the compute dtype, as diffusers (attention_scores.softmax(dim=-1)).
  at::Tensor probs = upcast == Upcast::kNone ? at::softmax(scores, -1) : at::softmax(scores, -1, at::kFloat);
  if (probs.scalar_type() != v.scalar_type()) probs = probs.to(v.scalar_type());
  return at::bmm(probs, v);
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                     const AttentionOptions& options, const std::optional<at::Tensor>& mask, Upcast upcast) {
  const int64_t b = q.size(0), n = q.size(1), inner = q.size(2), m = k.size(1);
  if (inner % heads != 0)
    fail(codes::kBadConfig, "attention: inner dim " + std::to_string(inner) + " not divisible by " +
                                std::to_string(heads) + " heads");
  const int64_t d = inner / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  const AttentionKernel kernel = chooseAttentionKernel(options, q.device(), q.scalar_type(), n, m, d);
#ifdef SD_HAVE_SDPA
  if (kernel == AttentionKernel::kSdpa) {
    auto split = [&](const at::Tensor& x, int64_t len) {
      return x.reshape({b, len, heads, d}).transpose(1, 2);  // [B, H, len, D]
    };
    std::optional<at::Tensor> m4;
    if (mask) m4 = mask->to(q.scalar_type());
    at::Tensor out = at::scaled_dot_product_attention(split(q, n), split(k, m), split(v, m), m4);
    return out.transpose(1, 2).reshape({b, n, inner});
  }
#endif
  if (kernel == AttentionKernel::kFlash && !mask && flashAttentionSupports(q.scalar_type()))
    return flashAttentionCpu(q, k, v, heads, scale);  // [B, N, H·D]

  at::Tensor qb = headToBatch(q, heads);  // [B·H, N, D]
  at::Tensor kb = headToBatch(k, heads);  // [B·H, M, D]
  at::Tensor vb = headToBatch(v, heads);  // [B·H, M, D]
  at::Tensor maskB;                        // broadcastable to [B·H, N, M]
  if (mask) {
    at::Tensor mk = *mask;
    while (mk.dim() < 4) mk = mk.unsqueeze(0);
    maskB = mk.expand({b, heads, n, m}).reshape({b * heads, n, m});
  }

  const int64_t total = b * heads;
  // per score element over a call: the scores, the softmax (float32 unless Upcast::kNone), the probabilities
  const int64_t bytesPerScore = scoreBytesPerElement(q.scalar_type(), upcast);
  // user slicing (AttentionKernel::kSliced) or, on the math path, the memory budget
  int64_t slice = attentionSliceSize(options, total, heads, n, m, bytesPerScore);
  if (slice <= 0 || slice >= total) slice = total;
  // past the budget even one slice at a time (the VAE's single head at a large size): query chunks
  const int64_t chunk = attentionQueryChunk(options, slice, n, m, bytesPerScore);
  if (slice == total && chunk >= n) {
    return batchToHead(mathAttention(qb, kb, vb, scale, maskB, upcast), heads);
  }
  at::Tensor out = at::empty({total, n, d}, q.options());
  for (int64_t s = 0; s < total; s += slice) {
    const int64_t e = std::min(total, s + slice);
    for (int64_t q0 = 0; q0 < n; q0 += chunk) {
      runtime::throwIfAborted("a sliced attention");
      const int64_t q1 = std::min(n, q0 + chunk);
      at::Tensor ms = maskB.defined() ? maskB.slice(0, s, e).slice(1, q0, q1) : at::Tensor();
      out.slice(0, s, e).slice(1, q0, q1).copy_(
          mathAttention(qb.slice(0, s, e).slice(1, q0, q1), kb.slice(0, s, e), vb.slice(0, s, e), scale, ms, upcast));
    }
  }
  return batchToHead(out, heads);
}

}  // namespace sd::nn
