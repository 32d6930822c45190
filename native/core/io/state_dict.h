// A model's tensors by parameter name (PyTorch's state_dict()), as the readers in io/ return them
// and nn::Weights holds them. Lives in io/ so that io never includes nn/ (nn::StateDict is an alias).
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>

namespace sd::io {

/// Parameter name (diffusers / transformers, e.g. "down_blocks.0.resnets.0.conv1.weight") → tensor,
/// sorted by name. Tensors keep the dtype and device they were read or made with (mmapped CPU views
/// for files read by io::loadComponentWeights).
using StateDict = std::map<std::string, at::Tensor>;

}  // namespace sd::io
