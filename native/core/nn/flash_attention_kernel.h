// The block loop of nn/flash_attention (FlashAttention, Dao et al. 2022, Algorithm 1, forward
// pass, on the CPU). Included by one .cc file per instruction set (flash_attention.cc: baseline;
// flash_attention_avx2.cc: AVX2+FMA), each inside its own namespace (no ODR clash between them).
// Not a public header: include nn/flash_attention.h.
#pragma once

#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "nn/flash_attention_problem.h"

namespace SD_FLASH_NAMESPACE {

// SD_FLASH_LANES: 8 under AVX2 (ymm), 4 in the baseline build (nn/simd_float.h).
constexpr int kLanes = SD_FLASH_LANES;
#include "nn/simd_float.h"  // Vf, Vi, splat, loadF, storeF, vmin, vmax, expV (in this namespace)
constexpr int64_t kTile = 16;              // keys per score tile, channels per weighted-sum tile
constexpr int kVecs = kTile / kLanes;      // vectors per tile
static_assert(kTile % kLanes == 0 && 8 % kLanes == 0, "tiles and the 8-channel padding hold whole vectors");

inline float reduceMax(const float* x, int64_t len) {  // len a multiple of kLanes
  Vf m = loadF(x);
  for (int64_t j = kLanes; j < len; j += kLanes) m = vmax(m, loadF(x + j));
  float best = m[0];
  for (int i = 1; i < kLanes; ++i) best = std::max(best, m[i]);
  return best;
}

// s[r][0..16) = Σ_i q[r][i] · kt[i][0..16) for R rows: scores of R queries against 16 keys.
template <int R>
inline void scoreTile(const float* q, int64_t d, const float* kt, int64_t ldk, float* s, int64_t lds) {
  Vf acc[R][kVecs];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kVecs; ++c) acc[r][c] = splat(0.0f);
  for (int64_t i = 0; i < d; ++i) {
    Vf kv[kVecs];
    for (int c = 0; c < kVecs; ++c) kv[c] = loadF(kt + i * ldk + c * kLanes);
    for (int r = 0; r < R; ++r) {
      const Vf qv = splat(q[r * d + i]);
      for (int c = 0; c < kVecs; ++c) acc[r][c] += qv * kv[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kVecs; ++c) storeF(s + r * lds + c * kLanes, acc[r][c]);
}

// acc[r][0..C·lanes) += Σ_j p[r][j] · v[j][0..C·lanes) for R rows over `keys` keys.
template <int R, int C>
inline void valueTile(const float* p, int64_t ldp, const float* v, int64_t ldv, int64_t keys, float* acc,
                      int64_t lda) {
  Vf a[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) a[r][c] = loadF(acc + r * lda + c * kLanes);
  for (int64_t j = 0; j < keys; ++j) {
    Vf vv[C];
    for (int c = 0; c < C; ++c) vv[c] = loadF(v + j * ldv + c * kLanes);
    for (int r = 0; r < R; ++r) {
      const Vf pr = splat(p[r * ldp + j]);
      for (int c = 0; c < C; ++c) a[r][c] += pr * vv[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) storeF(acc + r * lda + c * kLanes, a[r][c]);
}

template <int R>
inline void scoreRows(const float* q, int64_t d, const float* kt, int64_t ldk, int64_t keys, float* s, int64_t lds) {
  for (int64_t c0 = 0; c0 < keys; c0 += kTile) scoreTile<R>(q, d, kt + c0, ldk, s + c0, lds);
}

template <int R>
inline void valueRows(const float* p, int64_t ldp, const float* v, int64_t ldv, int64_t keys, float* acc, int64_t dp) {
  int64_t c0 = 0;
  for (; c0 + kTile <= dp; c0 += kTile) valueTile<R, kVecs>(p, ldp, v + c0, ldv, keys, acc + c0, dp);
  if (c0 < dp) valueTile<R, 8 / kLanes>(p, ldp, v + c0, ldv, keys, acc + c0, dp);  // dp − c0 = 8
}

template <typename T>
inline float toFloat(T x) { return static_cast<float>(x); }

// Tasks [begin, end) of the problem: task t = (batch·head) · queryBlocks + query block.
template <typename T>
void flashBlocksTyped(const sd::nn::detail::FlashProblem& pr, int64_t begin, int64_t end) {
  using sd::nn::detail::kFlashKeyBlock;
  using sd::nn::detail::kFlashQueryBlock;
  const int64_t d = pr.d, dp = pr.dp, mp = pr.mp;
  std::vector<float> qbuf(kFlashQueryBlock * d), sbuf(kFlashQueryBlock * kFlashKeyBlock),
      acc(kFlashQueryBlock * dp), mrow(kFlashQueryBlock), lrow(kFlashQueryBlock);
  const int64_t qBlocks = (pr.n + kFlashQueryBlock - 1) / kFlashQueryBlock;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t bh = t / qBlocks, q0 = (t % qBlocks) * kFlashQueryBlock;
    const int64_t b = bh / pr.heads, h = bh % pr.heads;
    const int64_t rows = std::min(kFlashQueryBlock, pr.n - q0);
    const T* qsrc = static_cast<const T*>(pr.q) + b * pr.qBatchStride + q0 * pr.qRowStride + h * d;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < d; ++i) qbuf[r * d + i] = toFloat(qsrc[r * pr.qRowStride + i]) * pr.scale;
    std::fill(acc.begin(), acc.begin() + rows * dp, 0.0f);
    std::fill(mrow.begin(), mrow.begin() + rows, -std::numeric_limits<float>::infinity());
    std::fill(lrow.begin(), lrow.begin() + rows, 0.0f);
    const float* kt = pr.kt + bh * d * mp;  // [D, Mp]
    const float* vf = pr.vf + bh * mp * dp;  // [Mp, Dp]
    for (int64_t k0 = 0; k0 < mp; k0 += kFlashKeyBlock) {
      const int64_t keys = std::min(kFlashKeyBlock, mp - k0);  // a multiple of kTile
      // 1. scores S = (q·scale) kᵀ for this block: [rows, keys]
      int64_t r0 = 0;
      for (; r0 + 4 <= rows; r0 += 4)
        scoreRows<4>(qbuf.data() + r0 * d, d, kt + k0, mp, keys, sbuf.data() + r0 * kFlashKeyBlock, kFlashKeyBlock);
      for (; r0 < rows; ++r0)
        scoreRows<1>(qbuf.data() + r0 * d, d, kt + k0, mp, keys, sbuf.data() + r0 * kFlashKeyBlock, kFlashKeyBlock);
      const int64_t valid = std::min(keys, pr.m - k0);  // padded keys (zero k and v) get −inf scores
      // 2. online softmax: new running max, rescale what was accumulated, P = exp(S − max)
      for (int64_t r = 0; r < rows; ++r) {
        float* s = sbuf.data() + r * kFlashKeyBlock;
        for (int64_t j = valid; j < keys; ++j) s[j] = -std::numeric_limits<float>::infinity();
        const float mNew = std::max(mrow[r], reduceMax(s, keys));
        const float corr = std::exp(mrow[r] - mNew);  // 0 on the first block (−inf − finite)
        Vf sum = splat(0.0f);
        const Vf mv = splat(mNew);
        for (int64_t j = 0; j < keys; j += kLanes) {
          const Vf e = expV(loadF(s + j) - mv);
          storeF(s + j, e);
          sum += e;
        }
        float total = 0.0f;
        for (int i = 0; i < kLanes; ++i) total += sum[i];
        lrow[r] = lrow[r] * corr + total;
        mrow[r] = mNew;
        if (corr != 1.0f) {
          float* a = acc.data() + r * dp;
          const Vf cv = splat(corr);
          for (int64_t i = 0; i < dp; i += kLanes) storeF(a + i, loadF(a + i) * cv);
        }
      }
      // 3. acc += P v
      const float* vb = vf + k0 * dp;
      r0 = 0;
      for (; r0 + 4 <= rows; r0 += 4)
        valueRows<4>(sbuf.data() + r0 * kFlashKeyBlock, kFlashKeyBlock, vb, dp, keys, acc.data() + r0 * dp, dp);
      for (; r0 < rows; ++r0)
        valueRows<1>(sbuf.data() + r0 * kFlashKeyBlock, kFlashKeyBlock, vb, dp, keys, acc.data() + r0 * dp, dp);
    }
    // 4. out = acc / l, rounded once to the output dtype
    T* dst = static_cast<T*>(pr.out) + b * pr.oBatchStride + q0 * pr.oRowStride + h * d;
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.0f / lrow[r];
      for (int64_t i = 0; i < d; ++i) dst[r * pr.oRowStride + i] = static_cast<T>(acc[r * dp + i] * inv);
    }
  }
}

inline void flashBlocks(const sd::nn::detail::FlashProblem& pr, int64_t begin, int64_t end) {
  if (pr.bfloat16) flashBlocksTyped<c10::BFloat16>(pr, begin, end);
  else flashBlocksTyped<float>(pr, begin, end);
}

}  // namespace SD_FLASH_NAMESPACE
