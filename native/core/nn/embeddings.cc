// diffusers models/embeddings.py: get_timestep_embedding, Timesteps, TimestepEmbedding.
#include "nn/embeddings.h"

#include <cmath>

#include "util/error.h"

namespace sd::nn {

at::Tensor getTimestepEmbedding(const at::Tensor& timesteps, int64_t dim, bool flipSinToCos,
                                double downscaleFreqShift, double scale, int64_t maxPeriod) {
  if (timesteps.dim() != 1)
    fail(codes::kInvalidArgument, "get_timestep_embedding: timesteps must be 1-D, got shape " +
                                      shapeString(timesteps.sizes()));
  // The same float32 ops in the same order as diffusers, so the features match bit for bit.
  const int64_t half = dim / 2;
  at::Tensor exponent = at::arange(0, half, timesteps.options().dtype(at::kFloat));  // [half]
  exponent = at::mul(exponent, -std::log(static_cast<double>(maxPeriod)));
  exponent = at::div(exponent, static_cast<double>(half) - downscaleFreqShift);
  at::Tensor freqs = at::exp(exponent);                                               // [half]
  at::Tensor emb = timesteps.unsqueeze(1).to(at::kFloat) * freqs.unsqueeze(0);        // [N, half]
  emb = at::mul(emb, scale);
  emb = at::cat({at::sin(emb), at::cos(emb)}, -1);                                    // [N, 2·half]
  if (flipSinToCos) emb = at::cat({emb.slice(1, half), emb.slice(1, 0, half)}, -1);  // [cos | sin]
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0}, 0);                  // [N, dim]
  return emb;
}

TimestepEmbedding::TimestepEmbedding(const Scope& s, int64_t inChannels, int64_t timeEmbedDim, std::string act_,
                                     std::string postAct_)
    : linear1(s.sub("linear_1"), inChannels, timeEmbedDim),
      linear2(s.sub("linear_2"), timeEmbedDim, timeEmbedDim),
      act(std::move(act_)),
      postAct(std::move(postAct_)) {}

at::Tensor TimestepEmbedding::operator()(const at::Tensor& x) const {
  at::Tensor h = activation(act, linear1(x));  // [N, timeEmbedDim]
  h = linear2(h);                              // [N, timeEmbedDim]
  if (!postAct.empty()) h = activation(postAct, h);
  return h;
}

}  // namespace sd::nn
