// Version guards for APIs that differ between libtorch 1.13 (Debian, CI) and 2.x (CUDA machines).
#pragma once

#include <torch/version.h>

#define SD_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// at::scaled_dot_product_attention (flash / memory-efficient kernels on CUDA): libtorch >= 2.0.
#if SD_TORCH_AT_LEAST(2, 0)
#define SD_HAVE_SDPA 1
#endif

// at::kFloat8_e4m3fn / at::kFloat8_e5m2: libtorch >= 2.1.
#if SD_TORCH_AT_LEAST(2, 1)
#define SD_HAVE_FLOAT8 1
#endif
