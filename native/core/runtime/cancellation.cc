#include "runtime/cancellation.h"

#include <ATen/Parallel.h>

#include <string>

#include "util/error.h"

namespace sd::runtime {

namespace {
thread_local const CancelCheck* tCurrent = nullptr;  // this thread's abort check, or none
}  // namespace

CancellationScope::CancellationScope(const CancelCheck& check) noexcept : previous_(tCurrent) {
  tCurrent = check ? &check : nullptr;
}

CancellationScope::~CancellationScope() { tCurrent = previous_; }

bool abortRequested() {
  const CancelCheck* check = tCurrent;
  if (check == nullptr) return false;
  // Never from inside at::parallel_for (an intra-op worker has no scope anyway; the calling thread
  // runs a chunk too, and an exception there would unwind through libtorch's parallel machinery).
  if (at::in_parallel_region()) return false;
  return (*check)();
}

void throwIfAborted(const char* where) {
  if (abortRequested()) fail(codes::kAborted, std::string("generation aborted in ") + where);
}

}  // namespace sd::runtime
