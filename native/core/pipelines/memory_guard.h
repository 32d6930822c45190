// Issue 19, item 4: a pipeline call's peak extra host memory, estimated from its shapes before it
// runs, so that a call that cannot fit is refused with E_OUT_OF_MEMORY instead of the process being
// killed by the kernel's OOM killer; and the automatic VAE bounds (slicing a batch's decode, tiling
// only when the untiled decode would be refused). PipelineBase::guardMemory (memory_guard.cc) is
// what the generate() calls run; estimateCallMemory is the model of the peak, calibrated against
// measured peak RSS growth (docs/RELIABILITY.md, "Peak-memory estimate").
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "nn/attention.h"

namespace sd::models {
struct UNet2DConditionConfig;
struct AutoencoderKLConfig;
}  // namespace sd::models

namespace sd::pipelines {

/// The shapes of one call, as the estimate needs them.
struct MemoryCallShape {
  int64_t batch = 1;         // images (numPrompts · numImagesPerPrompt)
  bool cfg = false;          // classifier-free guidance: the UNet runs on 2·batch rows
  int64_t height = 0;        // image pixels
  int64_t width = 0;
  int64_t textTokens = 77;   // keys of the cross-attention (77·k with long/weighted prompts)
  bool encodesImage = false; // img2img / inpaint: a VAE encode of one image at full size
  int64_t controlNets = 0;   // ControlNets run each step (their residuals are held with the UNet's skips)
};

/// How the VAE decodes (the toggles in effect for the call).
struct MemoryVaeShape {
  const models::AutoencoderKLConfig* kl = nullptr;  // nullptr: an AutoencoderTiny (TAESD) decodes
  int64_t scaleFactor = 8;                          // pixels per latent pixel
  int64_t tinyChannels = 64;                        // TAESD's decoder width
  at::ScalarType dtype = at::kFloat;
  bool slicing = false;                             // one image at a time
  bool tiling = false;                              // tiles of tileLatent latent pixels (decodes larger than one)
  int64_t tileLatent = 64;
  double tileOverlap = 0.25;
};

/// Bytes, by phase (the phases run one after the other: the peak is their max).
struct MemoryEstimate {
  double unet = 0;       // one denoising step (UNet + ControlNets), incl. attention workspaces
  double vaeDecode = 0;  // the decode, incl. its mid-block attention and the image conversion
  double vaeEncode = 0;  // img2img / inpaint: the encode of the init image
  double peak = 0;       // max of the phases · kSafetyFactor + kOverheadBytes
};

/// Calibration (docs/RELIABILITY.md): the activation memory at one resolution, in units of the
/// widest activation tensor there (a resnet's input, norm and activation outputs, conv outputs,
/// oneDNN's blocked-layout copies), fitted to bound the peak RSS growth measured on the tiny
/// fixtures (128²–384², batch 1–2) and a full-size SD 1.5 at 256² (libtorch 1.13, CPU, float32).
/// The UNet's level holds a concatenated skip, counted in its width (2× the level's channels).
inline constexpr double kUnetWorkFactor = 13.0;
inline constexpr double kVaeWorkFactor = 8.0;
/// Margin on the modelled peak (allocator fragmentation, oneDNN scratch, what the model omits).
inline constexpr double kSafetyFactor = 1.25;
/// Fixed extra per call (thread-local buffers, scheduler state, small tensors).
inline constexpr double kOverheadBytes = 64.0 * 1024 * 1024;

/// The peak extra host memory of a call of `shape` on a pipeline whose UNet has config `unet`,
/// computing in `dtype` on `device` with attention `attention` (the kernel nn::chooseAttentionKernel
/// picks per layer: the math and sliced kernels hold batch·heads·N·M scores — bounded by
/// attention.budgetBytes, query-chunked past it —, flash and SDPA hold no N×N), and a VAE
/// decoding as `vae` describes. Pure: reads no global state.
MemoryEstimate estimateCallMemory(const models::UNet2DConditionConfig& unet, const MemoryCallShape& shape,
                                  at::ScalarType dtype, at::Device device, const nn::AttentionOptions& attention,
                                  const MemoryVaeShape& vae);

/// The VAE decode alone (part of estimateCallMemory), in bytes.
double estimateVaeDecodeMemory(const MemoryCallShape& shape, at::Device device, const nn::AttentionOptions& attention,
                               const MemoryVaeShape& vae);

}  // namespace sd::pipelines
