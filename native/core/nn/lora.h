// LoRA files (kohya-ss / AUTOMATIC1111 and diffusers / PEFT layouts) and their unfused / fused
// application to the Linear and Conv2d layers of a Weights store, as PEFT 0.12 LoraLayer does
// (peft/tuners/lora/layer.py) under diffusers 0.30.3's load_lora_weights / fuse_lora.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

#include "nn/weights.h"

namespace sd::nn {

/// One LoRA pair of a file, before it is resolved against a model.
struct LoraPair {
  std::string key;        // the key stem in the file, e.g. "lora_unet_mid_block_attentions_0_proj_in"
  std::string module;     // module name as written: kohya "mid_block_attentions_0_proj_in" or dotted
  bool kohya = false;     // module uses '_' for '.' (resolved against the store's module names)
  at::Tensor down, up;    // down [r, in(, k, k)], up [out, r(, 1, 1)], float32 CPU
  double alpha = 0;       // file alpha, or rank when absent
  std::string downKey, upKey;  // full file keys (for error messages)
};

/// A LoRA file grouped by target component: "unet", "text_encoder", "text_encoder_2".
struct LoraFile {
  std::string path;
  std::map<std::string, std::vector<LoraPair>> components;
};

/// Reads a .safetensors LoRA. Keys: kohya `lora_unet_*` / `lora_te_*` / `lora_te1_*` / `lora_te2_*`
/// with `.lora_down.weight` / `.lora_up.weight` / `.alpha`; diffusers `unet.` / `text_encoder.` /
/// `text_encoder_2.` (or unprefixed) with `.lora.down|up.weight`, `.lora_linear_layer.down|up.weight`,
/// `.lora_A|lora_B.weight` (also `.lora_A.<adapter>.weight`), the old attention-processor names
/// (`processor.to_q_lora.down.weight`) and optional `.alpha`. alpha missing ⇒ alpha = rank.
/// E_BAD_CHECKPOINT listing keys of no known LoRA form, or pairs missing their down/up half, or
/// a rank mismatch between down and up (naming the key and both shapes).
LoraFile readLoraFile(const std::string& path);

/// Resolves `pairs` against the Linear/Conv2d modules of `store` (kohya names are matched against
/// the store's module names with '.' → '_') and checks shapes. Returns slot/pair matches; appends
/// the keys of pairs that match no module to `unmatched`. E_BAD_CHECKPOINT on a shape mismatch
/// (naming the key, the file shape and the module's shape).
std::vector<std::pair<LoraSlot*, const LoraPair*>> resolveLora(Weights& store, const std::vector<LoraPair>& pairs,
                                                              std::vector<std::string>& unmatched);

/// Adds one adapter to a slot (tensors cast to the layer's floating dtype and device).
void attachLora(Weights& store, LoraSlot& slot, const LoraPair& pair, const std::string& adapter, double weight);

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
