// A caching CPU allocator for libtorch (issue 17, item 3): large tensor buffers are kept when freed
// and handed out again for the next request of the same size, instead of going back to the kernel.
//
// Why. glibc serves every allocation above its mmap threshold (128 KiB, raised at most to 32 MiB)
// with a fresh mmap and returns it with munmap on free, so each activation of a UNet step or a VAE
// decode is faulted in page by page and zeroed by the kernel, every time: a float32 VAE decode at
// 256² takes ~500,000 minor page faults (≈ 2 GiB touched) and spends a quarter of its CPU time in
// the kernel (native/tools/profile_step, /usr/bin/time). A model forward asks for the same sizes
// over and over (each ResnetBlock2D of one level, each UNet step), so a size-keyed cache serves
// almost all of them from memory that is already resident. PyTorch's CUDA caching allocator does
// the same on the GPU; on the CPU PyTorch leaves it to the C library (or jemalloc/tcmalloc by
// LD_PRELOAD).
//
// When. Blocks are cached only while a CpuCacheScope is open (pipelines open one per generate
// call); freed outside any scope — weights on dispose, a loader's temporaries — they are unmapped at
// once, and when the last scope closes the whole cache is unmapped. An idle process holds nothing.
//
// Peak memory. Within a call the cache holds at most `live peak + slack` bytes, the slack being
// four times the call's activation peak (the live peak minus what was live when the call began: the
// weights), at least 256 MiB. Measured on full-size SD 1.5 in float32 (native/tools/profile_step):
// a UNet step at 256² has a 100 MiB activation peak and needs 438 MiB cached to run its steps
// without a page fault (at 512²: 190 and 788 MiB); a VAE decode at 512², 900 MiB and 1.1 GiB. A
// request of a size not in the cache maps a new block while under that limit; past it, it recycles
// a cached block of another size where the kernel can resize a mapping (Linux's mremap: the best
// fit above, else the largest below, keeping its resident pages) and unmaps cached blocks, oldest
// first, until the limit holds. The CPU pipelines' memory guard also caps the cached bytes at the
// headroom its estimate leaves (setCpuCacheBudget). Between the denoising loop and the VAE decode,
// whose sizes differ, pipelines retire the cache (retireCpuCache): the decode's misses recycle the
// loop's blocks first.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sd::runtime {

/// Counters of the caching allocator since installation (bytes are whole pages).
struct CpuCacheStats {
  bool installed = false;       // installCpuCachingAllocator() took effect
  int64_t liveBytes = 0;        // blocks handed out and not yet freed
  int64_t cachedBytes = 0;      // freed blocks kept for reuse
  int64_t peakBytes = 0;        // the largest liveBytes + cachedBytes seen
  int64_t peakLiveBytes = 0;    // the largest liveBytes seen
  int64_t hits = 0;             // requests served from the cache
  int64_t misses = 0;           // requests of a size not in the cache
  int64_t recycled = 0;         // misses served by resizing a cached block of another size (Linux)
  int64_t unmappedBytes = 0;    // bytes given back to the kernel (evicted, freed past the budget or outside a call, trimmed by a resize)
  int64_t openScopes = 0;       // CpuCacheScope objects alive now
};

/// Smallest request the cache handles (256 KiB); smaller ones go to libtorch's default CPU
/// allocator (glibc's heap serves them without page faults once warm).
constexpr size_t kCpuCacheMinBytes = size_t(256) << 10;

/// The slack above the live peak that cached blocks may occupy:
/// max(kCpuCacheMinSlack, kCpuCacheSlackFactor × activation peak).
constexpr int64_t kCpuCacheMinSlack = int64_t(256) << 20;
constexpr int64_t kCpuCacheSlackFactor = 4;

/// Makes the caching allocator libtorch's CPU allocator (c10::SetCPUAllocator, priority 1), once per
/// process; later calls do nothing. Not installed — returns false — when the environment variable
/// SD_CPU_CACHING_ALLOCATOR is "0" (read at the first call), or off Linux/macOS. Tensors allocated
/// before keep their own deleters. Thread-safe. Call before the first model is loaded (the addon
/// does it when it is loaded; tools at start-up).
bool installCpuCachingAllocator();

/// While one is alive (on any thread), freed blocks are kept for reuse; when the last one ends,
/// every cached block is unmapped. Nestable, thread-safe, cheap (one mutex).
class CpuCacheScope {
 public:
  CpuCacheScope();
  ~CpuCacheScope();
  CpuCacheScope(const CpuCacheScope&) = delete;
  CpuCacheScope& operator=(const CpuCacheScope&) = delete;
};

/// Ends a phase of a call whose next phase asks for other sizes (the denoising loop before the VAE
/// decode): the cached blocks stop being handed out as they are and serve, until the call ends,
/// only the next phase's misses by recycling (mremap to the new size, keeping their resident
/// pages) — so that phase reuses the memory the last one already faulted in instead of mapping
/// fresh memory beside it. Without mremap (macOS) it unmaps them. Thread-safe.
void retireCpuCache();

/// Caps the cached bytes (on top of the slack rule) until the last open scope closes: cached blocks
/// past it are unmapped now, and a block freed past it is unmapped instead of cached. The CPU
/// pipelines' memory guard sets it to the memory available minus the call's estimated peak, so
/// the cache never spends headroom the call may need. bytes < 0: no cap. Thread-safe.
void setCpuCacheBudget(int64_t bytes);

/// The counters now.
CpuCacheStats cpuCacheStats();

}  // namespace sd::runtime
