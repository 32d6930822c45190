#include "runtime/threads.h"

#include <ATen/Parallel.h>

#include <atomic>

#if defined(__linux__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

namespace sd::runtime {
namespace {

struct OpenBlas {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
};

const OpenBlas& openBlas() {
  static const OpenBlas blas = [] {
    OpenBlas b;
#if defined(__linux__) || defined(__APPLE__)
    // Only a library already loaded (by libtorch): RTLD_NOLOAD never loads one.
    for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libblas.so.3", "libopenblas.dylib"}) {
      void* h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
      if (!h) continue;
      b.set = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"));
      b.get = reinterpret_cast<int (*)()>(dlsym(h, "openblas_get_num_threads"));
      if (b.set && b.get) break;
      b = {};
    }
#endif
    return b;
  }();
  return blas;
}

std::atomic<int> blasApplied{0};

}  // namespace

void useIntraOpThreads(int n) {
  if (n <= 0) return;
  thread_local int applied = 0;
  if (applied != n) {
    at::set_num_threads(n);
    applied = n;
  }
  const OpenBlas& b = openBlas();
  if (b.set && blasApplied.exchange(n) != n) b.set(n);
}

int openBlasThreads() {
  const OpenBlas& b = openBlas();
  return b.get ? b.get() : -1;
}

}  // namespace sd::runtime
