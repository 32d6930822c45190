// The loops of nn/group_norm_silu (torch.nn.GroupNorm followed by SiLU, as ATen's CPU
// group_norm kernel computes the statistics: biased variance, rstd = 1/√(var + eps), then
// y = x·(rstd·γ) + (β − mean·rstd·γ); and GEGLU, hidden · gelu(gate)). Included by one .cc file per instruction set
// (group_norm_silu.cc: baseline; group_norm_silu_avx2.cc: AVX2+FMA), each inside its own
// namespace (no ODR clash between them). Not a public header: include nn/group_norm_silu.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "nn/group_norm_silu_problem.h"

namespace SD_GN_NAMESPACE {

// SD_GN_LANES: 8 under AVX2 (ymm), 4 in the baseline build (nn/simd_float.h).
constexpr int kLanes = SD_GN_LANES;
#include "nn/simd_float.h"  // Vf, Vi, splat, loadF, storeF, vmin, vmax, expV (in this namespace)
typedef uint32_t Vu __attribute__((vector_size(kLanes * sizeof(uint32_t))));
typedef uint16_t Vh __attribute__((vector_size(kLanes * sizeof(uint16_t))));
constexpr int64_t kChunk = 2048;  // elements per statistics chunk (8 KiB of float32: stays in L1)

// bfloat16 is the upper half of a float32: widening is a 16-bit shift.
inline Vf loadB(const uint16_t* p) {
  Vh h;
  std::memcpy(&h, p, sizeof h);
  const Vu u = __builtin_convertvector(h, Vu) << 16;
  Vf v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
// float32 → bfloat16, round to nearest even, NaN kept a (quiet) NaN: c10::BFloat16's rounding.
inline void storeB(uint16_t* p, Vf v) {
  Vu u;
  std::memcpy(&u, &v, sizeof u);
  const Vu rounded = (u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16;
  const Vi isNan = v != v;
  const Vu r = isNan ? (Vu{} + 0x7FC0u) : rounded;
  const Vh h = __builtin_convertvector(r, Vh);
  std::memcpy(p, &h, sizeof h);
}

inline float hsum(Vf v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// silu(y) = y / (1 + e^−y), ATen's formula. A NaN stays NaN (the numerator), +inf stays +inf.
inline Vf siluV(Vf y) { return y / (splat(1.0f) + expV(-y)); }

// Mean and M2 (Σ(x − mean)²) of one chunk held in float32 (len ≤ kChunk): the corrected two-pass
// algorithm (Chan, Golub & LeVeque 1983), the second pass reads the chunk from L1.
inline void chunkMoments(const float* x, int64_t len, double& mean, double& m2) {
  // two independent accumulators per sum: the adds of one vector do not wait for the previous one
  Vf s0 = splat(0.0f), s1v = splat(0.0f);
  int64_t i = 0;
  for (; i + 2 * kLanes <= len; i += 2 * kLanes) {
    s0 += loadF(x + i);
    s1v += loadF(x + i + kLanes);
  }
  for (; i + kLanes <= len; i += kLanes) s0 += loadF(x + i);
  float sum = hsum(s0 + s1v);
  for (; i < len; ++i) sum += x[i];
  const float m = sum / static_cast<float>(len);
  Vf a1 = splat(0.0f), a2 = splat(0.0f), b1 = splat(0.0f), b2 = splat(0.0f);
  const Vf mv = splat(m);
  for (i = 0; i + 2 * kLanes <= len; i += 2 * kLanes) {
    const Vf d = loadF(x + i) - mv, e = loadF(x + i + kLanes) - mv;
    a1 += d;
    a2 += d * d;
    b1 += e;
    b2 += e * e;
  }
  for (; i + kLanes <= len; i += kLanes) {
    const Vf d = loadF(x + i) - mv;
    a1 += d;
    a2 += d * d;
  }
  double s1 = hsum(a1 + b1), s2 = hsum(a2 + b2);
  for (; i < len; ++i) {
    const double d = static_cast<double>(x[i]) - m;
    s1 += d;
    s2 += d * d;
  }
  mean = m + s1 / static_cast<double>(len);
  m2 = std::max(0.0, s2 - s1 * s1 / static_cast<double>(len));
}

// Element access for float32 or bfloat16 data (kBf16), the arithmetic always in float32.
template <bool kBf16>
inline Vf loadAt(const void* base, int64_t i) {
  if constexpr (kBf16) return loadB(static_cast<const uint16_t*>(base) + i);
  else return loadF(static_cast<const float*>(base) + i);
}
template <bool kBf16>
inline void storeAt(void* base, int64_t i, Vf v) {
  if constexpr (kBf16) storeB(static_cast<uint16_t*>(base) + i, v);
  else storeF(static_cast<float*>(base) + i, v);
}
template <bool kBf16>
inline float scalarAt(const void* base, int64_t i) {
  if constexpr (kBf16) {
    const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  } else {
    return static_cast<const float*>(base)[i];
  }
}
// The last `rest` < kLanes elements from i, through one zero-padded vector, so that a tail gets
// the same arithmetic as the body.
template <bool kBf16>
inline Vf loadPartial(const void* base, int64_t i, int64_t rest) {
  using T = std::conditional_t<kBf16, uint16_t, float>;
  T in[kLanes] = {};
  std::memcpy(in, static_cast<const T*>(base) + i, rest * sizeof(T));
  return loadAt<kBf16>(in, 0);
}
template <bool kBf16>
inline void storePartial(void* base, int64_t i, int64_t rest, Vf v) {
  using T = std::conditional_t<kBf16, uint16_t, float>;
  T out[kLanes];
  storeAt<kBf16>(out, 0, v);
  std::memcpy(static_cast<T*>(base) + i, out, rest * sizeof(T));
}

// y = x·scale + shift (then silu) over len elements of one channel.
template <bool kBf16, bool kSilu>
inline void applyChannel(const void* src, void* dst, int64_t len, float scale, float shift) {
  const Vf sv = splat(scale), bv = splat(shift);
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    Vf y = loadAt<kBf16>(src, i) * sv + bv;
    if constexpr (kSilu) y = siluV(y);
    storeAt<kBf16>(dst, i, y);
  }
  if (i == len) return;
  Vf y = loadPartial<kBf16>(src, i, len - i) * sv + bv;
  if constexpr (kSilu) y = siluV(y);
  storePartial<kBf16>(dst, i, len - i, y);
}

template <bool kBf16, bool kSilu>
void groupsTyped(const sd::nn::detail::GroupNormProblem& pr, int64_t begin, int64_t end) {
  const int64_t perGroup = pr.channels / pr.groups, len = perGroup * pr.spatial;
  const size_t elem = kBf16 ? sizeof(uint16_t) : sizeof(float);
  alignas(64) float buf[kChunk];
  for (int64_t t = begin; t < end; ++t) {
    const int64_t g = t % pr.groups;
    const char* x = static_cast<const char*>(pr.x) + t * len * elem;  // group t's D·S elements
    char* out = static_cast<char*>(pr.out) + t * len * elem;
    // 1. mean and biased variance of the group, chunk by chunk, merged in float64 (Chan et al.)
    sd::nn::detail::GroupMoments moments;
    for (int64_t c0 = 0; c0 < len; c0 += kChunk) {
      const int64_t n = std::min(kChunk, len - c0);
      const float* chunk;
      if constexpr (kBf16) {
        const uint16_t* s = reinterpret_cast<const uint16_t*>(x) + c0;
        int64_t i = 0;
        for (; i + kLanes <= n; i += kLanes) storeF(buf + i, loadB(s + i));
        for (; i < n; ++i) buf[i] = scalarAt<true>(s, i);
        chunk = buf;
      } else {
        chunk = reinterpret_cast<const float*>(x) + c0;
      }
      double cm, cm2;
      chunkMoments(chunk, n, cm, cm2);
      moments.merge(static_cast<double>(n), cm, cm2);
    }
    const float rstd = moments.rstd(pr.eps);
    const float meanF = static_cast<float>(moments.mean);
    // 2. y = silu(x·(rstd·γ) + (β − mean·rstd·γ)), channel by channel
    for (int64_t c = 0; c < perGroup; ++c) {
      const int64_t ch = g * perGroup + c;
      const float scale = rstd * pr.gamma[ch];
      const float shift = pr.beta[ch] - meanF * scale;
      applyChannel<kBf16, kSilu>(x + c * pr.spatial * elem, out + c * pr.spatial * elem, pr.spatial, scale, shift);
    }
  }
}

inline void groupNormGroups(const sd::nn::detail::GroupNormProblem& pr, int64_t begin, int64_t end) {
  if (pr.bfloat16) {
    if (pr.silu) groupsTyped<true, true>(pr, begin, end);
    else groupsTyped<true, false>(pr, begin, end);
  } else {
    if (pr.silu) groupsTyped<false, true>(pr, begin, end);
    else groupsTyped<false, false>(pr, begin, end);
  }
}

// ---- channels-last ([N, S, C]): the same statistics and output, vectorised across channels -------

// Per channel, over rows [r0, r1) of sample n: sum[c] = Σ x, then with the group means m[c],
// d1[c] = Σ (x − m[c]) and d2[c] = Σ (x − m[c])² — the corrected two-pass algorithm of
// chunkMoments, channel by channel (the rows are few: the second pass reads them from cache).
template <bool kBf16>
void nhwcStatsTyped(const sd::nn::detail::GroupNormProblem& pr, int64_t n, int64_t r0, int64_t r1, float* work,
                    sd::nn::detail::GroupMoments* out) {
  const int64_t C = pr.channels, D = C / pr.groups, rows = r1 - r0;
  const size_t rowBytes = C * (kBf16 ? sizeof(uint16_t) : sizeof(float));
  const char* base = static_cast<const char*>(pr.x) + (n * pr.spatial + r0) * rowBytes;
  float* sum = work;
  float* d1 = work + C;
  float* d2 = work + 2 * C;
  std::fill(work, work + 3 * C, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const void* row = base + r * rowBytes;
    int64_t c = 0;
    for (; c + kLanes <= C; c += kLanes) storeF(sum + c, loadF(sum + c) + loadAt<kBf16>(row, c));
    for (; c < C; ++c) sum[c] += scalarAt<kBf16>(row, c);
  }
  const double count = static_cast<double>(rows * D);
  for (int64_t g = 0; g < pr.groups; ++g) {  // the group means, spread over their channels
    double s = 0.0;
    for (int64_t c = g * D; c < (g + 1) * D; ++c) s += sum[c];
    const float m = static_cast<float>(s / count);
    for (int64_t c = g * D; c < (g + 1) * D; ++c) sum[c] = m;  // sum[] now holds each channel's group mean
  }
  for (int64_t r = 0; r < rows; ++r) {
    const void* row = base + r * rowBytes;
    int64_t c = 0;
    for (; c + kLanes <= C; c += kLanes) {
      const Vf d = loadAt<kBf16>(row, c) - loadF(sum + c);
      storeF(d1 + c, loadF(d1 + c) + d);
      storeF(d2 + c, loadF(d2 + c) + d * d);
    }
    for (; c < C; ++c) {
      const float d = scalarAt<kBf16>(row, c) - sum[c];
      d1[c] += d;
      d2[c] += d * d;
    }
  }
  for (int64_t g = 0; g < pr.groups; ++g) {
    double s1 = 0.0, s2 = 0.0;
    for (int64_t c = g * D; c < (g + 1) * D; ++c) {
      s1 += d1[c];
      s2 += d2[c];
    }
    out[g].count = count;
    out[g].mean = static_cast<double>(sum[g * D]) + s1 / count;
    out[g].m2 = std::max(0.0, s2 - s1 * s1 / count);
  }
}

template <bool kBf16, bool kSilu>
void nhwcApplyTyped(const sd::nn::detail::GroupNormProblem& pr, int64_t n, int64_t r0, int64_t r1, const float* scale,
                    const float* shift) {
  const int64_t C = pr.channels;
  const size_t elem = kBf16 ? sizeof(uint16_t) : sizeof(float);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t offset = (n * pr.spatial + r) * C;
    const void* x = static_cast<const char*>(pr.x) + offset * elem;
    void* y = static_cast<char*>(pr.out) + offset * elem;
    int64_t c = 0;
    for (; c + kLanes <= C; c += kLanes) {
      Vf v = loadAt<kBf16>(x, c) * loadF(scale + c) + loadF(shift + c);
      if constexpr (kSilu) v = siluV(v);
      storeAt<kBf16>(y, c, v);
    }
    if (c == C) continue;
    const int64_t rest = C - c;
    Vf v = loadPartial<kBf16>(x, c, rest) * loadPartial<false>(scale, c, rest) + loadPartial<false>(shift, c, rest);
    if constexpr (kSilu) v = siluV(v);
    storePartial<kBf16>(y, c, rest, v);
  }
}

inline void groupNormNhwcStats(const sd::nn::detail::GroupNormProblem& pr, int64_t n, int64_t r0, int64_t r1,
                               float* work, sd::nn::detail::GroupMoments* out) {
  if (pr.bfloat16) nhwcStatsTyped<true>(pr, n, r0, r1, work, out);
  else nhwcStatsTyped<false>(pr, n, r0, r1, work, out);
}

inline void groupNormNhwcApply(const sd::nn::detail::GroupNormProblem& pr, int64_t n, int64_t r0, int64_t r1,
                               const float* scale, const float* shift) {
  if (pr.bfloat16) {
    if (pr.silu) nhwcApplyTyped<true, true>(pr, n, r0, r1, scale, shift);
    else nhwcApplyTyped<true, false>(pr, n, r0, r1, scale, shift);
  } else {
    if (pr.silu) nhwcApplyTyped<false, true>(pr, n, r0, r1, scale, shift);
    else nhwcApplyTyped<false, false>(pr, n, r0, r1, scale, shift);
  }
}

// ---- GEGLU (diffusers models/activations.py GEGLU: hidden · gelu(gate), exact erf GELU) ----------

// gelu(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)), erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7, the
// polynomial ATen's vectorised erf uses): erf(a) = 1 − t·P(t)·e^(−a²), t = 1/(1 + p·a), a = |x|/√2.
// For x < 0, 1 + erf(x/√2) = t·P(t)·e^(−a²) is taken directly (no cancellation against 1).
inline Vf geluV(Vf x) {
  const Vf a = vmax(x, -x) * splat(0.70710678118654752f);
  const Vf t = splat(1.0f) / (splat(1.0f) + splat(0.3275911f) * a);
  Vf p = splat(1.061405429f);
  p = p * t + splat(-1.453152027f);
  p = p * t + splat(1.421413741f);
  p = p * t + splat(-0.284496736f);
  p = p * t + splat(0.254829592f);
  const Vf tail = p * t * expV(-(a * a));  // 1 − erf(a) = erfc(a)
  const Vf onePlusErf = x < splat(0.0f) ? tail : splat(2.0f) - tail;
  return splat(0.5f) * x * onePlusErf;
}

// out[r][0..F) = in[r][0..F) · gelu(in[r][F..2F)) for rows [begin, end); in rows of inStride elements.
template <bool kBf16>
void gegluTyped(const sd::nn::detail::GegluProblem& pr, int64_t begin, int64_t end) {
  const int64_t f = pr.features;
  for (int64_t r = begin; r < end; ++r) {
    int64_t i = 0;
    if constexpr (kBf16) {
      const uint16_t* h = static_cast<const uint16_t*>(pr.in) + r * pr.inStride;
      uint16_t* o = static_cast<uint16_t*>(pr.out) + r * f;
      for (; i + kLanes <= f; i += kLanes) storeB(o + i, loadB(h + i) * geluV(loadB(h + f + i)));
      if (i < f) {
        uint16_t hv[kLanes] = {}, gv[kLanes] = {}, ov[kLanes];
        std::memcpy(hv, h + i, (f - i) * sizeof(uint16_t));
        std::memcpy(gv, h + f + i, (f - i) * sizeof(uint16_t));
        storeB(ov, loadB(hv) * geluV(loadB(gv)));
        std::memcpy(o + i, ov, (f - i) * sizeof(uint16_t));
      }
    } else {
      const float* h = static_cast<const float*>(pr.in) + r * pr.inStride;
      float* o = static_cast<float*>(pr.out) + r * f;
      for (; i + kLanes <= f; i += kLanes) storeF(o + i, loadF(h + i) * geluV(loadF(h + f + i)));
      if (i < f) {
        float hv[kLanes] = {}, gv[kLanes] = {}, ov[kLanes];
        std::memcpy(hv, h + i, (f - i) * sizeof(float));
        std::memcpy(gv, h + f + i, (f - i) * sizeof(float));
        storeF(ov, loadF(hv) * geluV(loadF(gv)));
        std::memcpy(o + i, ov, (f - i) * sizeof(float));
      }
    }
  }
}

inline void gegluRows(const sd::nn::detail::GegluProblem& pr, int64_t begin, int64_t end) {
  if (pr.bfloat16) gegluTyped<true>(pr, begin, end);
  else gegluTyped<false>(pr, begin, end);
}

}  // namespace SD_GN_NAMESPACE
