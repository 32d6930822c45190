// The float vector helpers of sd-native's hand-vectorised CPU kernels (nn/flash_attention_kernel.h,
// nn/group_norm_silu_kernel.h): kLanes float lanes as a GCC/Clang vector type, loads and stores
// through memcpy, min/max, and exp by the Cephes expf polynomial. (at::vec::Vectorized was the first
// choice: its AVX2/AVX-512 builds need sleef.h, which neither Debian libtorch line installs, and its
// generic build ran 2× slower than ATen's math path; docs/BENCHMARKS.md.)
//
// Not a public header, and deliberately without an include guard: each kernel header includes it
// *inside* its own per-instruction-set namespace, after defining `constexpr int kLanes` there
// (8 under the AVX2 target — ymm registers, `a * b + c` one FMA —, 4 in the baseline build: wider
// vectors there would change these helpers' ABI, -Wpsabi). One copy per namespace, so the AVX2 and
// baseline compilations never share (ODR) an inline function.

typedef float Vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t Vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vf splat(float x) {
  Vf v = {};
  return v + x;
}
inline Vf loadF(const float* p) {
  Vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeF(float* p, Vf v) { std::memcpy(p, &v, sizeof v); }
inline Vf vmax(Vf a, Vf b) { return a > b ? a : b; }
inline Vf vmin(Vf a, Vf b) { return a < b ? a : b; }

// exp per lane: 2ⁿ·eʳ with n = round(x·log₂e) (by the 1.5·2²³ shifter), r = x − n·ln2 (ln2 split
// in two for exactness), eʳ by the Cephes expf polynomial (relative error ≈ 1e-7); inputs are
// clamped to [−87.3, 88.3], so −inf gives ≈ 1e-38, never NaN.
inline Vf expV(Vf x) {
  const Vf shifter = splat(12582912.0f);  // 1.5·2²³: adding it rounds to an integer in the low bits
  x = vmin(vmax(x, splat(-87.3f)), splat(88.3f));
  const Vf t = x * splat(1.44269504088896341f) + shifter;
  const Vf fx = t - shifter;  // round(x·log₂e)
  Vf r = x - fx * splat(0.693359375f);
  r = r + fx * splat(2.12194440e-4f);
  Vf p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * (r * r) + (r + splat(1.0f));
  Vi n;
  std::memcpy(&n, &t, sizeof n);
  n = (n - 0x4B400000 + 127) << 23;  // the integer in t's mantissa, as an exponent field
  Vf pow2;
  std::memcpy(&pow2, &n, sizeof pow2);
  return p * pow2;
}
