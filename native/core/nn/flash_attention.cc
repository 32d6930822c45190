// A memory-efficient CPU attention: FlashAttention's forward recurrence (Dao et al. 2022,
// Algorithm 1) over query and key blocks, float32 accumulation; the dispatcher and the baseline
// (no AVX2) build of the block loop. Exactness against diffusers' AttnProcessor math is checked
// by test/attention.test.ts.
#include "nn/flash_attention.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "nn/flash_attention_problem.h"
#include "runtime/cpu_features.h"
#include "util/error.h"

#define SD_FLASH_LANES 4
#define SD_FLASH_NAMESPACE sd_flash_baseline
#include "nn/flash_attention_kernel.h"

namespace sd::nn {

namespace {

detail::FlashBlockFn pickBlocks() {
  if (runtime::cpuHasAvx2Fma())
    if (detail::FlashBlockFn f = detail::flashBlocksAvx2()) return f;
  return &sd_flash_baseline::flashBlocks;
}

detail::FlashBlockFn blocks() {
  static const detail::FlashBlockFn f = pickBlocks();
  return f;
}

int64_t roundUp(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

}  // namespace

bool flashAttentionSupports(at::ScalarType dtype) { return dtype == at::kFloat || dtype == at::kBFloat16; }

const char* flashAttentionIsa() { return blocks() == &sd_flash_baseline::flashBlocks ? "baseline" : "avx2"; }

at::Tensor flashAttentionCpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                             double scale) {
  RECORD_FUNCTION("sd::flash_attention", std::vector<c10::IValue>({q, k, v}));
  if (!q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu())
    fail(codes::kInvalidArgument, "flash attention: tensors must be on the CPU");
  if (!flashAttentionSupports(q.scalar_type()) || k.scalar_type() != q.scalar_type() ||
      v.scalar_type() != q.scalar_type())
    fail(codes::kInvalidArgument, "flash attention: q, k, v must all be float32 or all bfloat16");
  if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3 || heads <= 0 || q.size(2) % heads != 0 ||
      k.size(0) != q.size(0) || v.size(0) != q.size(0) || k.size(1) != v.size(1) || k.size(2) != q.size(2) ||
      v.size(2) != q.size(2))
    fail(codes::kInvalidArgument, "flash attention: expected q [B, N, H·D], k and v [B, M, H·D]");
  const int64_t b = q.size(0), n = q.size(1), m = k.size(1), inner = q.size(2), d = inner / heads;
  at::Tensor out = at::empty({b, n, inner}, q.options());  // [B, N, H·D]
  if (b == 0 || n == 0) return out;
  if (m == 0) return out.zero_();
  // Rows read in place: only the last dimension must be contiguous.
  const at::Tensor qc = q.stride(2) == 1 ? q : q.contiguous();
  const int64_t mp = roundUp(m, sd_flash_baseline::kTile), dp = roundUp(d, 8);
  // kᵀ and v per head in float32, zero-padded (O(B·H·M·D), the only copies made)
  at::Tensor kt = at::zeros({b, heads, d, mp}, q.options().dtype(at::kFloat));  // [B, H, D, Mp]
  kt.narrow(3, 0, m).copy_(k.reshape({b, m, heads, d}).permute({0, 2, 3, 1}));
  at::Tensor vf = at::zeros({b, heads, mp, dp}, q.options().dtype(at::kFloat));  // [B, H, Mp, Dp]
  vf.narrow(2, 0, m).narrow(3, 0, d).copy_(v.reshape({b, m, heads, d}).permute({0, 2, 1, 3}));

  detail::FlashProblem pr;
  pr.q = qc.data_ptr();
  pr.qBatchStride = qc.stride(0);
  pr.qRowStride = qc.stride(1);
  pr.out = out.data_ptr();
  pr.oBatchStride = out.stride(0);
  pr.oRowStride = out.stride(1);
  pr.kt = kt.data_ptr<float>();
  pr.vf = vf.data_ptr<float>();
  pr.heads = heads;
  pr.n = n;
  pr.m = m;
  pr.mp = mp;
  pr.d = d;
  pr.dp = dp;
  pr.scale = static_cast<float>(scale);
  pr.bfloat16 = q.scalar_type() == at::kBFloat16;
  const int64_t tasks = b * heads * ((n + detail::kFlashQueryBlock - 1) / detail::kFlashQueryBlock);
  const detail::FlashBlockFn run = blocks();
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) { run(pr, begin, end); });
  return out;
}

}  // namespace sd::nn
