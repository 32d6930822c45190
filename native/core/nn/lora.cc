// peft v0.12.0 tuners/lora/layer.py (LoraLayer.get_delta_weight / merge / unmerge) under diffusers
// v0.30.3 fuse_lora / unfuse_lora / delete_adapters: the layer mechanics. Reading LoRA files and
// matching their keys to modules is loaders/lora.cc.
#include "nn/lora.h"

#include <algorithm>

#include "util/error.h"

namespace sd::nn {

namespace {
bool isComputeFloat(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble; }
}  // namespace

at::Tensor loraDeltaWeight(const LoraSlot& slot, const LoraDelta& d, double factor) {
  at::Tensor down = d.down.to(at::kFloat), up = d.up.to(at::kFloat);
  at::Tensor delta;
  if (slot.kernel == 0) {
    delta = at::matmul(up, down);  // [out, in]
  } else if (slot.kernel == 1) {
    delta = at::matmul(up.squeeze(3).squeeze(2), down.squeeze(3).squeeze(2)).unsqueeze(2).unsqueeze(3);  // [out, in, 1, 1]
  } else {
    delta = at::conv2d(down.permute({1, 0, 2, 3}), up).permute({1, 0, 2, 3});  // [out, in, k, k]
  }
  return delta * factor;
}

int64_t fuseLora(Weights& store, double scale) {
  int64_t n = 0;
  for (auto& [name, slot] : store.loraSlots()) {
    if (slot->fused || slot->deltas.empty()) continue;
    bool any = false;
    for (const LoraDelta& d : slot->deltas) any = any || d.active;
    if (!any) continue;
    at::Tensor& w = store.tensors().at(name + ".weight");
    if (!isComputeFloat(w.scalar_type()))
      fail(codes::kUnsupportedModel, store.component() + ": cannot fuse a LoRA into \"" + name + ".weight\" stored as " +
                                         std::string(c10::toString(w.scalar_type())) + "; use the unfused LoRA");
    slot->original = w;  // never written to: the fused weight is a new tensor
    at::Tensor fused = w;
    for (const LoraDelta& d : slot->deltas) {
      if (!d.active) continue;
      // PEFT merge: base_layer.weight.data += delta_weight, one adapter after another
      fused = fused + loraDeltaWeight(*slot, d, d.scaling() * scale).to(fused.device(), fused.scalar_type());
    }
    w = fused;
    slot->fused = true;
    ++n;
  }
  return n;
}

int64_t unfuseLora(Weights& store) {
  int64_t n = 0;
  for (auto& [name, slot] : store.loraSlots()) {
    if (!slot->fused) continue;
    store.tensors().at(name + ".weight") = slot->original;
    slot->original = at::Tensor();
    slot->fused = false;
    ++n;
  }
  return n;
}

void removeLora(Weights& store, const std::string& adapter) {
  unfuseLora(store);
  for (auto& [name, slot] : store.loraSlots()) {
    auto& v = slot->deltas;
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const LoraDelta& d) { return adapter.empty() || d.adapter == adapter; }),
            v.end());
  }
}

bool anyLoraFused(Weights& store) {
  for (auto& [name, slot] : store.loraSlots())
    if (slot->fused) return true;
  return false;
}

}  // namespace sd::nn
