// LoRA files (kohya-ss / AUTOMATIC1111 and diffusers / PEFT layouts): reading, routing keys to the
// unet / text encoders and resolving them against the LoRA slots of nn::Weights stores, after
// diffusers v0.30.3 loaders/lora_pipeline.py (load_lora_weights, StableDiffusion(XL)LoraLoaderMixin)
// and loaders/lora_conversion_utils.py. What a LoRA does to a layer is nn/lora.h.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/weights.h"

namespace sd::loaders {

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
std::vector<std::pair<nn::LoraSlot*, const LoraPair*>> resolveLora(nn::Weights& store,
                                                                  const std::vector<LoraPair>& pairs,
                                                                  std::vector<std::string>& unmatched);

/// Adds one adapter to a slot (tensors cast to the layer's floating dtype and device).
void attachLora(nn::Weights& store, nn::LoraSlot& slot, const LoraPair& pair, const std::string& adapter, double weight);

/// The pairs of one component resolved against its store.
struct LoraMatch {
  std::string component;  // "unet" | "text_encoder" | "text_encoder_2"
  std::vector<std::pair<nn::LoraSlot*, const LoraPair*>> pairs;
};

/// load_lora_weights' routing: resolves every component of `file` against `store(component)` (the
/// pipeline's weight store, nullptr when it has no such component; "vae" keys are never applied).
/// `family` ("sd1" | "sd2" | "sdxl") names the model in messages. E_BAD_CHECKPOINT listing the keys
/// that match no module, naming the components the model lacks (e.g. `lora_te2_` keys on an SD 1.x
/// model); E_BAD_CHECKPOINT naming a key and both shapes on a shape mismatch (raised only when no
/// component is missing). Attaches nothing.
std::vector<LoraMatch> matchLoraFile(const LoraFile& file, const std::function<nn::Weights*(const std::string&)>& store,
                                     const std::string& family);

}  // namespace sd::loaders
