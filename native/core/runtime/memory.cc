#include "runtime/memory.h"

#include <atomic>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace sd::runtime {

namespace {
// 0 idle, 1 running, 2 running and asked again
std::atomic<int> trimState{0};
}  // namespace

bool releaseFreedMemoryNow() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
  return true;
#else
  return false;
#endif
}

void releaseFreedMemory() {
#if defined(__GLIBC__)
  int s = trimState.load();
  while (true) {
    if (s == 2) return;  // a run is already pending after the current one
    if (trimState.compare_exchange_weak(s, s + 1)) break;
  }
  if (s == 1) return;  // the running thread will trim once more
  try {
    std::thread([] {
      while (true) {
        ::malloc_trim(0);
        int expected = 1;
        if (trimState.compare_exchange_strong(expected, 0)) break;  // nobody asked meanwhile: idle
        trimState.store(1);                                          // asked again (2): once more
      }
    }).detach();
  } catch (...) {
    trimState.store(0);  // no thread: leave the memory where it is (never a failure of dispose)
  }
#endif
}

}  // namespace sd::runtime
