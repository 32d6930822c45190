// Strict by-name weight store (the loading discipline of diffusers' `load_state_dict(strict=True)`).
#include "nn/weights.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <mutex>
#include <sstream>

#include "util/error.h"

namespace sd::nn {

std::string shapeString(at::IntArrayRef shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

Weights::Weights(StateDict tensors, std::string component)
    : tensors_(std::move(tensors)), component_(std::move(component)) {}

LoraSlot* Weights::loraSlot(const std::string& module) {
  auto& slot = loraSlots_[module];
  if (!slot) {
    slot = std::make_unique<LoraSlot>();
    slot->module = module;
    slot->scale = loraScale_.get();
  }
  return slot.get();
}

namespace {
thread_local RandomInitScope* tlsRandomInit = nullptr;
}

namespace {
at::Generator seededGenerator(uint64_t seed, at::Device device) {
  if (device.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  // The device's default generator (index -1 = the current device), cloned so the process's
  // global stream is left alone, then reseeded. No CUDA header needed.
  at::Generator base = at::globalContext().defaultGenerator(device);
  at::Generator g;
  {
    std::lock_guard<std::mutex> lock(base.mutex());
    g = base.clone();
  }
  g.set_current_seed(seed);
  return g;
}
}  // namespace

RandomInitScope::RandomInitScope(uint64_t seed, at::ScalarType dtype, at::Device device)
    : generator_(seededGenerator(seed, device)), dtype_(dtype), device_(device), previous_(tlsRandomInit) {
  tlsRandomInit = this;
}
RandomInitScope::~RandomInitScope() { tlsRandomInit = previous_; }
RandomInitScope* RandomInitScope::current() { return tlsRandomInit; }

at::Tensor RandomInitScope::create(const std::string& name, at::IntArrayRef shape) {
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device_);
  const bool isBias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  at::Tensor t;
  if (shape.size() <= 1) {
    t = isBias ? at::zeros(shape, opts) : at::ones(shape, opts);
  } else {
    int64_t fanIn = 1;
    for (size_t i = 1; i < shape.size(); ++i) fanIn *= shape[i];
    t = at::randn(shape, generator_, opts).mul_(1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fanIn, 1))));
  }
  return t.to(dtype_);
}

at::Tensor* Weights::takeOptional(const std::string& name, at::IntArrayRef shape) {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return nullptr;
  if (it->second.sizes() != shape)
    fail(codes::kBadCheckpoint, component_ + ": weight \"" + name + "\" has shape " + shapeString(it->second.sizes()) +
                                    " in the file but the config implies " + shapeString(shape));
  used_.insert(name);
  return &it->second;
}

at::Tensor* Weights::take(const std::string& name, at::IntArrayRef shape) {
  if (RandomInitScope* init = RandomInitScope::current(); init && !tensors_.count(name)) {
    tensors_[name] = init->create(name, shape);
  }
  at::Tensor* t = takeOptional(name, shape);
  if (!t)
    fail(codes::kBadCheckpoint,
         component_ + ": missing weight \"" + name + "\" (expected shape " + shapeString(shape) + ")");
  return t;
}

void Weights::ignore(const std::string& name) {
  if (tensors_.count(name)) used_.insert(name);
}

void Weights::finish() const {
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : tensors_)
    if (!used_.count(name)) unexpected.push_back(name);
  if (unexpected.empty()) return;
  std::string list;
  for (size_t i = 0; i < unexpected.size() && i < 10; ++i) list += (i ? ", " : "") + unexpected[i];
  if (unexpected.size() > 10) list += ", … (" + std::to_string(unexpected.size() - 10) + " more)";
  fail(codes::kBadCheckpoint, component_ + ": " + std::to_string(unexpected.size()) +
                                  " weight(s) that the config does not use: " + list);
}

void Weights::to(at::Device device, at::ScalarType dtype) {
  for (auto& [name, t] : tensors_) {
    if (at::isFloatingType(t.scalar_type()))
      t = t.to(device, dtype);
    else
      t = t.to(device);
  }
}

int64_t Weights::numel() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.numel();
  return n;
}

int64_t Weights::nbytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors_) n += t.numel() * static_cast<int64_t>(t.element_size());
  return n;
}

}  // namespace sd::nn
