// Giving freed memory back to the operating system (issue 19, item 4). glibc keeps the memory of
// freed weights in its arenas: 5 load/dispose cycles of a full-size SD 1.5 grew RSS 275 → 5,128 MiB
// after dispose. malloc_trim(0) returns every free page of every arena (glibc ≥ 2.8: also pages in
// the middle of a heap, by madvise), so a server that swaps models stays bounded.
#pragma once

#include <cstdint>
#include <string>

namespace sd::runtime {

/// Asks the C allocator to return freed memory to the OS: glibc's malloc_trim(0), run on a
/// background thread (it walks all arenas: milliseconds to a few hundred ms after a large free,
/// which must not block the caller — the N-API thread). At most one trim runs at a time; a request
/// while one runs makes it run once more. No-op where the C library is not glibc.
void releaseFreedMemory();

/// The same, on the calling thread, returning once done (tests, tools). True where it trimmed.
bool releaseFreedMemoryNow();

/// Host memory a call may still use (issue 19, item 4: refuse instead of being OOM-killed).
struct AvailableMemory {
  int64_t bytes = -1;  // the smallest of the limits found; -1 = none could be read
  std::string source;  // which limit gave `bytes`, for messages: "SD_NATIVE_MEMORY_LIMIT", "memoryLimit option",
                       // "cgroup v2 memory.max (<path>)", "cgroup v1 memory.limit_in_bytes", "MemAvailable"
};

/// The host memory available to this process now: the smallest of
/// - `optionLimit` (bytes, the pipeline's memoryLimit; <= 0 = not set),
/// - SD_NATIVE_MEMORY_LIMIT (parseMemorySize; read at every call; an unreadable value is ignored),
/// - cgroup v2: memory.max − memory.current of this process's cgroup and each ancestor (a limit of
///   "max" is no limit), read under /sys/fs/cgroup via /proc/self/cgroup,
/// - cgroup v1: memory.limit_in_bytes − memory.usage_in_bytes of the memory controller's cgroup
///   (limits >= 2^60 mean none),
/// - /proc/meminfo MemAvailable.
/// The option and the environment variable are limits on what a call may add (not on the process's
/// total). Linux only; elsewhere only the option and the variable apply.
AvailableMemory availableMemory(int64_t optionLimit = 0);

/// Parses a memory size: a non-negative integer number of bytes, optionally followed by a binary
/// suffix K/KiB, M/MiB, G/GiB, T/TiB (case-insensitive; "512MiB", "6G", "1073741824"). Fractions
/// are accepted with a suffix ("1.5GiB"). −1 when unreadable.
int64_t parseMemorySize(const std::string& text);

/// "1.50 GiB" / "300.0 MiB" / "12 KiB" for messages.
std::string formatBytes(double bytes);

}  // namespace sd::runtime
