// diffusers models/resnet.py ResnetBlock2D, models/downsampling.py Downsample2D,
// models/upsampling.py Upsample2D.
#include "nn/resnet.h"

#include "runtime/cancellation.h"

namespace sd::nn {

ResnetBlock2D::ResnetBlock2D(const Scope& s, int64_t in, int64_t out, int64_t tembChannels, int64_t groups, double eps)
    : norm1(s.sub("norm1"), groups, in, eps),
      norm2(s.sub("norm2"), groups, out, eps),
      conv1(s.sub("conv1"), in, out, 3, 1, 1),
      conv2(s.sub("conv2"), out, out, 3, 1, 1) {
  hasShortcut = in != out;
  if (hasShortcut) convShortcut = Conv2d(s.sub("conv_shortcut"), in, out, 1);
  hasTemb = tembChannels > 0;
  if (hasTemb) timeEmbProj = Linear(s.sub("time_emb_proj"), tembChannels, out);
}

at::Tensor ResnetBlock2D::operator()(const at::Tensor& x, const at::Tensor& temb) const {
  runtime::throwIfAborted("a ResnetBlock2D");  // UNet and VAE resnets
  at::Tensor h = conv1(at::silu(norm1(x)));                   // [B, out, H, W]
  if (hasTemb && temb.defined()) {
    at::Tensor t = timeEmbProj(at::silu(temb));                 // [B, out]
    h = h + t.unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2(at::silu(norm2(h)));                                // dropout 0 at inference
  at::Tensor residual = hasShortcut ? convShortcut(x) : x;      // [B, out, H, W]
  return residual + h;
}

Downsample2D::Downsample2D(const Scope& s, int64_t channels, int64_t padding)
    : conv(s.sub("conv"), channels, channels, 3, 2, padding), asymmetricPad(padding == 0) {}

at::Tensor Downsample2D::operator()(const at::Tensor& x) const {
  if (asymmetricPad) return conv(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));  // [B, C, H+1, W+1]
  return conv(x);                                                             // [B, C, H/2, W/2]
}

Upsample2D::Upsample2D(const Scope& s, int64_t channels) : conv(s.sub("conv"), channels, channels, 3, 1, 1) {}

at::Tensor Upsample2D::operator()(const at::Tensor& x, at::IntArrayRef outputSize) const {
  // diffusers upcasts bfloat16 for nearest interpolation (not implemented for bf16 in old torch).
  at::Tensor in = x.scalar_type() == at::kBFloat16 ? x.to(at::kFloat) : x;
  at::Tensor up = outputSize.empty() ? at::upsample_nearest2d(in, {in.size(2) * 2, in.size(3) * 2})
                                     : at::upsample_nearest2d(in, outputSize);
  if (up.scalar_type() != x.scalar_type()) up = up.to(x.scalar_type());
  return conv(up);  // [B, C, 2H, 2W]
}

}  // namespace sd::nn
