// The peak-memory estimate of a call and the guard the generate() calls run (memory_guard.h).
// The model: the phases (denoising step, VAE decode, VAE encode) run one after the other, so the
// peak is the largest phase; a phase holds what stays alive across it (the UNet's skip tensors,
// ControlNet residuals) plus the working set of its widest resolution (kUnetWorkFactor /
// kVaeWorkFactor tensors of the widest activation there: a resnet's input, norm, activation and
// conv outputs, oneDNN's blocked-layout copies) plus its attention (q, k, v, output and the scores the chosen kernel holds).
#include "pipelines/memory_guard.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "models/autoencoder_kl.h"
#include "models/autoencoder_tiny.h"
#include "models/unet_2d_condition.h"
#include "pipelines/pipeline_base.h"
#include "pipelines/stable_diffusion.h"
#include "runtime/cpu_caching_allocator.h"
#include "runtime/memory.h"
#include "util/error.h"

namespace sd::pipelines {

namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Attention of `rows` images over N queries and M keys of `channels` in `heads` heads: q, k, v,
// their head-split copies and the output (6 tensors of rows·N·channels, keys counted at M), plus
// the scores the kernel holds.
double attentionBytes(const nn::AttentionOptions& options, at::Device device, at::ScalarType dtype, int64_t rows,
                      int64_t heads, int64_t n, int64_t m, int64_t channels, nn::Upcast upcast) {
  const double es = static_cast<double>(c10::elementSize(dtype));
  const double tensors = es * static_cast<double>(rows) * static_cast<double>(channels) *
                         (4.0 * static_cast<double>(n) + 2.0 * static_cast<double>(m));
  const int64_t h = std::max<int64_t>(1, heads);
  return tensors + nn::attentionScoreBytes(options, device, dtype, rows, h, n, m, channels / h, upcast);
}

}  // namespace

double estimateVaeDecodeMemory(const MemoryCallShape& shape, at::Device device, const nn::AttentionOptions& attention,
                               const MemoryVaeShape& vae) {
  const double es = static_cast<double>(c10::elementSize(vae.dtype));
  const int64_t f = std::max<int64_t>(1, vae.scaleFactor);
  const int64_t rows = vae.slicing ? 1 : shape.batch;
  int64_t h0 = ceilDiv(shape.height, f), w0 = ceilDiv(shape.width, f);  // latent pixels decoded at once
  const bool tiled = vae.kl && vae.tiling && (h0 > vae.tileLatent || w0 > vae.tileLatent);
  if (tiled) h0 = w0 = vae.tileLatent;
  double work = 0, attn = 0;
  if (vae.kl) {
    // Decoder: mid block at the latent size with the widest channels, then up blocks in reversed
    // block_out_channels order, each level 2× the previous; a level holds the upsampled input of
    // the previous level's width and its own.
    std::vector<int64_t> ch(vae.kl->blockOutChannels.rbegin(), vae.kl->blockOutChannels.rend());
    for (size_t j = 0; j < ch.size(); ++j) {
      const double area = static_cast<double>(h0 << j) * static_cast<double>(w0 << j);
      const int64_t width = std::max(ch[j], j > 0 ? ch[j - 1] : ch[j]);
      work = std::max(work, kVaeWorkFactor * es * static_cast<double>(rows) * static_cast<double>(width) * area);
    }
    if (vae.kl->midBlockAddAttention)
      attn = attentionBytes(attention, device, vae.dtype, rows, 1, h0 * w0, h0 * w0, ch.front(), nn::Upcast::kSoftmax);
  } else {
    const double area = static_cast<double>(shape.height) * static_cast<double>(shape.width);
    work = kVaeWorkFactor * es * static_cast<double>(rows) * static_cast<double>(vae.tinyChannels) * area;
  }
  // the decoded batch: in the VAE dtype, as float32, contiguous, and the uint8 images
  const double image = static_cast<double>(shape.batch) * 3.0 * static_cast<double>(shape.height) *
                       static_cast<double>(shape.width) * (es + 4.0 + 4.0 + 1.0);
  // tiles: every decoded tile is kept until blended (overlap: (1 / (1 − overlap))² of the image)
  const double tiles = tiled ? image / std::pow(1.0 - vae.tileOverlap, 2.0) : 0.0;
  return std::max(work, attn + 2.0 * work / kVaeWorkFactor) + image + tiles;
}

MemoryEstimate estimateCallMemory(const models::UNet2DConditionConfig& unet, const MemoryCallShape& shape,
                                  at::ScalarType dtype, at::Device device, const nn::AttentionOptions& attention,
                                  const MemoryVaeShape& vae) {
  MemoryEstimate e;
  const double es = static_cast<double>(c10::elementSize(dtype));
  const int64_t f = std::max<int64_t>(1, vae.scaleFactor);
  const int64_t rows = shape.batch * (shape.cfg ? 2 : 1);
  const int64_t h0 = ceilDiv(shape.height, f), w0 = ceilDiv(shape.width, f);
  const auto& ch = unet.blockOutChannels;
  const size_t levels = ch.size();
  auto area = [&](size_t i) {
    return static_cast<double>(ceilDiv(h0, int64_t{1} << i)) * static_cast<double>(ceilDiv(w0, int64_t{1} << i));
  };
  auto act = [&](int64_t channels, size_t i) {  // one activation tensor of the whole CFG batch
    return es * static_cast<double>(rows) * static_cast<double>(channels) * area(i);
  };
  // skips kept for the up path: conv_in, every resnet(+attn) output, every downsampler output
  double skips = levels > 0 ? act(ch[0], 0) : 0;
  double work = 0, attn = 0;
  for (size_t i = 0; i < levels; ++i) {
    const int64_t layers = i < unet.layersPerBlock.size() ? unet.layersPerBlock[i] : 2;
    skips += static_cast<double>(layers) * act(ch[i], i);
    if (i + 1 < levels) skips += act(ch[i], i + 1);
    // up blocks: a resnet's input is its level's width concatenated with a skip (≤ 2× the width)
    work = std::max(work, kUnetWorkFactor * act(2 * ch[i], i));
    const bool crossAttn = i < unet.downBlockTypes.size() && unet.downBlockTypes[i].rfind("CrossAttn", 0) == 0;
    const bool midAttn = i + 1 == levels && !unet.midBlockType.empty() && unet.midBlockType.find("CrossAttn") != std::string::npos;
    if (crossAttn || midAttn) {
      const int64_t heads = i < unet.numAttentionHeads.size() ? unet.numAttentionHeads[i] : 8;
      const int64_t n = static_cast<int64_t>(area(i));
      const nn::Upcast up = unet.upcastAttention ? nn::Upcast::kAttention : nn::Upcast::kNone;
      const double self = attentionBytes(attention, device, dtype, rows, heads, n, n, ch[i], up);
      const double cross = attentionBytes(attention, device, dtype, rows, heads, n, shape.textTokens, ch[i], up);
      // the transformer block's hidden states (input, norm, residual) stay alive around it
      attn = std::max(attn, std::max(self, cross) + 3.0 * act(ch[i], i));
    }
  }
  // ControlNets: each holds a copy of the down path's outputs (its residuals) while the UNet runs
  const double control = static_cast<double>(shape.controlNets) * skips;
  // oneDNN reorders a convolution's weight into its blocked layout at every call: a copy of the
  // largest kernel (an up block's first 3×3 conv: widest channels × twice them, concatenated skip)
  const double weightCopy = levels > 0 ? 9.0 * es * 2.0 * static_cast<double>(ch.back()) * static_cast<double>(ch.back()) : 0;
  e.unet = skips + control + std::max(work, attn) + weightCopy;
  e.vaeDecode = estimateVaeDecodeMemory(shape, device, attention, vae);
  if (shape.encodesImage) {
    MemoryCallShape one = shape;
    one.batch = 1;  // the init image is encoded once (the encoder mirrors the decoder's sizes)
    MemoryVaeShape v = vae;
    v.slicing = true;
    e.vaeEncode = estimateVaeDecodeMemory(one, device, attention, v);
  }
  e.peak = std::max({e.unet, e.vaeDecode, e.vaeEncode}) * kSafetyFactor + kOverheadBytes;
  return e;
}

// ---- the guard (PipelineBase) ----------------------------------------------------------------

namespace {

std::string gib(double bytes) { return runtime::formatBytes(bytes); }

}  // namespace

void PipelineBase::guardMemory(const MemoryCallShape& shape, GenerateResult& result) {
  if (!device_.is_cpu()) return;  // host memory only (see memory_guard.h)
  const runtime::AvailableMemory available = runtime::availableMemory(applied_.memoryLimit);
  MemoryVaeShape vae;
  if (tinyVae_) {
    vae.kl = nullptr;
    vae.scaleFactor = tinyVae_->vaeScaleFactor();
  } else {
    vae.kl = &vae_->config();
    vae.scaleFactor = vae_->vaeScaleFactor();
    vae.slicing = vae_->slicing();
    vae.tiling = vae_->tiling();
    vae.tileLatent = vae_->tileLatentMinSize();
    vae.tileOverlap = vae_->tileOverlapFactor();
  }
  vae.dtype = vaeDtype_;
  const nn::AttentionOptions& attention = applied_.attention;
  // Automatic VAE slicing (diffusers enable_vae_slicing): a batch whose decode would pass the
  // attention budget decodes one image at a time — the same images at the peak of one.
  if (!tinyVae_ && shape.batch > 1 && !vae.slicing && attention.budgetBytes > 0 &&
      estimateVaeDecodeMemory(shape, device_, attention, vae) > static_cast<double>(attention.budgetBytes)) {
    vae_->setSlicing(true);  // applyOptimizations sets the user's choice again at the next call
    vae.slicing = true;
  }
  MemoryEstimate e = estimateCallMemory(unet_->config(), shape, dtype_, device_, attention, vae);
  // the caching CPU allocator may keep freed buffers only within the headroom the call leaves
  const auto cacheBudget = [&](double peak) {
    runtime::setCpuCacheBudget(available.bytes < 0 ? -1 : std::max<int64_t>(0, available.bytes - static_cast<int64_t>(peak)));
  };
  cacheBudget(e.peak);
  if (available.bytes < 0 || e.peak <= static_cast<double>(available.bytes)) return;
  // Automatic VAE tiling changes the image (tiles see their own GroupNorm statistics), so only when
  // the untiled decode is what does not fit and tiling makes the call fit (the caller warns once).
  if (!tinyVae_ && !vae.tiling) {
    MemoryVaeShape tiled = vae;
    tiled.tiling = true;
    const MemoryEstimate t = estimateCallMemory(unet_->config(), shape, dtype_, device_, attention, tiled);
    if (t.peak <= static_cast<double>(available.bytes) && t.peak < e.peak) {
      vae_->setTiling(true);
      result.vaeAutoTiling = true;
      cacheBudget(t.peak);
      return;
    }
  }
  const bool decodeBound = e.vaeDecode >= e.unet;
  fail(codes::kOutOfMemory,
       "this call needs an estimated " + gib(e.peak) + " of memory (denoising step " + gib(e.unet) + ", VAE decode " +
           gib(e.vaeDecode) + (shape.encodesImage ? ", VAE encode " + gib(e.vaeEncode) : std::string()) + ", × " +
           std::to_string(kSafetyFactor).substr(0, 4) + " margin) for " + std::to_string(shape.batch) + " image(s) of " +
           std::to_string(shape.width) + "x" + std::to_string(shape.height) + ", but only " + gib(static_cast<double>(available.bytes)) +
           " is available (" + available.source + "). Use a smaller width/height or batch" +
           (decodeBound ? (shape.batch > 1 ? ", enableVaeTiling()/enableVaeSlicing()" : ", enableVaeTiling()") : "") +
           (e.unet > e.vaeDecode ? ", enableAttentionSlicing()" : "") +
           ", or raise the limit (SD_NATIVE_MEMORY_LIMIT / the pipeline's memoryLimit)");
}

}  // namespace sd::pipelines
