// Cooperative cancellation inside the long computations (the UNet forward, the VAE decode and
// encode, the text encoder), so an abort is seen within one sub-block rather than one denoising
// step. A generate() call sets the current abort check for its own thread with a
// CancellationScope; the models call throwIfAborted() at their check points (between blocks,
// resnets, transformer layers, encoder layers, VAE tiles and slices), which throws E_ABORTED when
// the check says so. The check is thread-local because one generate runs on one worker thread:
// libtorch's intra-op threads (at::parallel_for) have no scope, and throwIfAborted() does nothing
// inside a parallel region, so a check point reached there never throws across a parallel_for.
// Code run outside any scope (the unit bindings of the models, tools) is never cancelled.
//
// The check points are at module boundaries only: they read no tensor and change no number.
#pragma once

#include <functional>

namespace sd::runtime {

/// True when the current call should stop. Must be cheap (an atomic load) and must not throw.
using CancelCheck = std::function<bool()>;

/// Makes `check` the current thread's abort check until destroyed (then the previous one is
/// current again: scopes nest). `check` is held by reference and must outlive the scope; an
/// empty check means "never aborted".
class CancellationScope {
 public:
  explicit CancellationScope(const CancelCheck& check) noexcept;
  ~CancellationScope();
  CancellationScope(const CancellationScope&) = delete;
  CancellationScope& operator=(const CancellationScope&) = delete;

 private:
  const CancelCheck* previous_;
};

/// True when this thread has a current abort check and it says stop (false inside a parallel
/// region and outside any scope).
bool abortRequested();

/// Throws SdException(E_ABORTED, "generation aborted in <where>") when abortRequested().
void throwIfAborted(const char* where);

}  // namespace sd::runtime
