// diffusers' `generator` argument as the pipelines and schedulers take it: no generator (the
// global default one), one CPU generator for the whole batch, or one CPU generator per batch item
// (a list, `[torch.Generator("cpu").manual_seed(s) for s in seeds]`). Draws follow diffusers'
// `randn_tensor` (utils/torch_utils.py, v0.30.3): with one generator a [B, …] draw is one
// randn([B, …]); with a list, row i is randn([1, …]) drawn from generator i, and the rows are
// concatenated — so the rows of a batch made with a list equal the same seeds drawn one by one.
// Draws are always made on the CPU in float32-or-the-given dtype and then moved, like diffusers
// with a CPU generator.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sd::runtime {

class Generators {
 public:
  /// No generator: draws use libtorch's default CPU generator.
  Generators() = default;
  /// One generator for the whole batch (may be null: as the default constructor). Implicit, so
  /// callers holding one `at::Generator*` pass it as before; the handle is shared, so draws
  /// advance the caller's generator. E_INVALID_ARGUMENT for a non-CPU generator.
  Generators(at::Generator* one);  // NOLINT(google-explicit-constructor)
  /// One CPU generator for the whole batch, `torch.Generator("cpu").manual_seed(seed)`.
  static Generators fromSeed(uint64_t seed);
  /// One CPU generator per batch item, `torch.Generator("cpu").manual_seed(seeds[i])`.
  /// Throws E_INVALID_ARGUMENT when `seeds` is empty.
  static Generators fromSeeds(const std::vector<uint64_t>& seeds);

  /// True for one generator per batch item.
  bool isList() const { return !list_.empty(); }
  /// True when there is no generator at all.
  bool empty() const { return !one_.defined() && list_.empty(); }
  /// The number of per-item generators (0 unless isList()).
  int64_t size() const { return static_cast<int64_t>(list_.size()); }
  /// Generator i of the list; with one generator, that generator for every i. Null when empty().
  at::Generator* forItem(int64_t i) const;

  /// randn(shape) as diffusers' randn_tensor draws it (see the file comment), made on the CPU and
  /// moved to `options`' device and dtype. With a list, shape[0] must equal size()
  /// (E_INVALID_ARGUMENT otherwise); `what` names the draw in that message.
  at::Tensor randn(at::IntArrayRef shape, const at::TensorOptions& options, const char* what = "noise") const;

  /// The noise bank of a denoising loop (issue 13: no host synchronisation per step). Armed with
  /// the number of scheduler steps, the next randn() draws that many tensors of its shape and
  /// dtype at once — in the same order, from the same generators (per row with a list), so every
  /// value equals what the steps would have drawn one by one — and moves them to the device in one
  /// copy; later randn() calls are served from it. A draw of another shape, dtype or device, or
  /// past the end, is E_INTERNAL (never silently different noise). Unused draws (LCM draws none
  /// after its last step) only advance generators that nothing reads after the loop.
  /// Copies of this object share the bank. disarmNoiseBank() drops it.
  void armNoiseBank(int64_t maxDraws) const;
  void disarmNoiseBank() const;

  /// Checks that a list has exactly `batch` generators (diffusers: "You have passed a list of
  /// generators of length …, but requested an effective batch size of …"); no-op otherwise.
  void checkBatch(int64_t batch) const;

 private:
  at::Generator one_;                // undefined unless one generator for the batch
  std::vector<at::Generator> list_;  // at::Generator is a shared handle: copies share the state
  struct NoiseBank {
    int64_t capacity = 0;  // draws to make at the first randn()
    at::Tensor draws;      // [capacity, shape...] on the device, once filled
    int64_t next = 0;
  };
  at::Tensor drawNow(at::IntArrayRef shape, const at::TensorOptions& options, const char* what) const;
  // shared and mutable through a const object: the bank is a cache of draws the generators would
  // make anyway, not a change of what this object means
  mutable std::shared_ptr<NoiseBank> bank_;
};

/// Arms `generators`' noise bank for a loop of `steps` scheduler steps; disarms it on scope exit
/// (also when the loop throws: abort, out of memory).
class NoiseBankScope {
 public:
  NoiseBankScope(const Generators& generators, int64_t steps) : g_(generators) { g_.armNoiseBank(steps); }
  ~NoiseBankScope() { g_.disarmNoiseBank(); }
  NoiseBankScope(const NoiseBankScope&) = delete;
  NoiseBankScope& operator=(const NoiseBankScope&) = delete;

 private:
  const Generators& g_;
};

/// Process-wide counters of the noise banks (for the tests: proof that loops are served from them).
struct NoiseBankStats {
  int64_t filled = 0;  // banks filled
  int64_t served = 0;  // draws served from a bank
};
NoiseBankStats noiseBankStats();

}  // namespace sd::runtime
