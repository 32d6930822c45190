// Random weights for any supported model component, built from its config.json, so demos,
// tests and benchmarks can run full-size model shapes where real weights cannot be downloaded.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "nn/weights.h"

namespace sd::models {

/// Instantiates `component` ("unet" | "vae" | "text_encoder") from `configPath` with every
/// weight drawn by nn::RandomInitScope(seed) (norm scales 1, biases 0, matrices N(0, 1/fan_in)),
/// in `dtype`, drawn and held on `device` (a CUDA device draws with its own generator: the
/// values differ from the CPU's, which stay those of torch.manual_seed(seed)). Returns the weights
/// by diffusers name. Errors: those of the config reader, E_INVALID_ARGUMENT for an unknown
/// component, E_DEVICE_UNAVAILABLE for a CUDA device in a build or machine without CUDA.
nn::StateDict createRandomWeights(const std::string& component, const std::string& configPath, uint64_t seed,
                                  at::ScalarType dtype, at::Device device = at::Device(at::kCPU));

}  // namespace sd::models
