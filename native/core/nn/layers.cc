// torch.nn layer semantics over by-name weights (torch.nn.functional equivalents).
#include "nn/layers.h"

#include "nn/group_norm_silu.h"
#include "nn/weight_storage.h"
#include "runtime/kernel_quirks.h"
#include "util/error.h"

namespace sd::nn {

at::Tensor castLike(const at::Tensor& w, const at::Tensor& x) {
  if (w.scalar_type() == x.scalar_type() && w.device() == x.device()) return w;
  if (isFp8Storage(w)) return decodeFp8Storage(w, x.device(), x.scalar_type());  // enableFp8Storage
  return w.to(x.device(), x.scalar_type());
}

static at::Tensor optCast(const at::Tensor* t, const at::Tensor& x) {
  return t ? castLike(*t, x) : at::Tensor();
}

// at::conv2d, computed in float32 where this libtorch's reduced-precision CPU kernel is known
// to be wrong for the shape (runtime/kernel_quirks.h: kernel > 1×1 with out_channels % 16 != 0,
// i.e. conv_out layers and LoRA down-projections: a negligible share of the FLOPs).
static at::Tensor conv2d(const at::Tensor& x, const at::Tensor& w, const at::Tensor* bias, int64_t stride,
                         int64_t padding) {
  const bool narrow = w.size(0) % 16 != 0 && (w.size(2) > 1 || w.size(3) > 1);
  if (narrow && x.device().is_cpu() && !x.is_contiguous(at::MemoryFormat::ChannelsLast) &&
      runtime::cpuKernelQuirks(x.scalar_type()).conv2dNarrowOutput) {
    const at::Tensor xf = x.to(at::kFloat);
    return at::conv2d(xf, castLike(w, xf), optCast(bias, xf), {stride, stride}, {padding, padding}).to(x.scalar_type());
  }
  return at::conv2d(x, castLike(w, x), optCast(bias, x), {stride, stride}, {padding, padding});
}

// PEFT LoraLayer.forward: result + lora_B(lora_A(x)) · scaling, per active adapter in load order.
static at::Tensor addLora(at::Tensor y, const LoraSlot& slot, const at::Tensor& x) {
  for (const LoraDelta& d : slot.deltas) {
    if (!d.active) continue;
    at::Tensor h;
    if (slot.kernel == 0) {
      h = at::linear(at::linear(x, castLike(d.down, x)), castLike(d.up, x));  // [..., out]
    } else {
      h = conv2d(x, d.down, nullptr, slot.stride, slot.padding);  // [B, r, h, w]
      h = conv2d(h, d.up, nullptr, 1, 0);                          // [B, out, h, w]
    }
    y = y + h * (d.scaling() * *slot.scale);
  }
  return y;
}

static LoraSlot* registerLora(const Scope& s, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  LoraSlot* slot = s.weights().loraSlot(s.prefix());
  slot->in = in;
  slot->out = out;
  slot->kernel = kernel;
  slot->stride = stride;
  slot->padding = padding;
  return slot;
}

Linear::Linear(const Scope& s, int64_t in, int64_t out, bool withBias)
    : weight(s.take("weight", {out, in})),
      bias(withBias ? s.take("bias", {out}) : nullptr),
      lora(registerLora(s, in, out, 0, 1, 0)) {}

at::Tensor Linear::operator()(const at::Tensor& x) const {
  at::Tensor y = at::linear(x, castLike(*weight, x), optCast(bias, x));
  return lora && lora->enabled() ? addLora(std::move(y), *lora, x) : y;
}

Conv2d::Conv2d(const Scope& s, int64_t in, int64_t out, int64_t kernel, int64_t stride_, int64_t padding_, bool withBias)
    : weight(s.take("weight", {out, in, kernel, kernel})),
      bias(withBias ? s.take("bias", {out}) : nullptr),
      stride(stride_),
      padding(padding_),
      lora(registerLora(s, in, out, kernel, stride_, padding_)) {}

at::Tensor Conv2d::operator()(const at::Tensor& x) const {
  at::Tensor y = conv2d(x, *weight, bias, stride, padding);
  return lora && lora->enabled() ? addLora(std::move(y), *lora, x) : y;
}

GroupNorm::GroupNorm(const Scope& s, int64_t groups_, int64_t channels, double eps_)
    : weight(s.take("weight", {channels})), bias(s.take("bias", {channels})), groups(groups_), eps(eps_) {
  if (groups <= 0 || channels % groups != 0)  // groups > 0 first: `% 0` is a SIGFPE
    fail(codes::kBadConfig, s.weights().component() + ": " + s.prefix() + ": " + std::to_string(channels) +
                                " channels are not divisible into " + std::to_string(groups) + " groups");
}

at::Tensor GroupNorm::operator()(const at::Tensor& x) const {
  if (fusedGroupNormEnabled() && groupNormSiluSupports(x)) {
    const at::Tensor probe = at::empty({0}, x.options().dtype(at::kFloat));  // γ, β in float32 on x's device
    return groupNormSiluCpu(x, groups, castLike(*weight, probe), castLike(*bias, probe), eps, /*silu=*/false);
  }
  // A channels-last input goes contiguous where this libtorch's kernel is wrong for it (kernel_quirks.h).
  if (x.device().is_cpu() && x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast) &&
      runtime::cpuKernelQuirks(x.scalar_type()).groupNormChannelsLast)
    return at::group_norm(x.contiguous(), groups, castLike(*weight, x), castLike(*bias, x), eps)
        .contiguous(at::MemoryFormat::ChannelsLast);
  return at::group_norm(x, groups, castLike(*weight, x), castLike(*bias, x), eps);
}

at::Tensor GroupNorm::withSilu(const at::Tensor& x) const {
  if (fusedGroupNormEnabled() && groupNormSiluSupports(x)) {
    const at::Tensor probe = at::empty({0}, x.options().dtype(at::kFloat));  // γ, β in float32 on x's device
    return groupNormSiluCpu(x, groups, castLike(*weight, probe), castLike(*bias, probe), eps, /*silu=*/true);
  }
  return at::silu((*this)(x));
}

LayerNorm::LayerNorm(const Scope& s, int64_t dim_, double eps_)
    : weight(s.take("weight", {dim_})), bias(s.take("bias", {dim_})), dim(dim_), eps(eps_) {}

at::Tensor LayerNorm::operator()(const at::Tensor& x) const {
  return at::layer_norm(x, {dim}, castLike(*weight, x), castLike(*bias, x), eps);
}

Embedding::Embedding(const Scope& s, int64_t num, int64_t dim) : weight(s.take("weight", {num, dim})) {}

at::Tensor Embedding::operator()(const at::Tensor& ids) const { return at::embedding(*weight, ids); }

at::Tensor activation(const std::string& name, const at::Tensor& x) {
  if (name == "gelu") return at::gelu(x);
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return at::gelu(x, "tanh");
  if (name == "silu" || name == "swish") return at::silu(x);
  if (name == "relu") return at::relu(x);
  fail(codes::kUnsupportedModel, "unsupported activation function \"" + name + "\"");
}

}  // namespace sd::nn
