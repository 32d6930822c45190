// LoRA layer mechanics on the Linear and Conv2d layers of a Weights store, as PEFT 0.12 LoraLayer
// does (peft/tuners/lora/layer.py) under diffusers 0.30.3's fuse_lora / unfuse_lora: the delta
// weight, fusing, unfusing and removal. The adapters themselves (LoraSlot / LoraDelta) live in
// nn/weights.h; reading LoRA files and attaching them to slots is loaders/lora.h.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "nn/weights.h"

namespace sd::nn {

/// PEFT get_delta_weight: (up @ down) · factor in the shape of the layer's weight (float32 when
/// the weight is float32; computed in float32 and returned so otherwise). Linear [out, in],
/// Conv2d 1×1 via matmul, k×k as conv2d(down.permute(1,0,2,3), up).permute(1,0,2,3).
at::Tensor loraDeltaWeight(const LoraSlot& slot, const LoraDelta& delta, double factor);

/// Merges every active adapter of every slot into the weights: W += delta(scaling · scale),
/// keeping a copy of the base weight for unfuse. Slots already fused are left alone.
/// Returns the number of layers fused.
int64_t fuseLora(Weights& store, double scale);
/// Restores the saved base weights of fused slots (bit-exact). Returns the number of layers restored.
int64_t unfuseLora(Weights& store);
/// Removes the adapters named `adapter` (all when empty) from every slot, unfusing first.
void removeLora(Weights& store, const std::string& adapter);
/// Whether any slot of the store is fused.
bool anyLoraFused(Weights& store);

}  // namespace sd::nn
