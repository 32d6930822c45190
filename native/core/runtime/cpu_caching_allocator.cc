#include "runtime/cpu_caching_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include "util/torch_compat.h"

#if defined(__linux__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define SD_CPU_CACHE_SUPPORTED 1
#endif
#if defined(__linux__)
#define SD_CPU_CACHE_MREMAP 1  // mremap(2): resize a mapping, keeping its resident pages
#endif

// c10::Allocator::allocate lost its const and gained the pure virtual copy_data in libtorch 2.3.
#if SD_TORCH_AT_LEAST(2, 3)
#define SD_ALLOCATE_CONST
#else
#define SD_ALLOCATE_CONST const
#endif

namespace sd::runtime {

#ifdef SD_CPU_CACHE_SUPPORTED
namespace {

size_t pageSize() {
  static const size_t page = [] {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? size_t(p) : size_t(4096);
  }();
  return page;
}

class CpuCachingAllocator final : public c10::Allocator {
 public:
  explicit CpuCachingAllocator(c10::Allocator* fallback) : fallback_(fallback) {}

  c10::DataPtr allocate(size_t n) SD_ALLOCATE_CONST override {
    if (n < kCpuCacheMinBytes) return fallback_->allocate(n);
    const size_t size = (n + pageSize() - 1) / pageSize() * pageSize();
    void* p = self().take(size);
    return {p, p, &deleteBlock, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &deleteBlock; }

#if SD_TORCH_AT_LEAST(2, 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#endif

  void openScope() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stats_.openScopes++ == 0) epochBaseLive_ = epochPeakLive_ = stats_.liveBytes;
  }

  void closeScope() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stats_.openScopes > 0 && --stats_.openScopes == 0) {
      unmapAll();
      budget_ = -1;
    }
  }

  void setBudget(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    budget_ = bytes < 0 ? -1 : bytes;
    while (!byAge_.empty() && budget_ >= 0 && stats_.cachedBytes > budget_) unmapOldest();
  }

  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    unmapAll();
  }

  void retire() {
    std::lock_guard<std::mutex> lock(mutex_);
#ifdef SD_CPU_CACHE_MREMAP
    for (auto& [size, age] : bySize_) {
      retiredBySize_.emplace(size, age);
      byAge_.at(age).retired = true;
    }
    bySize_.clear();
#else
    unmapAll();  // without mremap a block of another size cannot be reused
#endif
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  static CpuCachingAllocator*& instance() {
    static CpuCachingAllocator* one = nullptr;  // never destroyed: tensors may outlive static destructors
    return one;
  }

 private:
  struct Cached {
    void* ptr;
    size_t size;
    bool retired = false;  // in retiredBySize_ (retire()): only recycled, never handed out as is
  };

  void unmapAll() {  // mutex_ held
    while (!byAge_.empty()) unmapOldest();
  }

  CpuCachingAllocator& self() const { return const_cast<CpuCachingAllocator&>(*this); }

  void* take(size_t size) {
    std::unique_lock<std::mutex> lock(mutex_);
    auto hit = bySize_.find(size);
    if (hit != bySize_.end()) {
      void* p = takeCached(hit, bySize_).ptr;
      ++stats_.hits;
      noteLive(p, size);
      return p;
    }
    // A miss. While live + cached + this block fit under the limit — the live peak of this call
    // (this block included) plus the slack — a new block is mapped. Past it, a cached block of
    // another size is recycled where the kernel can resize a mapping (Linux's mremap: the best fit
    // above, else the largest below; its resident pages serve this request without page faults),
    // and cached blocks are unmapped, oldest first, until the limit holds again. Recycling only
    // past the limit: a model's forward asks for the same sizes at every step, and recycling a
    // block another size will ask for again a moment later starts a chain of misses.
    // Retired blocks (a previous phase's, retire()) are recycled first, under the limit or not.
    ++stats_.misses;
    const int64_t live = stats_.liveBytes + int64_t(size);
    const int64_t peakLive = std::max(epochPeakLive_, live);
    const int64_t limit = peakLive + std::max(kCpuCacheMinSlack, kCpuCacheSlackFactor * (peakLive - epochBaseLive_));
    Cached recycle{nullptr, 0};
#ifdef SD_CPU_CACHE_MREMAP
    if (!retiredBySize_.empty()) recycle = takeCached(bestFit(retiredBySize_, size), retiredBySize_);
    else if (live + stats_.cachedBytes > limit && !bySize_.empty()) recycle = takeCached(bestFit(bySize_, size), bySize_);
#endif
    while (!byAge_.empty() && live + stats_.cachedBytes > limit) unmapOldest();
    lock.unlock();
    void* p = MAP_FAILED;
#ifdef SD_CPU_CACHE_MREMAP
    if (recycle.ptr) {
      p = mremap(recycle.ptr, recycle.size, size, MREMAP_MAYMOVE);
      if (p == MAP_FAILED) munmap(recycle.ptr, recycle.size);
    }
#endif
    if (p == MAP_FAILED) p = mapNew(size);
    lock.lock();
    if (recycle.ptr) {
      ++stats_.recycled;
      stats_.unmappedBytes += int64_t(recycle.size > size ? recycle.size - size : 0);
    }
    noteLive(p, size);
    return p;
  }

  void* mapNew(size_t size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      release();  // nothing cached may stand in the way, then one more try
      p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      // libtorch's own allocator reports failure by throwing c10::Error ("DefaultCPUAllocator: can't
      // allocate memory"), which the pipelines turn into E_OUT_OF_MEMORY; do the same.
      TORCH_CHECK(p != MAP_FAILED, "CpuCachingAllocator: can't allocate memory: you tried to allocate ", size,
                  " bytes. Error code ", errno, " (", std::strerror(errno), ")");
    }
    return p;
  }

  using SizeIndex = std::multimap<size_t, uint64_t>;  // size → age

  /// The block to recycle for `size`: the smallest of at least `size`, else the largest. Not empty.
  static SizeIndex::iterator bestFit(SizeIndex& index, size_t size) {
    auto pick = index.lower_bound(size);
    return pick != index.end() ? pick : std::prev(index.end());
  }

  /// Removes a cached block (entry `it` of `index`) from the cache and returns it. mutex_ held.
  Cached takeCached(SizeIndex::iterator it, SizeIndex& index) {
    const uint64_t age = it->second;
    index.erase(it);
    auto node = byAge_.find(age);
    Cached block = node->second;
    byAge_.erase(node);
    stats_.cachedBytes -= int64_t(block.size);
    return block;
  }

  void noteLive(void* p, size_t size) {  // mutex_ held
    live_.emplace(p, size);
    stats_.liveBytes += int64_t(size);
    stats_.peakLiveBytes = std::max(stats_.peakLiveBytes, stats_.liveBytes);
    epochPeakLive_ = std::max(epochPeakLive_, stats_.liveBytes);
    stats_.peakBytes = std::max(stats_.peakBytes, stats_.liveBytes + stats_.cachedBytes);
  }

  void unmapOldest() {  // mutex_ held; byAge_ not empty
    auto oldest = byAge_.begin();
    Cached block = oldest->second;
    SizeIndex& index = block.retired ? retiredBySize_ : bySize_;
    auto range = index.equal_range(block.size);
    for (auto it = range.first; it != range.second; ++it)
      if (it->second == oldest->first) {
        index.erase(it);
        break;
      }
    byAge_.erase(oldest);
    munmap(block.ptr, block.size);
    stats_.cachedBytes -= int64_t(block.size);
    stats_.unmappedBytes += int64_t(block.size);
  }

  /// The deleter of every block (and the raw deleter): a block of ours goes back to the cache;
  /// anything else came from the fallback allocator (raw_allocate of a small size).
  static void deleteBlock(void* p) {
    CpuCachingAllocator* a = instance();
    {
      std::lock_guard<std::mutex> lock(a->mutex_);
      auto it = a->live_.find(p);
      if (it != a->live_.end()) {
        size_t size = it->second;
        a->live_.erase(it);
        a->stats_.liveBytes -= int64_t(size);
        // no call in flight, or the memory guard's headroom is used up: back to the kernel at once
        if (a->stats_.openScopes == 0 || (a->budget_ >= 0 && a->stats_.cachedBytes + int64_t(size) > a->budget_)) {
          munmap(p, size);
          a->stats_.unmappedBytes += int64_t(size);
          return;
        }
        a->stats_.cachedBytes += int64_t(size);
        uint64_t age = a->nextAge_++;
        a->byAge_.emplace(age, Cached{p, size});
        a->bySize_.emplace(size, age);
        return;
      }
    }
    c10::DeleterFnPtr fallback = a->fallback_->raw_deleter();
    if (fallback) fallback(p);
  }

  c10::Allocator* fallback_;
  std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;  // handed out: pointer → mapped size
  std::map<uint64_t, Cached> byAge_;        // cached, oldest first
  SizeIndex bySize_;                        // cached, handed out again at the same size
  SizeIndex retiredBySize_;                 // cached before the last retire(): recycled only
  uint64_t nextAge_ = 0;
  int64_t epochPeakLive_ = 0;  // the live peak since the first scope opened
  int64_t epochBaseLive_ = 0;  // live bytes when the first scope opened (the weights)
  int64_t budget_ = -1;        // the most cached bytes allowed (setCpuCacheBudget); -1: no budget
  CpuCacheStats stats_;
};

std::once_flag installOnce;

}  // namespace

bool installCpuCachingAllocator() {
  std::call_once(installOnce, [] {
    const char* env = std::getenv("SD_CPU_CACHING_ALLOCATOR");
    if (env && std::strcmp(env, "0") == 0) return;
    auto* a = new CpuCachingAllocator(c10::GetDefaultCPUAllocator());
    CpuCachingAllocator::instance() = a;
    c10::SetCPUAllocator(a, /*priority=*/1);
  });
  return CpuCachingAllocator::instance() != nullptr;
}

CpuCacheScope::CpuCacheScope() {
  if (CpuCachingAllocator* a = CpuCachingAllocator::instance()) a->openScope();
}

CpuCacheScope::~CpuCacheScope() {
  if (CpuCachingAllocator* a = CpuCachingAllocator::instance()) a->closeScope();
}

void retireCpuCache() {
  if (CpuCachingAllocator* a = CpuCachingAllocator::instance()) a->retire();
}

void setCpuCacheBudget(int64_t bytes) {
  if (CpuCachingAllocator* a = CpuCachingAllocator::instance()) a->setBudget(bytes);
}

CpuCacheStats cpuCacheStats() {
  CpuCachingAllocator* a = CpuCachingAllocator::instance();
  if (!a) return {};
  CpuCacheStats s = a->stats();
  s.installed = true;
  return s;
}

#else  // not Linux/macOS: libtorch's default allocator

bool installCpuCachingAllocator() { return false; }
CpuCacheScope::CpuCacheScope() = default;
CpuCacheScope::~CpuCacheScope() = default;
void retireCpuCache() {}
void setCpuCacheBudget(int64_t) {}
CpuCacheStats cpuCacheStats() { return {}; }

#endif

}  // namespace sd::runtime
