// The weighted building blocks (torch.nn.Linear, Conv2d, GroupNorm, LayerNorm, Embedding),
// as thin structs over tensors held by a Weights store under diffusers' parameter names.
//
// Every layer casts its weight to the input's dtype/device when they differ ("manual cast",
// the AUTOMATIC1111 approach): a store kept in another dtype (e.g. fp8 bytes) still computes
// in the activation dtype, one layer at a time.
#pragma once

#include <ATen/ATen.h>

#include "nn/weights.h"

namespace sd::nn {

/// Weight `w` in x's dtype and device (no copy when they already match). 8-bit float storage
/// (nn/weight_storage.h, enableFp8Storage) is decoded here, one layer at a time.
at::Tensor castLike(const at::Tensor& w, const at::Tensor& x);

/// torch.nn.Linear: y = x W^T + b. weight [out, in], bias [out]. x [..., in] → [..., out].
struct Linear {
  at::Tensor* weight = nullptr;
  at::Tensor* bias = nullptr;
  LoraSlot* lora = nullptr;  // unfused LoRA adapters added to the output (nn/lora.h)
  Linear() = default;
  Linear(const Scope& s, int64_t in, int64_t out, bool withBias = true);
  at::Tensor operator()(const at::Tensor& x) const;
};

/// torch.nn.Conv2d with square kernel. weight [out, in, k, k], bias [out]. x [B, in, H, W].
struct Conv2d {
  at::Tensor* weight = nullptr;
  at::Tensor* bias = nullptr;
  int64_t stride = 1;
  int64_t padding = 0;
  LoraSlot* lora = nullptr;  // unfused LoRA adapters added to the output (nn/lora.h)
  Conv2d() = default;
  Conv2d(const Scope& s, int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
         bool withBias = true);
  at::Tensor operator()(const at::Tensor& x) const;
};

/// torch.nn.GroupNorm(groups, channels, eps, affine=True). x [B, C, ...]. On the CPU, a contiguous
/// float32/bfloat16 x goes through sd-native's kernel (nn/group_norm_silu.h, fusedGroupNormEnabled).
struct GroupNorm {
  at::Tensor* weight = nullptr;
  at::Tensor* bias = nullptr;
  int64_t groups = 32;
  double eps = 1e-5;
  GroupNorm() = default;
  GroupNorm(const Scope& s, int64_t groups, int64_t channels, double eps);
  at::Tensor operator()(const at::Tensor& x) const;
  /// silu(GroupNorm(x)) (diffusers' norm → nonlinearity pairs). On the CPU, for a contiguous
  /// float32/bfloat16 x, one fused kernel (nn/group_norm_silu.h; fusedGroupNormEnabled); elsewhere
  /// at::silu over operator()'s result.
  at::Tensor withSilu(const at::Tensor& x) const;
};

/// torch.nn.LayerNorm(dim, eps) over the last dimension.
struct LayerNorm {
  at::Tensor* weight = nullptr;
  at::Tensor* bias = nullptr;
  int64_t dim = 0;
  double eps = 1e-5;
  LayerNorm() = default;
  LayerNorm(const Scope& s, int64_t dim, double eps);
  at::Tensor operator()(const at::Tensor& x) const;
};

/// torch.nn.Embedding. weight [num, dim]; ids int64 [...] → [..., dim].
struct Embedding {
  at::Tensor* weight = nullptr;
  Embedding() = default;
  Embedding(const Scope& s, int64_t num, int64_t dim);
  at::Tensor operator()(const at::Tensor& ids) const;
};

/// Activation by Hugging Face name: "gelu" (exact, erf), "quick_gelu" (x·σ(1.702x)),
/// "gelu_new"/"gelu_pytorch_tanh" (tanh approximation), "silu"/"swish", "relu".
at::Tensor activation(const std::string& name, const at::Tensor& x);

}  // namespace sd::nn
