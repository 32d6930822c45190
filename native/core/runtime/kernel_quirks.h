// libtorch CPU kernels that give wrong results in reduced precision on some builds, detected once
// per process and dtype by running them on a small input against float32, so the models can route
// around exactly those cases (and nothing changes where the kernels are right).
//
// Found so far (buildInfo().cpuKernelQuirks lists those present; test/unet.test.ts logs them):
// - conv2dNarrowOutput: Debian's libtorch 2.6 (oneDNN 3) on AVX512-BF16 CPUs computes bfloat16
//   conv2d with a kernel larger than 1×1 and an output-channel count that is not a multiple of
//   16 (e.g. the UNet's and VAE's conv_out: 4 and 3 channels) with a 25–48 % relative error;
//   channels-last inputs, 1×1 kernels and multiples of 16 are right.
// - groupNormChannelsLast: Debian's libtorch 1.13 computes bfloat16 group_norm on a channels-last
//   input with a 10–55 % relative error; contiguous inputs are right.
#pragma once

#include <ATen/ATen.h>

namespace sd::runtime {

struct CpuKernelQuirks {
  /// conv2d with kernel > 1×1 and out_channels % 16 != 0 is wrong in this dtype on the CPU.
  bool conv2dNarrowOutput = false;
  /// group_norm of a channels-last input is wrong in this dtype on the CPU.
  bool groupNormChannelsLast = false;
};

/// The quirks of this libtorch's CPU kernels for `dtype` (all false for float32/float64 and for
/// other dtypes nothing is probed). Probed on first use (a few small ops, < 10 ms), then cached;
/// thread-safe. A probe "fails" when its relative error against float32 exceeds 2⁻⁴ (16 unit
/// round-offs of bfloat16; a correct kernel stays near 2⁻⁸).
const CpuKernelQuirks& cpuKernelQuirks(at::ScalarType dtype);

}  // namespace sd::runtime
