#include "runtime/generators.h"

#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <string>

#include "util/error.h"

namespace sd::runtime {

namespace {
std::atomic<int64_t> gBanksFilled{0};
std::atomic<int64_t> gDrawsServed{0};
}  // namespace

NoiseBankStats noiseBankStats() { return {gBanksFilled.load(), gDrawsServed.load()}; }

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
  NoiseBank* bank = bank_.get();
  if (bank == nullptr || bank->capacity <= 0) return drawNow(shape, options, what);
  if (!bank->draws.defined()) {
    // the first draw of the loop: all of them now, in order (per generator with a list)
    std::vector<int64_t> banked{bank->capacity};
    banked.insert(banked.end(), shape.begin(), shape.end());
    at::Tensor all;
    const at::TensorOptions cpu = options.device(at::kCPU);
    if (isList()) {
      std::vector<at::Tensor> perGenerator;  // [capacity, 1, ...] each
      std::vector<int64_t> rowShape(shape.begin(), shape.end());
      if (rowShape.empty() || rowShape[0] != size())
        fail(codes::kInvalidArgument, std::string(what) + ": a batch drawn with " + std::to_string(size()) +
                                          " generators; give one seed per image");
      rowShape[0] = 1;
      for (const at::Generator& g : list_) {
        std::vector<at::Tensor> steps;
        steps.reserve(static_cast<size_t>(bank->capacity));
        for (int64_t k = 0; k < bank->capacity; ++k) steps.push_back(at::randn(rowShape, g, cpu));
        perGenerator.push_back(at::stack(steps, 0));  // [capacity, 1, ...]
      }
      all = at::cat(perGenerator, 1);  // [capacity, B, ...]
    } else {
      std::vector<at::Tensor> steps;
      steps.reserve(static_cast<size_t>(bank->capacity));
      for (int64_t k = 0; k < bank->capacity; ++k) steps.push_back(drawNow(shape, cpu, what));
      all = at::stack(steps, 0);
    }
    bank->draws = all.to(options.device());  // one host-to-device copy for the whole loop
    bank->next = 0;
    ++gBanksFilled;
  }
  const at::Tensor& d = bank->draws;
  if (bank->next >= d.size(0) || d.sizes().slice(1) != shape || d.scalar_type() != at::typeMetaToScalarType(options.dtype()) ||
      d.device() != options.device())
    fail(codes::kInternal, std::string(what) + ": the noise bank holds other draws than this step asks for (a scheduler "
                                               "that changes its draw per step?)");
  ++gDrawsServed;
  return d[bank->next++];
}

at::Tensor Generators::drawNow(at::IntArrayRef shape, const at::TensorOptions& options, const char* what) const {
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

void Generators::armNoiseBank(int64_t maxDraws) const {
  if (empty() || maxDraws <= 0) return;  // no generator: the device's own, nothing to order
  bank_ = std::make_shared<NoiseBank>();
  bank_->capacity = maxDraws;
}

void Generators::disarmNoiseBank() const { bank_.reset(); }

}  // namespace sd::runtime
