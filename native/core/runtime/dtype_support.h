// Which compute dtypes this libtorch can run on a device, probed once per (device type, dtype):
// builds differ in their kernels (Debian's libtorch 1.13 has no float16 conv2d/addmm on CPU).
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace sd::runtime {

/// Runs every op the models use (embedding, conv2d, group_norm, silu, upsample_nearest2d,
/// layer_norm, linear, gelu, sigmoid, baddbmm, softmax, bmm) once on a tiny input in `dtype` on
/// `device`; the verdict is cached. `what` names the caller in messages.
/// @throws SdException E_INVALID_ARGUMENT for a non-floating dtype, E_DEVICE_UNAVAILABLE for CUDA
///   without CUDA, E_UNSUPPORTED_MODEL naming the op that has no kernel (e.g. float16 on CPU).
void checkDtypeSupported(at::Device device, at::ScalarType dtype, const std::string& what);

/// "float32" | "float16" | "bfloat16" | "float64" | libtorch's name.
std::string dtypeName(at::ScalarType dtype);

}  // namespace sd::runtime
