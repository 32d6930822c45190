// diffusers models/embeddings.py: get_timestep_embedding, Timesteps, TimestepEmbedding — the
// sinusoidal timestep features and the MLP that turns them into the UNet's time embedding.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "nn/layers.h"

namespace sd::nn {

/// diffusers get_timestep_embedding (DDPM sinusoidal features), computed in float32 exactly as
/// diffusers does: freq_i = exp(-ln(maxPeriod)·i / (half − downscaleFreqShift)), i < half = dim/2;
/// emb = [sin(t·freq) | cos(t·freq)], swapped to [cos | sin] when `flipSinToCos`; a zero column is
/// appended when `dim` is odd.
/// timesteps: [N] of any real or integer dtype (cast to float32) → [N, dim] float32.
/// Throws E_INVALID_ARGUMENT when `timesteps` is not 1-D.
at::Tensor getTimestepEmbedding(const at::Tensor& timesteps, int64_t dim, bool flipSinToCos,
                                double downscaleFreqShift, double scale = 1.0, int64_t maxPeriod = 10000);

/// diffusers Timesteps: getTimestepEmbedding with fixed settings; no weights.
struct Timesteps {
  int64_t numChannels = 0;
  bool flipSinToCos = true;
  double downscaleFreqShift = 0;
  Timesteps() = default;
  Timesteps(int64_t numChannels_, bool flipSinToCos_, double downscaleFreqShift_)
      : numChannels(numChannels_), flipSinToCos(flipSinToCos_), downscaleFreqShift(downscaleFreqShift_) {}
  /// timesteps [N] → [N, numChannels] float32.
  at::Tensor operator()(const at::Tensor& timesteps) const {
    return getTimestepEmbedding(timesteps, numChannels, flipSinToCos, downscaleFreqShift);
  }
};

/// diffusers TimestepEmbedding (no cond_proj): linear_1 → act → linear_2 [→ post_act].
/// Weights: linear_1 [timeEmbedDim, inChannels] (+bias), linear_2 [timeEmbedDim, timeEmbedDim] (+bias).
/// x [N, inChannels] → [N, timeEmbedDim]. `act`/`postAct` are Hugging Face activation names
/// (see nn::activation); an empty `postAct` means none.
struct TimestepEmbedding {
  Linear linear1, linear2;
  std::string act = "silu";
  std::string postAct;
  TimestepEmbedding() = default;
  TimestepEmbedding(const Scope& s, int64_t inChannels, int64_t timeEmbedDim, std::string act = "silu",
                    std::string postAct = "");
  at::Tensor operator()(const at::Tensor& x) const;
};

}  // namespace sd::nn
