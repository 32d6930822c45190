// diffusers v0.30.3 models/autoencoders/autoencoder_tiny.py (AutoencoderTiny: encode, decode, scale_latents, unscale_latents, forward) and models/autoencoders/vae.py (EncoderTiny, DecoderTiny, AutoencoderTinyBlock).
#include "models/autoencoder_tiny.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <filesystem>

#include "models/model_loading.h"
#include "config/config_reader.h"
#include "io/checkpoint.h"
#include "runtime/cancellation.h"
#include "runtime/dtype_support.h"
#include "util/error.h"
#include "util/json.h"

namespace sd::models {

namespace fs = std::filesystem;

// ---- config ------------------------------------------------------------------------------------

namespace {

std::vector<int64_t> intListOr(const ConfigReader& r, const std::string& key, std::vector<int64_t> fallback) {
  return r.has(key) ? r.requireIntList(key) : std::move(fallback);
}

void checkStages(const ConfigReader& r, const std::string& channelsKey, const std::vector<int64_t>& channels,
                 const std::string& blocksKey, const std::vector<int64_t>& blocks) {
  if (channels.empty() || channels.size() > 16) r.error(channelsKey, "must hold 1 to 16 entries");
  r.checkIn(channelsKey, channels, 1, ConfigReader::kMaxChannels);
  for (int64_t ch : channels)
    if (ch != channels[0])
      r.error(channelsKey, "entries must all be equal (diffusers builds each stage's conv as C_i -> C_i); got " +
                               std::to_string(ch) + " after " + std::to_string(channels[0]));
  if (blocks.size() != channels.size())
    r.error(blocksKey, "must have as many entries as " + channelsKey + " (" + std::to_string(channels.size()) +
                           "), got " + std::to_string(blocks.size()));
  r.checkIn(blocksKey, blocks, 0, ConfigReader::kMaxLayers);
}

}  // namespace

AutoencoderTinyConfig AutoencoderTinyConfig::fromFile(const std::string& path) {
  ConfigReader r = ConfigReader::fromFile(path);
  AutoencoderTinyConfig c;
  constexpr int64_t kMaxCh = ConfigReader::kMaxChannels;
  c.inChannels = r.getIntIn("in_channels", c.inChannels, 1, kMaxCh);
  c.outChannels = r.getIntIn("out_channels", c.outChannels, 1, kMaxCh);
  c.latentChannels = r.getIntIn("latent_channels", c.latentChannels, 1, kMaxCh);
  c.encoderBlockOutChannels = intListOr(r, "encoder_block_out_channels", c.encoderBlockOutChannels);
  c.decoderBlockOutChannels = intListOr(r, "decoder_block_out_channels", c.decoderBlockOutChannels);
  c.numEncoderBlocks = intListOr(r, "num_encoder_blocks", c.numEncoderBlocks);
  c.numDecoderBlocks = intListOr(r, "num_decoder_blocks", c.numDecoderBlocks);
  checkStages(r, "encoder_block_out_channels", c.encoderBlockOutChannels, "num_encoder_blocks", c.numEncoderBlocks);
  checkStages(r, "decoder_block_out_channels", c.decoderBlockOutChannels, "num_decoder_blocks", c.numDecoderBlocks);
  c.upsamplingScalingFactor = r.getIntIn("upsampling_scaling_factor", c.upsamplingScalingFactor, 1, 8);
  c.actFn = r.getString("act_fn", c.actFn);
  c.upsampleFn = r.getString("upsample_fn", c.upsampleFn);
  c.latentMagnitude = r.getDoubleIn("latent_magnitude", c.latentMagnitude, 1e-6, 1e6);
  c.latentShift = r.getDoubleIn("latent_shift", c.latentShift, -1e6, 1e6);
  c.scalingFactor = r.getDoubleIn("scaling_factor", c.scalingFactor, -1e6, 1e6);
  if (c.scalingFactor == 0) r.error("scaling_factor", "must be a finite non-zero number");
  c.forceUpcast = r.getBool("force_upcast", c.forceUpcast);
  if (c.actFn != "relu" && c.actFn != "silu" && c.actFn != "swish" && c.actFn != "gelu")
    fail(codes::kUnsupportedModel, path + ": act_fn \"" + c.actFn +
                                       "\" is not supported for AutoencoderTiny (relu, silu, swish or gelu)");
  if (c.upsampleFn != "nearest")
    fail(codes::kUnsupportedModel, path + ": upsample_fn \"" + c.upsampleFn +
                                       "\" is not supported for AutoencoderTiny (only nearest, as TAESD)");
  // The decoder's upsampling u^(n−1) must stay within int64 and reasonable image sizes.
  if (c.decoderUpsampling() > 4096)
    r.error("upsampling_scaling_factor", "gives a decoder upsampling of more than 4096 with " +
                                             std::to_string(c.decoderBlockOutChannels.size()) + " stages");
  return c;
}

int64_t AutoencoderTinyConfig::decoderUpsampling() const {
  int64_t u = 1;
  for (size_t i = 1; i < decoderBlockOutChannels.size() && u <= 4096; ++i) u *= upsamplingScalingFactor;
  return u;
}

bool isAutoencoderTinyConfig(const std::string& configPath) {
  try {
    Json j = Json::parseFile(configPath);
    const Json* name = j.isObject() ? j.find("_class_name") : nullptr;
    return name && name->isString() && name->string() == "AutoencoderTiny";
  } catch (const SdException&) {
    return false;
  }
}

// ---- blocks ------------------------------------------------------------------------------------

AutoencoderTinyBlock::AutoencoderTinyBlock(const nn::Scope& s, int64_t channels, std::string actFn_)
    : conv0(s.sub("conv.0"), channels, channels, 3, 1, 1),
      conv2(s.sub("conv.2"), channels, channels, 3, 1, 1),
      conv4(s.sub("conv.4"), channels, channels, 3, 1, 1),
      actFn(std::move(actFn_)) {}

at::Tensor AutoencoderTinyBlock::operator()(const at::Tensor& x) const {
  runtime::throwIfAborted("a TAESD block");
  at::Tensor h = nn::activation(actFn, conv0(x));  // conv.1: activation, no weights
  h = nn::activation(actFn, conv2(h));             // conv.3: activation, no weights
  h = conv4(h);                                    // [B, C, H, W]
  return at::relu(h + x);                          // skip = Identity (in == out); fuse = ReLU
}

EncoderTiny::EncoderTiny(const nn::Scope& s, const AutoencoderTinyConfig& c) {
  int64_t index = 0;
  auto next = [&] { return s.sub("layers", index++); };
  for (size_t i = 0; i < c.encoderBlockOutChannels.size(); ++i) {
    const int64_t ch = c.encoderBlockOutChannels[i];
    Layer conv;
    if (i == 0)
      conv.conv = nn::Conv2d(next(), c.inChannels, ch, 3, 1, 1);                     // in → C, bias
    else
      conv.conv = nn::Conv2d(next(), ch, ch, 3, /*stride=*/2, 1, /*withBias=*/false);  // C → C, stride 2
    layers.push_back(std::move(conv));
    for (int64_t b = 0; b < c.numEncoderBlocks[i]; ++b) {
      Layer block;
      block.block.emplace(next(), ch, c.actFn);
      layers.push_back(std::move(block));
    }
  }
  Layer out;
  out.conv = nn::Conv2d(next(), c.encoderBlockOutChannels.back(), c.latentChannels, 3, 1, 1);  // C → latent, bias
  layers.push_back(std::move(out));
}

at::Tensor EncoderTiny::operator()(const at::Tensor& x) const {
  at::Tensor h = x;  // [B, in, H, W] in [0, 1]
  for (const Layer& l : layers) h = l.block ? (*l.block)(h) : l.conv(h);
  return h;  // [B, latent, ⌈H/2^(n−1)⌉, ⌈W/2^(n−1)⌉]
}

DecoderTiny::DecoderTiny(const nn::Scope& s, const AutoencoderTinyConfig& c)
    : actFn(c.actFn), upsample(c.upsamplingScalingFactor) {
  int64_t index = 0;
  auto add = [&](Layer::Kind kind) -> Layer& {
    layers.push_back(Layer{});
    layers.back().kind = kind;
    return layers.back();
  };
  const auto& boc = c.decoderBlockOutChannels;
  add(Layer::kConv).conv = nn::Conv2d(s.sub("layers", index++), c.latentChannels, boc[0], 3, 1, 1);  // latent → C
  add(Layer::kAct);
  ++index;  // layers.1: the activation, no weights
  for (size_t i = 0; i < boc.size(); ++i) {
    const bool isFinal = i + 1 == boc.size();
    const int64_t ch = boc[i];
    for (int64_t b = 0; b < c.numDecoderBlocks[i]; ++b) add(Layer::kBlock).block.emplace(s.sub("layers", index++), ch, c.actFn);
    if (!isFinal) {
      add(Layer::kUpsample);
      ++index;  // nn.Upsample, no weights
    }
    // stage conv: C → C without bias, the last one C → out with bias
    add(Layer::kConv).conv = nn::Conv2d(s.sub("layers", index++), ch, isFinal ? c.outChannels : ch, 3, 1, 1, isFinal);
  }
}

at::Tensor DecoderTiny::operator()(const at::Tensor& x) const {
  at::Tensor h = x;  // [B, latent, h, w]
  for (const Layer& l : layers) {
    switch (l.kind) {
      case Layer::kConv: h = l.conv(h); break;
      case Layer::kAct: h = nn::activation(actFn, h); break;
      case Layer::kBlock: h = (*l.block)(h); break;
      case Layer::kUpsample: {  // nn.Upsample(scale_factor=u, mode="nearest"): [B, C, u·h, u·w]
        const std::vector<int64_t> size{h.size(2) * upsample, h.size(3) * upsample};
        h = at::upsample_nearest2d(h, size);
        break;
      }
    }
  }
  return h;  // [B, out, h·u^(n−1), w·u^(n−1)]
}

// ---- AutoencoderTiny ---------------------------------------------------------------------------

AutoencoderTiny::AutoencoderTiny(AutoencoderTinyConfig config, nn::StateDict weights, std::string component)
    : config_(std::move(config)), weights_(std::make_unique<nn::Weights>(std::move(weights), std::move(component))) {
  nn::Scope root(*weights_);
  encoder_ = EncoderTiny(root.sub("encoder"), config_);
  decoder_ = DecoderTiny(root.sub("decoder"), config_);
  weights_->finish();
  for (const auto& [name, t] : weights_->tensors()) {  // where the weights are now
    if (at::isFloatingType(t.scalar_type())) {
      device_ = t.device();
      dtype_ = t.scalar_type();
      break;
    }
  }
}

std::shared_ptr<AutoencoderTiny> AutoencoderTiny::fromPretrained(const std::string& componentDir, at::Device device,
                                                                 at::ScalarType dtype, const std::string& variant) {
  return loadComponent<std::shared_ptr<AutoencoderTiny>, AutoencoderTinyConfig>(componentDir, "AutoencoderTiny", "diffusion_pytorch_model", device, dtype, variant);
}

void AutoencoderTiny::to(at::Device device, at::ScalarType dtype) {
  if (!at::isFloatingType(dtype))
    fail(codes::kInvalidArgument, "AutoencoderTiny: dtype must be a floating-point type, got " + runtime::dtypeName(dtype));
  runtime::checkDtypeSupported(device, dtype, weights_->component());
  weights_->to(device, dtype);
  device_ = device;
  dtype_ = dtype;
}

at::Tensor AutoencoderTiny::prepareInput(const at::Tensor& x, int64_t channels, const char* what) const {
  const std::string expected = "[batch, " + std::to_string(channels) + ", height, width]";
  if (!x.defined() || x.dim() != 4)
    fail(codes::kInvalidArgument, std::string("AutoencoderTiny: ") + what + " must be a 4-d tensor " + expected +
                                      ", got " + (x.defined() ? nn::shapeString(x.sizes()) : std::string("nothing")));
  if (x.size(1) != channels)
    fail(codes::kInvalidArgument, std::string("AutoencoderTiny: ") + what + " must have " + std::to_string(channels) +
                                      " channels " + expected + ", got shape " + nn::shapeString(x.sizes()));
  if (x.size(0) == 0 || x.size(2) == 0 || x.size(3) == 0)
    fail(codes::kInvalidArgument, std::string("AutoencoderTiny: ") + what + " is empty: " + nn::shapeString(x.sizes()));
  if (!at::isFloatingType(x.scalar_type()))
    fail(codes::kInvalidArgument, std::string("AutoencoderTiny: ") + what + " must be a floating-point tensor");
  return x.to(device_, dtype_);
}

at::Tensor AutoencoderTiny::encode(const at::Tensor& image) const {
  at::NoGradGuard noGrad;
  at::Tensor x = prepareInput(image, config_.inChannels, "image");  // [B, in, H, W] in [-1, 1]
  runtime::throwIfAborted("the TAESD encoder");
  return encoder_(x.add(1).div(2));                                 // [B, latent, h, w]
}

at::Tensor AutoencoderTiny::decode(const at::Tensor& latents) const {
  at::NoGradGuard noGrad;
  at::Tensor z = prepareInput(latents, config_.latentChannels, "latents");  // [B, latent, h, w]
  runtime::throwIfAborted("the TAESD decoder");
  z = at::tanh(z / 3) * 3;                  // DecoderTiny.forward: clamp to (−3, 3)
  return decoder_(z).mul(2).sub(1);         // [B, out, h·u, w·u], ≈[-1, 1], unclamped
}

at::Tensor AutoencoderTiny::scaleLatents(const at::Tensor& x) const {
  return x.div(2 * config_.latentMagnitude).add(config_.latentShift).clamp(0, 1);
}

at::Tensor AutoencoderTiny::unscaleLatents(const at::Tensor& x) const {
  return x.sub(config_.latentShift).mul(2 * config_.latentMagnitude);
}

AutoencoderTiny::ForwardResult AutoencoderTiny::forward(const at::Tensor& image) const {
  at::NoGradGuard noGrad;
  ForwardResult r;
  r.latents = encode(image);                                                   // [B, latent, h, w]
  r.latentsUint8 = scaleLatents(r.latents).mul(255).round().to(at::kByte);     // as an RGBA uint8 image
  r.decoded = decode(unscaleLatents(r.latentsUint8.to(at::kFloat) / 255.0));    // [B, out, H', W']
  return r;
}

}  // namespace sd::models
