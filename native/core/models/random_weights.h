// Random weights for any supported model component, built from its config.json, so demos,
// tests and benchmarks can run full-size model shapes where real weights cannot be downloaded.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "nn/weights.h"

namespace sd::models {

/// Instantiates `component` ("unet" | "vae" | "text_encoder") from `configPath` with every
/// weight drawn by nn::RandomInitScope(seed) (norm scales 1, biases 0, matrices N(0, 1/fan_in)),
/// in `dtype`. Returns the weights by diffusers name. Errors: those of the config reader and
/// E_INVALID_ARGUMENT for an unknown component.
nn::StateDict createRandomWeights(const std::string& component, const std::string& configPath, uint64_t seed,
                                  at::ScalarType dtype);

}  // namespace sd::models
