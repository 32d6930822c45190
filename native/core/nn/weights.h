// Weights of one model component by diffusers parameter name, loaded strictly:
// every tensor a layer asks for must exist with the shape its config implies, and every tensor
// in the file must be asked for. Layers keep stable pointers into the store, so casting the
// store (to a device or dtype) or fusing a LoRA updates every layer at once.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace sd::nn {

using StateDict = std::map<std::string, at::Tensor>;

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

 private:
  StateDict tensors_;
  std::string component_;
  std::set<std::string> used_;
};

/// While alive on a thread, Weights::take() on a missing tensor creates it instead of failing:
/// 1-d "*.weight" → ones (norm scales), 1-d "*.bias" → zeros, others → N(0, 1/fan_in) with
/// fan_in = the product of all but the first dimension (keeps activations O(1), finite in
/// float16). Used by create-model to instantiate any model with random weights from its config.
class RandomInitScope {
 public:
  RandomInitScope(uint64_t seed, at::ScalarType dtype);
  ~RandomInitScope();
  RandomInitScope(const RandomInitScope&) = delete;
  RandomInitScope& operator=(const RandomInitScope&) = delete;
  /// The active scope of this thread, or nullptr.
  static RandomInitScope* current();
  at::Tensor create(const std::string& name, at::IntArrayRef shape);

 private:
  at::Generator generator_;
  at::ScalarType dtype_;
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
