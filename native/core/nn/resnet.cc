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
  at::Tensor h = conv1(norm1.withSilu(x));                    // [B, out, H, W]
  if (hasTemb && temb.defined()) {
    at::Tensor t = timeEmbProj(at::silu(temb));                 // [B, out]
    h = h + t.unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2(norm2.withSilu(h));                                 // dropout 0 at inference
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
  // diffusers casts bfloat16 to float32 around the interpolation (torch < 1.13 had no bfloat16
  // nearest kernel). Nearest interpolation only copies elements, so the round trip gives the same
  // bits; libtorch >= 1.13 has the bfloat16 kernel (CPU and CUDA), so sd-native skips the two copies.
  at::Tensor up = outputSize.empty() ? at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2})
                                     : at::upsample_nearest2d(x, outputSize);
  return conv(up);  // [B, C, 2H, 2W]
}

}  // namespace sd::nn
