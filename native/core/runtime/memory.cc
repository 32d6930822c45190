#include "runtime/memory.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
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

int64_t parseMemorySize(const std::string& text) {
  size_t i = 0, n = text.size();
  while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  const size_t numStart = i;
  bool dot = false;
  while (i < n && (std::isdigit(static_cast<unsigned char>(text[i])) || (text[i] == '.' && !dot))) {
    if (text[i] == '.') dot = true;
    ++i;
  }
  if (i == numStart) return -1;
  const double value = std::strtod(text.substr(numStart, i - numStart).c_str(), nullptr);
  while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::string suffix;
  for (; i < n; ++i) {
    if (std::isspace(static_cast<unsigned char>(text[i]))) break;
    suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  }
  while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  if (i != n) return -1;
  double scale = 1;
  if (suffix.empty() || suffix == "b") {
    if (dot) return -1;  // a fraction of a byte
  } else if (suffix == "k" || suffix == "kib") {
    scale = 1024.0;
  } else if (suffix == "m" || suffix == "mib") {
    scale = 1024.0 * 1024;
  } else if (suffix == "g" || suffix == "gib") {
    scale = 1024.0 * 1024 * 1024;
  } else if (suffix == "t" || suffix == "tib") {
    scale = 1024.0 * 1024 * 1024 * 1024;
  } else {
    return -1;
  }
  const double bytes = value * scale;
  if (!std::isfinite(bytes) || bytes < 0 || bytes > 9.0e18) return -1;
  return static_cast<int64_t>(bytes);
}

std::string formatBytes(double bytes) {
  char buf[64];
  if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.0f KiB", bytes / 1024.0);
  return buf;
}

namespace {

// The first line of a small file (sysfs/procfs); "" when unreadable.
std::string readLine(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  if (!f || !std::getline(f, line)) return "";
  return line;
}

int64_t readInt(const std::string& path) {
  const std::string line = readLine(path);
  if (line.empty()) return -1;
  char* end = nullptr;
  const long long v = std::strtoll(line.c_str(), &end, 10);
  return end == line.c_str() ? -1 : static_cast<int64_t>(v);
}

void consider(AvailableMemory& best, int64_t bytes, const std::string& source) {
  if (bytes < 0) return;
  if (best.bytes < 0 || bytes < best.bytes) best = {bytes, source};
}

#if defined(__linux__)
// cgroup v2 ("0::/path") and the v1 memory controller ("N:memory:/path" or "N:...,memory,...:/path").
void considerCgroups(AvailableMemory& best) {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string rel = line.substr(b + 1);
    if (controllers.empty()) {  // v2: this cgroup and every ancestor (the tightest limit binds)
      while (true) {
        const std::string dir = "/sys/fs/cgroup" + (rel == "/" ? std::string() : rel);
        const std::string max = readLine(dir + "/memory.max");
        if (!max.empty() && max != "max") {
          const int64_t limit = readInt(dir + "/memory.max"), current = readInt(dir + "/memory.current");
          if (limit >= 0 && current >= 0)
            consider(best, std::max<int64_t>(0, limit - current), "cgroup v2 memory.max (" + dir + ")");
        }
        if (rel.empty() || rel == "/") break;
        const size_t slash = rel.find_last_of('/');
        rel = slash == 0 || slash == std::string::npos ? "/" : rel.substr(0, slash);
      }
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      for (const std::string& dir : {"/sys/fs/cgroup/memory" + rel, std::string("/sys/fs/cgroup/memory")}) {
        const int64_t limit = readInt(dir + "/memory.limit_in_bytes"), usage = readInt(dir + "/memory.usage_in_bytes");
        if (limit >= 0 && limit < (int64_t{1} << 60) && usage >= 0) {
          consider(best, std::max<int64_t>(0, limit - usage), "cgroup v1 memory.limit_in_bytes (" + dir + ")");
          break;
        }
      }
    }
  }
}

int64_t memAvailable() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  long long value = 0;
  std::string unit;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    if (!(in >> key >> value)) continue;
    if (key == "MemAvailable:") {
      in >> unit;
      return static_cast<int64_t>(value) * (unit == "kB" ? 1024 : 1);
    }
  }
  return -1;
}
#endif

}  // namespace

AvailableMemory availableMemory(int64_t optionLimit) {
  AvailableMemory best;
  if (optionLimit > 0) consider(best, optionLimit, "memoryLimit option");
  if (const char* env = std::getenv("SD_NATIVE_MEMORY_LIMIT"); env && *env)
    consider(best, parseMemorySize(env), "SD_NATIVE_MEMORY_LIMIT");
#if defined(__linux__)
  considerCgroups(best);
  consider(best, memAvailable(), "MemAvailable (/proc/meminfo)");
#endif
  return best;
}

}  // namespace sd::runtime
