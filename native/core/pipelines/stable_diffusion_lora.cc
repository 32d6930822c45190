// diffusers v0.30.3 loaders/lora_pipeline.py (StableDiffusionLoraLoaderMixin: load_lora_weights,
// set_adapters, fuse_lora, unfuse_lora, unload_lora_weights) and loaders/textual_inversion.py,
// for StableDiffusionPipeline; the layer mechanics are in nn/lora.cc.
#include <algorithm>
#include <filesystem>

#include "models/autoencoder_kl.h"
#include "models/clip_text_model.h"
#include "models/unet_2d_condition.h"
#include "nn/lora.h"
#include "pipelines/stable_diffusion.h"
#include "pipelines/pipeline_common.h"
#include "util/error.h"

namespace sd::pipelines {

using detail::invalid;

namespace {
}  // namespace

StableDiffusionPipeline::LoraLoadInfo StableDiffusionPipeline::loadLora(const std::string& path,
                                                                        const std::string& adapterName, double weight) {
  if (!std::isfinite(weight)) invalid("LoRA weight must be a finite number");
  if (!std::filesystem::is_regular_file(path)) fail(codes::kModelNotFound, "LoRA file not found: " + path);
  nn::LoraFile file = nn::readLoraFile(path);  // outside the lock: parsing does not touch the model
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string adapter =
      adapterName.empty() ? "default_" + std::to_string(loraAdapters_.size()) : adapterName;
  if (std::find(loraAdapters_.begin(), loraAdapters_.end(), adapter) != loraAdapters_.end())
    invalid("a LoRA adapter named \"" + adapter + "\" is already loaded; pass another adapterName or unload it first");
  if (nn::anyLoraFused(unet_->weights()) || nn::anyLoraFused(textEncoder_->weights()))
    invalid("a LoRA is fused into the weights; call unfuseLora() before loading another");

  std::vector<std::string> unmatched;
  std::vector<std::pair<nn::LoraSlot*, const nn::LoraPair*>> unetMatches, teMatches;
  for (auto& [component, pairs] : file.components) {
    if (component == "unet") {
      unetMatches = nn::resolveLora(unet_->weights(), pairs, unmatched);
    } else if (component == "text_encoder") {
      teMatches = nn::resolveLora(textEncoder_->weights(), pairs, unmatched);
    } else {  // text_encoder_2: this pipeline has one text encoder
      for (const auto& p : pairs) unmatched.push_back(p.downKey);
    }
  }
  if (!unmatched.empty()) {
    std::string list;
    for (size_t i = 0; i < unmatched.size() && i < 20; ++i) list += (i ? ", " : "") + unmatched[i];
    if (unmatched.size() > 20) list += ", … (" + std::to_string(unmatched.size() - 20) + " more)";
    fail(codes::kBadCheckpoint, path + ": " + std::to_string(unmatched.size()) +
                                    " LoRA keys match no Linear/Conv2d module of this " + info_.family +
                                    " model (a LoRA for another model family?): " + list);
  }
  if (unetMatches.empty() && teMatches.empty()) fail(codes::kBadCheckpoint, path + ": the file holds no LoRA weights");
  for (auto& [slot, pair] : unetMatches) nn::attachLora(unet_->weights(), *slot, *pair, adapter, weight);
  for (auto& [slot, pair] : teMatches) nn::attachLora(textEncoder_->weights(), *slot, *pair, adapter, weight);
  loraAdapters_.push_back(adapter);
  return {adapter, static_cast<int64_t>(unetMatches.size()), static_cast<int64_t>(teMatches.size())};
}

void StableDiffusionPipeline::setLoraAdapters(const std::vector<std::string>& names, const std::vector<double>& weights) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (names.size() != weights.size()) invalid("setAdapters: names and weights must have the same length");
  for (const auto& n : names)
    if (std::find(loraAdapters_.begin(), loraAdapters_.end(), n) == loraAdapters_.end())
      invalid("setAdapters: no LoRA adapter named \"" + n + "\" is loaded (loaded: " +
              (loraAdapters_.empty() ? std::string("none") : [&] {
                std::string s;
                for (const auto& a : loraAdapters_) s += (s.empty() ? "" : ", ") + a;
                return s;
              }()) + ")");
  for (double w : weights)
    if (!std::isfinite(w)) invalid("setAdapters: weights must be finite numbers");
  if (nn::anyLoraFused(unet_->weights()) || nn::anyLoraFused(textEncoder_->weights()))
    invalid("setAdapters: a LoRA is fused into the weights; call unfuseLora() first");
  for (nn::Weights* store : {&unet_->weights(), &textEncoder_->weights()}) {
    for (auto& [module, slot] : store->loraSlots()) {
      for (nn::LoraDelta& d : slot->deltas) {
        auto it = std::find(names.begin(), names.end(), d.adapter);
        d.active = it != names.end();
        if (d.active) d.weight = weights[static_cast<size_t>(it - names.begin())];
      }
    }
  }
}

int64_t StableDiffusionPipeline::fuseLora(double scale) {
  if (!std::isfinite(scale)) invalid("fuseLora: loraScale must be a finite number");
  std::lock_guard<std::mutex> lock(mutex_);
  if (loraAdapters_.empty()) invalid("fuseLora: no LoRA is loaded");
  return nn::fuseLora(unet_->weights(), scale) + nn::fuseLora(textEncoder_->weights(), scale);
}

int64_t StableDiffusionPipeline::unfuseLora() {
  std::lock_guard<std::mutex> lock(mutex_);
  return nn::unfuseLora(unet_->weights()) + nn::unfuseLora(textEncoder_->weights());
}

void StableDiffusionPipeline::unloadLora(const std::string& adapter) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!adapter.empty() && std::find(loraAdapters_.begin(), loraAdapters_.end(), adapter) == loraAdapters_.end())
    invalid("no LoRA adapter named \"" + adapter + "\" is loaded");
  nn::removeLora(unet_->weights(), adapter);
  nn::removeLora(textEncoder_->weights(), adapter);
  if (adapter.empty())
    loraAdapters_.clear();
  else
    loraAdapters_.erase(std::find(loraAdapters_.begin(), loraAdapters_.end(), adapter));
}

std::vector<std::string> StableDiffusionPipeline::loraAdapters() {
  std::lock_guard<std::mutex> lock(mutex_);
  return loraAdapters_;
}

at::Tensor StableDiffusionPipeline::componentWeight(const std::string& component, const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  const nn::Weights* store = component == "unet"           ? &unet_->weights()
                             : component == "text_encoder" ? &textEncoder_->weights()
                             : component == "vae"          ? &vae_->weights()
                                                           : nullptr;
  if (!store) invalid("component must be \"unet\", \"text_encoder\" or \"vae\"; received \"" + component + "\"");
  auto it = store->tensors().find(name);
  if (it == store->tensors().end()) invalid(component + " has no weight \"" + name + "\"");
  return it->second.to(at::kCPU, at::kFloat).clone();
}

void StableDiffusionPipeline::setTokenEmbeddings(int64_t firstId, const at::Tensor& rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t d = textEncoder_->config().hiddenSize;
  if (!rows.defined() || rows.dim() != 2 || rows.size(1) != d)
    fail(codes::kBadCheckpoint, "the embedding has vectors of width " + (rows.defined() && rows.dim() == 2 ? std::to_string(rows.size(1))
                                                                                     : nn::shapeString(rows.sizes())) +
            " but this model's text encoder needs " + std::to_string(d) +
            " (an embedding made for another model family?)");
  textEncoder_->setTokenEmbeddings(firstId, rows);
}

int64_t StableDiffusionPipeline::vocabSize() {
  std::lock_guard<std::mutex> lock(mutex_);
  return textEncoder_->vocabSize();
}

}  // namespace sd::pipelines
