// torch.nn.GroupNorm followed by SiLU as one CPU kernel (diffusers ResnetBlock2D's
// norm1 → nonlinearity and norm2 → nonlinearity, the UNet's and the VAE's conv_norm_out →
// conv_act): per (batch, group) mean and biased variance with float64 chunk merging (Chan, Golub
// & LeVeque 1983), then y = silu(x̂·γ + β) written in one pass, float32 arithmetic whatever the
// dtype, at::parallel_for over batch·groups, GCC/Clang vector types (AVX2+FMA where the CPU has
// it, chosen at run time). Saves ATen's separate SiLU pass over the normalised tensor (and, in
// bfloat16, its intermediate rounding). Measured against at::group_norm + at::silu in
// docs/BENCHMARKS.md; compared with them by test/group-norm-silu.test.ts.
#pragma once

#include <ATen/ATen.h>

namespace sd::nn {

/// GroupNorm(groups, eps, affine) of x, then SiLU when `silu`, on the CPU.
/// x [N, C, *] contiguous (row-major), or 4-d in channels-last ([N, H, W, C] in memory), float32
/// or bfloat16; gamma, beta [C] (any dtype, cast to float32) → a new tensor of x's shape, dtype and
/// layout. Statistics and the affine map are computed in
/// float32 (chunk moments merged in float64); bfloat16 results are rounded once, at the output.
/// Errors: E_INVALID_ARGUMENT for another device, dtype or layout, C not divisible by groups, or
/// gamma/beta not of C elements.
at::Tensor groupNormSiluCpu(const at::Tensor& x, int64_t groups, const at::Tensor& gamma, const at::Tensor& beta,
                            double eps, bool silu = true);

/// True when groupNormSiluCpu computes x as it is: on the CPU, float32 or bfloat16, rank ≥ 2,
/// contiguous or 4-d channels-last (other strided inputs are left to ATen).
bool groupNormSiluSupports(const at::Tensor& x);

/// Whether nn::GroupNorm (and withSilu) and the GEGLU feed-forward use these kernels where it supports the input (default on;
/// the environment variable SD_FUSED_GROUP_NORM=0 turns it off at start-up). For A/B measurements
/// and tests; process-wide.
bool fusedGroupNormEnabled();
void setFusedGroupNormEnabled(bool on);

/// diffusers GEGLU after its projection: hidden, gate = proj.chunk(2, -1); hidden · gelu(gate)
/// (exact, erf, GELU), in one pass, on the CPU. proj [..., 2F] contiguous, float32 or bfloat16 → a
/// new [..., F] tensor in proj's dtype (float32 arithmetic, rounded once). erf by Abramowitz & Stegun
/// 7.1.26 (|error| ≤ 1.5e-7, as ATen's vectorised erf). Used by BasicTransformerBlock's feed-forward
/// when fusedGroupNormEnabled (the same switch). Errors: E_INVALID_ARGUMENT for another device,
/// dtype or layout, or an odd last dimension.
at::Tensor gegluCpu(const at::Tensor& proj);

/// True when gegluCpu computes proj as it is (CPU, float32/bfloat16, contiguous, even last dimension).
bool gegluCpuSupports(const at::Tensor& proj);

/// The instruction set the kernels dispatch to on this CPU: "avx2" or "baseline".
const char* groupNormSiluIsa();

}  // namespace sd::nn
