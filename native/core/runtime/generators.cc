#include "runtime/generators.h"

#include <ATen/CPUGeneratorImpl.h>

#include <string>

#include "util/error.h"

namespace sd::runtime {

Generators::Generators(at::Generator* one) {
  if (one == nullptr) return;
  if (one->device().type() != at::kCPU)
    fail(codes::kInvalidArgument, "the generator must be a CPU generator (torch.Generator('cpu'))");
  one_ = *one;
}

Generators Generators::fromSeed(uint64_t seed) {
  Generators g;
  g.one_ = at::make_generator<at::CPUGeneratorImpl>(seed);
  return g;
}

Generators Generators::fromSeeds(const std::vector<uint64_t>& seeds) {
  if (seeds.empty()) fail(codes::kInvalidArgument, "a list of seeds must not be empty");
  Generators g;
  g.list_.reserve(seeds.size());
  for (uint64_t s : seeds) g.list_.push_back(at::make_generator<at::CPUGeneratorImpl>(s));
  return g;
}

at::Generator* Generators::forItem(int64_t i) const {
  if (list_.empty()) return one_.defined() ? const_cast<at::Generator*>(&one_) : nullptr;
  if (i < 0 || i >= size()) fail(codes::kInternal, "generator index " + std::to_string(i) + " out of range");
  // at::Generator is a handle; the pointer is to the element, whose state the copies share
  return const_cast<at::Generator*>(&list_[static_cast<size_t>(i)]);
}

void Generators::checkBatch(int64_t batch) const {
  if (isList() && size() != batch)
    fail(codes::kInvalidArgument, "a list of " + std::to_string(size()) + " seeds was given for " +
                                      std::to_string(batch) + " images; give one seed per image (numPrompts × numImagesPerPrompt)");
}

at::Tensor Generators::randn(at::IntArrayRef shape, const at::TensorOptions& options, const char* what) const {
  const at::TensorOptions cpu = options.device(at::kCPU);
  at::Tensor r;
  if (isList()) {
    if (shape.empty() || shape[0] != size())
      fail(codes::kInvalidArgument, std::string(what) + ": a batch of " + (shape.empty() ? std::string("0") : std::to_string(shape[0])) +
                                        " drawn with " + std::to_string(size()) + " generators; give one seed per image");
    std::vector<int64_t> row(shape.begin(), shape.end());
    row[0] = 1;
    std::vector<at::Tensor> rows;
    rows.reserve(list_.size());
    for (const at::Generator& g : list_) rows.push_back(at::randn(row, g, cpu));
    r = at::cat(rows, 0);
  } else if (one_.defined()) {
    r = at::randn(shape, one_, cpu);
  } else {
    r = at::randn(shape, cpu);
  }
  return r.to(options.device());
}

}  // namespace sd::runtime
