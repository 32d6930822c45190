// diffusers v0.30.3 models/autoencoders/autoencoder_kl.py (AutoencoderKL, incl. slicing, tiled_encode/tiled_decode, blend_v/blend_h) and models/autoencoders/vae.py (Encoder, Decoder, DiagonalGaussianDistribution).
#include "models/autoencoder_kl.h"

#include "models/model_loading.h"
#include "io/checkpoint.h"
#include "runtime/dtype_support.h"

#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "config/config_reader.h"
#include "io/safetensors.h"
#include "runtime/cancellation.h"
#include "util/error.h"

namespace sd::models {

namespace fs = std::filesystem;

namespace {

constexpr double kVaeEps = 1e-6;  // resnet_eps / GroupNorm eps of every VAE norm

using runtime::dtypeName;

// diffusers AutoencoderKL.blend_v: linear blend of the last `extent` rows of `a` into the first
// rows of `b`, in place on b (as diffusers, whose later blends see the already-blended tiles).
void blendV(const at::Tensor& a, at::Tensor& b, int64_t extent) {
  extent = std::min({a.size(2), b.size(2), extent});
  for (int64_t y = 0; y < extent; ++y) {
    const double t = static_cast<double>(y) / static_cast<double>(extent);
    b.select(2, y).copy_(a.select(2, a.size(2) - extent + y) * (1 - t) + b.select(2, y) * t);  // [B, C, W]
  }
}

// diffusers AutoencoderKL.blend_h: the same over columns.
void blendH(const at::Tensor& a, at::Tensor& b, int64_t extent) {
  extent = std::min({a.size(3), b.size(3), extent});
  for (int64_t x = 0; x < extent; ++x) {
    const double t = static_cast<double>(x) / static_cast<double>(extent);
    b.select(3, x).copy_(a.select(3, a.size(3) - extent + x) * (1 - t) + b.select(3, x) * t);  // [B, C, H]
  }
}

// The overlapping-tile loop shared by tiled_encode and tiled_decode: `run` maps an input tile
// (at most `tileIn` square, stepping by `stride`) to an output tile; tiles are blended over
// `blendExtent` output pixels with the tile above and to the left, cropped to `rowLimit` and
// concatenated.
template <typename F>
at::Tensor tiledApply(const at::Tensor& x, int64_t tileIn, int64_t stride, int64_t blendExtent, int64_t rowLimit,
                      F run) {
  std::vector<std::vector<at::Tensor>> rows;
  for (int64_t i = 0; i < x.size(2); i += stride) {
    std::vector<at::Tensor> row;
    for (int64_t j = 0; j < x.size(3); j += stride) {
      at::Tensor tile = x.slice(2, i, i + tileIn).slice(3, j, j + tileIn);  // [B, C, ≤tile, ≤tile]
      runtime::throwIfAborted("a VAE tile");
      row.push_back(run(tile));
    }
    rows.push_back(std::move(row));
  }
  std::vector<at::Tensor> resultRows;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<at::Tensor> resultRow;
    for (size_t j = 0; j < rows[i].size(); ++j) {
      at::Tensor& tile = rows[i][j];
      if (i > 0) blendV(rows[i - 1][j], tile, blendExtent);
      if (j > 0) blendH(rows[i][j - 1], tile, blendExtent);
      resultRow.push_back(tile.slice(2, 0, rowLimit).slice(3, 0, rowLimit));
    }
    resultRows.push_back(at::cat(resultRow, 3));
  }
  return at::cat(resultRows, 2);
}

}  // namespace

// ---- config ------------------------------------------------------------------------------------

AutoencoderKLConfig AutoencoderKLConfig::fromFile(const std::string& path) {
  ConfigReader r = ConfigReader::fromFile(path);
  AutoencoderKLConfig c;
  c.inChannels = r.requireInt("in_channels");
  c.outChannels = r.requireInt("out_channels");
  c.downBlockTypes = r.requireStringList("down_block_types");
  c.upBlockTypes = r.requireStringList("up_block_types");
  c.blockOutChannels = r.requireIntList("block_out_channels");
  c.layersPerBlock = r.requireInt("layers_per_block");
  c.actFn = r.getString("act_fn", "silu");
  c.latentChannels = r.requireInt("latent_channels");
  c.normNumGroups = r.getInt("norm_num_groups", 32);
  if (const Json* s = r.json().find("sample_size"); s && s->isArray()) {
    std::vector<int64_t> sizes = r.requireIntList("sample_size");
    if (sizes.empty()) r.error("sample_size", "must not be an empty list");
    c.sampleSize = sizes[0];  // diffusers tiles with sample_size[0] when it is a list
  } else {
    c.sampleSize = r.getInt("sample_size", 32);
  }
  c.scalingFactor = r.getDouble("scaling_factor", 0.18215);
  if (r.has("shift_factor")) c.shiftFactor = r.requireDouble("shift_factor");
  c.latentsMean = r.getDoubleList("latents_mean");
  c.latentsStd = r.getDoubleList("latents_std");
  c.forceUpcast = r.getBool("force_upcast", true);
  c.useQuantConv = r.getBool("use_quant_conv", true);
  c.usePostQuantConv = r.getBool("use_post_quant_conv", true);
  c.midBlockAddAttention = r.getBool("mid_block_add_attention", true);

  if (c.blockOutChannels.empty()) r.error("block_out_channels", "must not be empty");
  if (c.blockOutChannels.size() > 16) r.error("block_out_channels", "has more than 16 entries");
  for (int64_t ch : c.blockOutChannels)
    if (ch <= 0) r.error("block_out_channels", "must hold positive integers");
  if (c.downBlockTypes.size() != c.blockOutChannels.size())
    r.error("down_block_types", "has " + std::to_string(c.downBlockTypes.size()) + " entries but block_out_channels has " +
                                    std::to_string(c.blockOutChannels.size()));
  if (c.upBlockTypes.size() != c.blockOutChannels.size())
    r.error("up_block_types", "has " + std::to_string(c.upBlockTypes.size()) + " entries but block_out_channels has " +
                                  std::to_string(c.blockOutChannels.size()));
  for (const auto& t : c.downBlockTypes)
    if (t != "DownEncoderBlock2D")
      fail(codes::kUnsupportedModel, path + ": down_block_types entry \"" + t + "\" is not supported (only DownEncoderBlock2D)");
  for (const auto& t : c.upBlockTypes)
    if (t != "UpDecoderBlock2D")
      fail(codes::kUnsupportedModel, path + ": up_block_types entry \"" + t + "\" is not supported (only UpDecoderBlock2D)");
  if (c.actFn != "silu" && c.actFn != "swish")
    fail(codes::kUnsupportedModel, path + ": act_fn \"" + c.actFn + "\" is not supported for AutoencoderKL (only silu)");
  if (c.inChannels <= 0) r.error("in_channels", "must be positive");
  if (c.outChannels <= 0) r.error("out_channels", "must be positive");
  if (c.latentChannels <= 0) r.error("latent_channels", "must be positive");
  if (c.layersPerBlock <= 0) r.error("layers_per_block", "must be positive");
  if (c.normNumGroups <= 0) r.error("norm_num_groups", "must be positive");
  if (c.sampleSize <= 0) r.error("sample_size", "must be positive");
  // Caps (ConfigReader::kMax*, far above released VAEs) keep a hostile config from allocating.
  constexpr int64_t kMaxCh = ConfigReader::kMaxChannels;
  r.checkIn("in_channels", c.inChannels, 1, kMaxCh);
  r.checkIn("out_channels", c.outChannels, 1, kMaxCh);
  r.checkIn("latent_channels", c.latentChannels, 1, kMaxCh);
  r.checkIn("block_out_channels", c.blockOutChannels, 1, kMaxCh);
  r.checkIn("layers_per_block", c.layersPerBlock, 1, ConfigReader::kMaxLayers);
  r.checkIn("norm_num_groups", c.normNumGroups, 1, kMaxCh);
  r.checkIn("sample_size", c.sampleSize, 1, ConfigReader::kMaxPositions);
  // GroupNorm splits each block's channels into norm_num_groups groups.
  for (int64_t ch : c.blockOutChannels)
    if (ch % c.normNumGroups != 0)
      r.error("norm_num_groups", "(" + std::to_string(c.normNumGroups) + ") must divide every block_out_channels entry (" +
                                     std::to_string(ch) + " does not divide evenly)");
  if (!std::isfinite(c.scalingFactor) || c.scalingFactor == 0) r.error("scaling_factor", "must be a finite non-zero number");
  if (c.shiftFactor && !std::isfinite(*c.shiftFactor)) r.error("shift_factor", "must be a finite number");
  return c;
}

// ---- distribution ------------------------------------------------------------------------------

at::Tensor DiagonalGaussian::sample(at::Generator* cpuGen) const {
  c10::optional<at::Generator> gen;  // c10::optional: libtorch 1.13's randn signature
  if (cpuGen) {
    if (cpuGen->device().type() != at::kCPU)
      fail(codes::kInvalidArgument, "DiagonalGaussian.sample: the generator must be a CPU generator");
    gen = *cpuGen;
  }
  // randn_tensor: drawn on the CPU in the distribution's dtype, then moved.
  at::Tensor eps = at::randn(mean.sizes(), gen, mean.options().device(at::kCPU));  // [B, latent, h, w]
  return mean + std * eps.to(mean.device());
}

// ---- blocks ------------------------------------------------------------------------------------

VaeAttentionBlock::VaeAttentionBlock(const nn::Scope& s, int64_t channels_, int64_t groups, double eps)
    : groupNorm(s.sub("group_norm"), groups, channels_, eps),
      toQ(s.sub("to_q"), channels_, channels_),
      toK(s.sub("to_k"), channels_, channels_),
      toV(s.sub("to_v"), channels_, channels_),
      toOut(s.sub("to_out.0"), channels_, channels_),
      channels(channels_) {}

at::Tensor VaeAttentionBlock::operator()(const at::Tensor& x, const nn::AttentionOptions& options) const {
  runtime::throwIfAborted("the VAE attention block");
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor hs = groupNorm(x).flatten(2).transpose(1, 2);           // [B, H·W, C] (a view, NCHW or channels-last)
  at::Tensor q = toQ(hs), k = toK(hs), v = toV(hs);                  // [B, H·W, C]
  // diffusers builds this Attention with upcast_softmax=True: the softmax in float32.
  at::Tensor o = nn::attention(q, k, v, /*heads=*/1, options, std::nullopt, nn::Upcast::kSoftmax);  // [B, H·W, C]
  o = toOut(o);                                                       // [B, H·W, C]; dropout 0
  o = o.transpose(1, 2).reshape({b, c, h, w});                        // [B, C, H, W]
  return o + x;                                                       // residual; rescale_output_factor 1
}

VaeMidBlock::VaeMidBlock(const nn::Scope& s, int64_t channels, int64_t groups, bool addAttention) {
  resnets.emplace_back(s.sub("resnets", 0), channels, channels, 0, groups, kVaeEps);
  if (addAttention) attention.emplace(s.sub("attentions", 0), channels, groups, kVaeEps);
  resnets.emplace_back(s.sub("resnets", 1), channels, channels, 0, groups, kVaeEps);
}

at::Tensor VaeMidBlock::operator()(const at::Tensor& x, const nn::AttentionOptions& options) const {
  at::Tensor h = resnets[0](x, at::Tensor());  // [B, C, H, W]
  if (attention) h = (*attention)(h, options);
  return resnets[1](h, at::Tensor());
}

VaeEncoder::VaeEncoder(const nn::Scope& s, const AutoencoderKLConfig& c) : actFn(c.actFn) {
  const auto& boc = c.blockOutChannels;
  const int64_t groups = c.normNumGroups;
  convIn = nn::Conv2d(s.sub("conv_in"), c.inChannels, boc[0], 3, 1, 1);
  int64_t output = boc[0];
  for (size_t i = 0; i < boc.size(); ++i) {
    const int64_t input = output;
    output = boc[i];
    const bool isFinal = i + 1 == boc.size();
    nn::Scope bs = s.sub("down_blocks", static_cast<int64_t>(i));
    DownEncoderBlock2D block;
    for (int64_t j = 0; j < c.layersPerBlock; ++j)
      block.resnets.emplace_back(bs.sub("resnets", j), j == 0 ? input : output, output, 0, groups, kVaeEps);
    if (!isFinal) block.downsampler.emplace(bs.sub("downsamplers", 0), output, /*padding=*/0);
    downBlocks.push_back(std::move(block));
  }
  midBlock = VaeMidBlock(s.sub("mid_block"), boc.back(), groups, c.midBlockAddAttention);
  convNormOut = nn::GroupNorm(s.sub("conv_norm_out"), groups, boc.back(), kVaeEps);
  convOut = nn::Conv2d(s.sub("conv_out"), boc.back(), 2 * c.latentChannels, 3, 1, 1);  // double_z
}

at::Tensor VaeEncoder::operator()(const at::Tensor& x, const nn::AttentionOptions& options) const {
  runtime::throwIfAborted("the VAE encoder");
  at::Tensor h = convIn(x);  // [B, boc[0], H, W]
  for (const auto& block : downBlocks) {
    for (const auto& r : block.resnets) h = r(h, at::Tensor());  // each resnet checks for an abort first
    if (block.downsampler) h = (*block.downsampler)(h);  // asymmetric pad (0,1,0,1), stride 2: [B, C, H/2, W/2]
  }
  h = midBlock(h, options);                              // [B, boc[-1], H/f, W/f]
  runtime::throwIfAborted("the VAE encoder");
  h = convNormOut.withSilu(h);                           // conv_act (act_fn silu/swish, checked), no weights
  return convOut(h);                                     // [B, 2·latent, H/f, W/f]
}

VaeDecoder::VaeDecoder(const nn::Scope& s, const AutoencoderKLConfig& c) : actFn(c.actFn) {
  const auto& boc = c.blockOutChannels;
  const int64_t groups = c.normNumGroups;
  convIn = nn::Conv2d(s.sub("conv_in"), c.latentChannels, boc.back(), 3, 1, 1);
  midBlock = VaeMidBlock(s.sub("mid_block"), boc.back(), groups, c.midBlockAddAttention);
  std::vector<int64_t> reversed(boc.rbegin(), boc.rend());
  int64_t output = reversed[0];
  for (size_t i = 0; i < reversed.size(); ++i) {
    const int64_t prev = output;
    output = reversed[i];
    const bool isFinal = i + 1 == reversed.size();
    nn::Scope bs = s.sub("up_blocks", static_cast<int64_t>(i));
    UpDecoderBlock2D block;
    for (int64_t j = 0; j < c.layersPerBlock + 1; ++j)
      block.resnets.emplace_back(bs.sub("resnets", j), j == 0 ? prev : output, output, 0, groups, kVaeEps);
    if (!isFinal) block.upsampler.emplace(bs.sub("upsamplers", 0), output);
    upBlocks.push_back(std::move(block));
  }
  convNormOut = nn::GroupNorm(s.sub("conv_norm_out"), groups, boc[0], kVaeEps);
  convOut = nn::Conv2d(s.sub("conv_out"), boc[0], c.outChannels, 3, 1, 1);
}

at::Tensor VaeDecoder::operator()(const at::Tensor& z, const nn::AttentionOptions& options) const {
  runtime::throwIfAborted("the VAE decoder");
  at::Tensor h = convIn(z);   // [B, boc[-1], h, w]
  h = midBlock(h, options);   // [B, boc[-1], h, w]; upscale_dtype = parameter dtype (no cast needed)
  for (const auto& block : upBlocks) {
    for (const auto& r : block.resnets) h = r(h, at::Tensor());  // each resnet checks for an abort first
    if (block.upsampler) h = (*block.upsampler)(h);  // nearest ×2 + conv: [B, C, 2h, 2w]
  }
  runtime::throwIfAborted("the VAE decoder");
  h = convNormOut.withSilu(h);                       // conv_act (act_fn silu/swish, checked), no weights
  return convOut(h);                                 // [B, out_channels, h·f, w·f]
}

// ---- AutoencoderKL -----------------------------------------------------------------------------

AutoencoderKL::AutoencoderKL(AutoencoderKLConfig config, nn::StateDict weights, std::string component)
    : config_(std::move(config)),
      weights_(std::make_unique<nn::Weights>(std::move(weights), std::move(component))),
      attention_(std::make_shared<nn::AttentionOptions>()) {
  nn::Scope root(*weights_);
  encoder_ = VaeEncoder(root.sub("encoder"), config_);
  decoder_ = VaeDecoder(root.sub("decoder"), config_);
  const int64_t lc = config_.latentChannels;
  if (config_.useQuantConv) quantConv_ = nn::Conv2d(root.sub("quant_conv"), 2 * lc, 2 * lc, 1);
  if (config_.usePostQuantConv) postQuantConv_ = nn::Conv2d(root.sub("post_quant_conv"), lc, lc, 1);
  weights_->finish();

  for (const auto& [name, t] : weights_->tensors()) {  // where the weights are now
    if (at::isFloatingType(t.scalar_type())) {
      device_ = t.device();
      dtype_ = t.scalar_type();
      break;
    }
  }
  tileSampleMinSize_ = config_.sampleSize;
  tileLatentMinSize_ = config_.sampleSize / vaeScaleFactor();
}

std::shared_ptr<AutoencoderKL> AutoencoderKL::fromPretrained(const std::string& componentDir, at::Device device,
                                                             at::ScalarType dtype, const std::string& variant) {
  return loadComponent<std::shared_ptr<AutoencoderKL>, AutoencoderKLConfig>(componentDir, "vae", "diffusion_pytorch_model", device, dtype, variant);
}

void AutoencoderKL::to(at::Device device, at::ScalarType dtype) {
  if (!at::isFloatingType(dtype))
    fail(codes::kInvalidArgument, "vae: dtype must be a floating-point type, got " + dtypeName(dtype));
  runtime::checkDtypeSupported(device, dtype, weights_->component());
  weights_->to(device, dtype);
  device_ = device;
  dtype_ = dtype;
}

void AutoencoderKL::setAttentionOptions(std::shared_ptr<nn::AttentionOptions> options) {
  if (!options) fail(codes::kInvalidArgument, "vae: attention options must not be null");
  attention_ = std::move(options);
}

void AutoencoderKL::setTiling(bool on, std::optional<int64_t> tileSampleMinSize, std::optional<double> overlapFactor) {
  const int64_t f = vaeScaleFactor();
  const int64_t sample = tileSampleMinSize.value_or(config_.sampleSize);
  if (sample <= 0 || sample % f != 0)
    fail(codes::kInvalidArgument, "vae tiling: tileSampleMinSize must be a positive multiple of the VAE scale factor " +
                                      std::to_string(f) + ", got " + std::to_string(sample));
  const double overlap = overlapFactor.value_or(0.25);
  if (!(overlap >= 0.0 && overlap < 1.0))
    fail(codes::kInvalidArgument, "vae tiling: overlap factor must be in [0, 1), got " + std::to_string(overlap));
  const int64_t latent = sample / f;
  // Both strides (diffusers' overlap_size) must be ≥ 1 or the tile loops would not advance.
  if (static_cast<int64_t>(latent * (1 - overlap)) < 1 || static_cast<int64_t>(sample * (1 - overlap)) < 1)
    fail(codes::kInvalidArgument, "vae tiling: tile size " + std::to_string(sample) + " with overlap " +
                                      std::to_string(overlap) + " leaves no stride between tiles");
  tiling_ = on;
  tileSampleMinSize_ = sample;
  tileLatentMinSize_ = latent;
  tileOverlapFactor_ = overlap;
}

at::Tensor AutoencoderKL::prepareInput(const at::Tensor& x, int64_t channels, const char* what) const {
  if (!x.defined() || x.dim() != 4)
    fail(codes::kInvalidArgument, std::string("vae: ") + what + " must be a 4-d tensor [batch, " +
                                      std::to_string(channels) + ", height, width], got " +
                                      (x.defined() ? nn::shapeString(x.sizes()) : std::string("nothing")));
  if (x.size(1) != channels)
    fail(codes::kInvalidArgument, std::string("vae: ") + what + " must have " + std::to_string(channels) +
                                      " channels, got shape " + nn::shapeString(x.sizes()));
  if (x.size(0) == 0 || x.size(2) == 0 || x.size(3) == 0)
    fail(codes::kInvalidArgument, std::string("vae: ") + what + " is empty: " + nn::shapeString(x.sizes()));
  if (!at::isFloatingType(x.scalar_type()))
    fail(codes::kInvalidArgument, std::string("vae: ") + what + " must be a floating-point tensor");
  return x.to(device_, dtype_);
}

at::Tensor AutoencoderKL::encodeMoments(const at::Tensor& x) const {
  at::Tensor h;
  if (slicing_ && x.size(0) > 1) {
    std::vector<at::Tensor> slices;
    for (const at::Tensor& xs : x.split(1)) slices.push_back(encoder_(xs, *attention_));  // [1, 2·latent, h, w]
    h = at::cat(slices);
  } else {
    h = encoder_(x, *attention_);  // [B, 2·latent, h, w]
  }
  return config_.useQuantConv ? quantConv_(h) : h;
}

at::Tensor AutoencoderKL::tiledEncode(const at::Tensor& x) const {
  const int64_t overlapSize = static_cast<int64_t>(tileSampleMinSize_ * (1 - tileOverlapFactor_));
  const int64_t blendExtent = static_cast<int64_t>(tileLatentMinSize_ * tileOverlapFactor_);
  const int64_t rowLimit = tileLatentMinSize_ - blendExtent;
  return tiledApply(x, tileSampleMinSize_, overlapSize, blendExtent, rowLimit, [&](const at::Tensor& tile) {
    at::Tensor h = encoder_(tile, *attention_);       // [B, 2·latent, t/f, t/f]
    return config_.useQuantConv ? quantConv_(h) : h;
  });
}

DiagonalGaussian AutoencoderKL::encode(const at::Tensor& image) const {
  at::NoGradGuard noGrad;
  at::Tensor x = prepareInput(image, config_.inChannels, "image");  // [B, in, H, W]
  const bool tile = tiling_ && (x.size(3) > tileSampleMinSize_ || x.size(2) > tileSampleMinSize_);
  DiagonalGaussian d;
  d.moments = tile ? tiledEncode(x) : encodeMoments(x);  // [B, 2·latent, H/f, W/f]
  auto parts = d.moments.chunk(2, 1);
  d.mean = parts[0];                                      // [B, latent, h, w]
  d.logvar = at::clamp(parts[1], -30.0, 20.0);
  d.std = at::exp(0.5 * d.logvar);
  return d;
}

at::Tensor AutoencoderKL::tiledDecode(const at::Tensor& z) const {
  const int64_t overlapSize = static_cast<int64_t>(tileLatentMinSize_ * (1 - tileOverlapFactor_));
  const int64_t blendExtent = static_cast<int64_t>(tileSampleMinSize_ * tileOverlapFactor_);
  const int64_t rowLimit = tileSampleMinSize_ - blendExtent;
  return tiledApply(z, tileLatentMinSize_, overlapSize, blendExtent, rowLimit, [&](const at::Tensor& tile) {
    at::Tensor t = config_.usePostQuantConv ? postQuantConv_(tile) : tile;
    return decoder_(t, *attention_);                  // [B, out, t·f, t·f]
  });
}

at::Tensor AutoencoderKL::decodeOne(const at::Tensor& z) const {
  if (tiling_ && (z.size(3) > tileLatentMinSize_ || z.size(2) > tileLatentMinSize_)) return tiledDecode(z);
  at::Tensor h = config_.usePostQuantConv ? postQuantConv_(z) : z;  // [B, latent, h, w]
  return decoder_(h, *attention_);                                   // [B, out, h·f, w·f]
}

at::Tensor AutoencoderKL::decode(const at::Tensor& latents) const {
  at::NoGradGuard noGrad;
  at::Tensor z = prepareInput(latents, config_.latentChannels, "latents");  // [B, latent, h, w]
  if (slicing_ && z.size(0) > 1) {
    std::vector<at::Tensor> slices;
    for (const at::Tensor& zs : z.split(1)) slices.push_back(decodeOne(zs));  // [1, out, H, W]
    return at::cat(slices);
  }
  return decodeOne(z);  // [B, out, h·f, w·f]
}

}  // namespace sd::models
