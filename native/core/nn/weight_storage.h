// How a Weights store keeps its tensors: 8-bit float storage decoded layer by layer (the
// AUTOMATIC1111 "fp8 weight" approach, modules/devices.py manual_cast / sd_models.py
// `fp8_storage`), channels-last memory format (torch `model.to(memory_format=torch.channels_last)`)
// and pinned host memory for CPU offload (accelerate's cpu_offload hooks, diffusers
// enable_model_cpu_offload / enable_sequential_cpu_offload).
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "nn/weights.h"

namespace sd::nn {

/// Storage dtypes of 8-bit weights. Where libtorch has float8 dtypes (>= 2.1) they are
/// at::kFloat8_e4m3fn / at::kFloat8_e5m2; elsewhere the raw OCP FP8 codes are kept as
/// at::kByte (e4m3fn) or at::kChar (e5m2), the integer dtype naming the format.
at::ScalarType fp8StorageDtype(const std::string& format);

/// True when `w` holds 8-bit float codes (one of the dtypes of fp8StorageDtype).
bool isFp8Storage(const at::Tensor& w);

/// Decodes 8-bit weight storage to `dtype` on `device` (bytes move first, then decode).
/// libtorch >= 2.1: libtorch's own float8 → dtype cast; older: io::decodeFp8's 256-entry table
/// (both give the same values for all 256 codes: test/optimizations.test.ts).
at::Tensor decodeFp8Storage(const at::Tensor& w, at::Device device, at::ScalarType dtype);

/// Encodes any float tensor to 8-bit storage (dtype fp8StorageDtype(format), same shape and
/// device): round to nearest, ties to even, saturating at the largest finite value (±448 for
/// e4m3fn, ±57344 for e5m2), NaN stays NaN. libtorch >= 2.1: clamp, then libtorch's float8 cast
/// (which alone would turn |x| ≥ 480 into NaN for e4m3fn and |x| ≥ 61440 into inf for e5m2);
/// older: io::encodeFp8. The codes are the same either way (exhaustive test over every code,
/// midpoint and ±1 ulp neighbour). E_INVALID_ARGUMENT for another format.
at::Tensor encodeFp8Storage(const at::Tensor& values, const std::string& format);

/// Rounds every floating weight with at least 2 dimensions (Linear and Conv kernels; norms,
/// biases and other 1-d parameters stay) to 8-bit floats, round-to-nearest-even, saturating
/// for e4m3fn (max 448). format: "e4m3fn" | "e5m2" (E_INVALID_ARGUMENT otherwise).
/// Returns the number of tensors converted. The float values are not kept.
int64_t storeFp8(Weights& weights, const std::string& format);

/// Names of the tensors that storeFp8 converted (those in fp8 storage now).
std::vector<std::string> fp8StoredNames(const Weights& weights);

/// Lays every 4-d tensor out in `format` (at::MemoryFormat::ChannelsLast or Contiguous).
void setMemoryFormat(Weights& weights, at::MemoryFormat format);

/// Moves every tensor to the CPU in page-locked memory (when CUDA is available; plain CPU
/// memory otherwise), so host→device copies can be asynchronous.
void offloadToPinnedCpu(Weights& weights);

/// Moves every tensor to `device` keeping its dtype (8-bit storage stays 8-bit).
void moveTo(Weights& weights, at::Device device);

}  // namespace sd::nn
