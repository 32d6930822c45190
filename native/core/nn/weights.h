// Weights of one model component by diffusers parameter name, loaded strictly:
// every tensor a layer asks for must exist with the shape its config implies, and every tensor
// in the file must be asked for. Layers keep stable pointers into the store, so casting the
// store (to a device or dtype) or fusing a LoRA updates every layer at once.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "io/state_dict.h"

namespace sd::nn {

/// io::StateDict under the name the layers use.
using StateDict = io::StateDict;

/// One LoRA adapter on one layer (PEFT's LoraLayer): delta(x) = up(down(x)) · weight·alpha/rank · scale.
/// Linear: down [r, in], up [out, r]. Conv2d: down [r, in, k, k] (the layer's stride/padding), up [out, r, 1, 1].
struct LoraDelta {
  std::string adapter;   // adapter name
  at::Tensor down, up;   // in the layer's weight dtype/device
  double alpha = 0;      // alpha (= rank when the file has none)
  int64_t rank = 0;
  double weight = 1.0;   // set_adapters weight
  bool active = true;
  /// PEFT's `scaling`: weight · alpha / rank.
  double scaling() const { return weight * alpha / static_cast<double>(rank); }
};

/// The LoRA state of one Linear/Conv2d module, owned by its Weights store (stable address).
struct LoraSlot {
  std::string module;       // diffusers module name, e.g. "mid_block.attentions.0.proj_in"
  int64_t in = 0, out = 0;  // features / channels
  int64_t kernel = 0;       // 0 = Linear, k = Conv2d k×k
  int64_t stride = 1, padding = 0;
  std::vector<LoraDelta> deltas;
  const double* scale = nullptr;  // the store's per-call LoRA scale
  at::Tensor original;            // the base weight while fused (restored by unfuse)
  bool fused = false;
  bool enabled() const { return !fused && !deltas.empty(); }
};

class Weights {
 public:
  /// `component` names the model in error messages, e.g. "unet (/m/unet/diffusion_pytorch_model.safetensors)".
  Weights(StateDict tensors, std::string component);

  /// The tensor `name` with exactly `shape`; marks it used. Pointer stays valid for the store's
  /// lifetime. E_BAD_CHECKPOINT when missing or mis-shaped (message names key and both shapes).
  at::Tensor* take(const std::string& name, at::IntArrayRef shape);
  /// As take(), but returns nullptr when absent.
  at::Tensor* takeOptional(const std::string& name, at::IntArrayRef shape);
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Marks `name` as known-but-unused (e.g. CLIP's position_ids buffer).
  void ignore(const std::string& name);

  /// Throws E_BAD_CHECKPOINT listing the tensors no layer asked for.
  void finish() const;

  /// Casts floating-point tensors to `dtype` and moves everything to `device`.
  void to(at::Device device, at::ScalarType dtype);

  const std::string& component() const { return component_; }
  StateDict& tensors() { return tensors_; }
  const StateDict& tensors() const { return tensors_; }
  /// Total parameters and bytes held.
  int64_t numel() const;
  int64_t nbytes() const;

  /// The LoRA slot of the Linear/Conv2d module `module` (created on first call; layers register
  /// theirs when built). Slots live as long as the store.
  LoraSlot* loraSlot(const std::string& module);
  std::map<std::string, std::unique_ptr<LoraSlot>>& loraSlots() { return loraSlots_; }
  /// The LoRA scale every layer of this store applies (diffusers' cross_attention_kwargs scale); default 1.
  double& loraScale() { return *loraScale_; }

 private:
  std::map<std::string, std::unique_ptr<LoraSlot>> loraSlots_;
  std::unique_ptr<double> loraScale_ = std::make_unique<double>(1.0);
  StateDict tensors_;
  std::string component_;
  std::set<std::string> used_;
};

/// While alive on a thread, Weights::take() on a missing tensor creates it instead of failing:
/// 1-d "*.weight" → ones (norm scales), 1-d "*.bias" → zeros, others → N(0, 1/fan_in) with
/// fan_in = the product of all but the first dimension (keeps activations O(1), finite in
/// float16). Used by create-model to instantiate any model with random weights from its config.
///
/// On the CPU the draws come from a CPU generator seeded with `seed` (torch.manual_seed's
/// stream); on a CUDA device from a clone of that device's default generator reseeded with
/// `seed` (Philox: reproducible per device, different values from the CPU's).
class RandomInitScope {
 public:
  RandomInitScope(uint64_t seed, at::ScalarType dtype, at::Device device = at::Device(at::kCPU));
  ~RandomInitScope();
  RandomInitScope(const RandomInitScope&) = delete;
  RandomInitScope& operator=(const RandomInitScope&) = delete;
  /// The active scope of this thread, or nullptr.
  static RandomInitScope* current();
  at::Tensor create(const std::string& name, at::IntArrayRef shape);

 private:
  at::Generator generator_;
  at::ScalarType dtype_;
  at::Device device_;
  RandomInitScope* previous_;
};

/// A prefix into a Weights store: Scope(w, "down_blocks.0").sub("resnets.1").take("conv1.weight", …).
class Scope {
 public:
  Scope(Weights& weights, std::string prefix = "") : weights_(&weights), prefix_(std::move(prefix)) {}
  Scope sub(const std::string& name) const { return Scope(*weights_, join(name)); }
  Scope sub(const std::string& name, int64_t index) const { return sub(name + "." + std::to_string(index)); }
  at::Tensor* take(const std::string& name, at::IntArrayRef shape) const { return weights_->take(join(name), shape); }
  at::Tensor* takeOptional(const std::string& name, at::IntArrayRef shape) const {
    return weights_->takeOptional(join(name), shape);
  }
  bool has(const std::string& name) const { return weights_->has(join(name)); }
  const std::string& prefix() const { return prefix_; }
  std::string join(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  Weights& weights() const { return *weights_; }

 private:
  Weights* weights_;
  std::string prefix_;
};

/// "[a, b, c]" for messages.
std::string shapeString(at::IntArrayRef shape);

}  // namespace sd::nn
