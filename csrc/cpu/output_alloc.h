// Allocation of large op outputs: on transparent huge pages, recycled through a small bounded cache.
//
// These ops write big outputs once (a 320x480 FCN head is 100 MB, an x2 upsampling of
// (8, 64, 128, 128) is 134 MB). A fresh buffer from malloc is mmap'ed 4 KiB pages that the kernel
// zeroes on first touch: those faults cost as much as the op itself (28 ms of a 65 ms FCN forward
// here). Buffers of 2 MiB and more are therefore 2 MiB-aligned and advised MADV_HUGEPAGE (512x
// fewer faults; PyTorch does this only under THP_MEM_ALLOC_ENABLE=1).
//
// Note [output cache policy]: when such a tensor is freed its buffer may be kept for the next
// output of the same rounded size (warm: no faults, no zeroing), like PyTorch's CUDA caching
// allocator, but held memory is what users notice first, so the cache is small and lets go:
//   - it holds at most TCONV_CPU_CACHE_MB MiB (default min(256 MiB, RAM / 16); 0 disables it;
//     tconv.memory.set_cache_limit changes it at run time), least recently freed evicted first;
//   - a buffer unused for TCONV_CPU_CACHE_IDLE_S seconds (default 10) is released at the next
//     allocation or free of a large output (no background thread);
//   - a buffer is not kept when the machine's available memory (MemAvailable) is below 1/8 of RAM;
//   - tconv.memory.empty_cache() releases everything, tconv.memory.stats() counts hits, misses,
//     bytes held and their peak.
// A buffer is only ever handed out after its tensor's storage was freed (the DataPtr's deleter
// returns it), so no live tensor shares it. The tensors are ordinary CPU tensors (resizable,
// serialisable); only their storage's allocator differs.
#pragma once

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace tconv::cpu {

class HugePageAllocator;
inline HugePageAllocator& huge_page_allocator();

struct OutputCacheStats {
  size_t cached_bytes = 0, peak_cached_bytes = 0, limit_bytes = 0;
  size_t hits = 0, misses = 0, evictions = 0;  // evictions: by the cap, idleness or memory pressure
};

class HugePageAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;

  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes < kHugePage) return c10::GetCPUAllocator()->allocate(nbytes);
    const size_t rounded = (nbytes + kHugePage - 1) / kHugePage * kHugePage;
    Block* block = take_cached(rounded);
    if (block == nullptr) block = new Block{map_huge(rounded), rounded, Clock::time_point{}};
    return {block->data, block, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  // Frees every cached buffer; returns the bytes released.
  size_t empty_cache() {
    std::list<Block*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      drop.swap(cache_);
      stats_.cached_bytes = 0;
    }
    size_t bytes = 0;
    for (Block* b : drop) bytes += b->size, destroy(b);
    return bytes;
  }

  // Sets the cap (bytes; 0 disables the cache), evicting what no longer fits.
  void set_limit(size_t bytes) {
    std::list<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.limit_bytes = bytes;
      evict_locked(bytes, Clock::now(), evicted);
    }
    for (Block* e : evicted) destroy(e);
  }

  OutputCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_cached_bytes = stats_.cached_bytes;
  }

  size_t cached_bytes() { return stats().cached_bytes; }

 private:
  using Clock = std::chrono::steady_clock;

  struct Block {
    void* data;
    size_t size;  // a multiple of kHugePage
    Clock::time_point freed;
  };

  HugePageAllocator() : idle_(idle_seconds()), ram_(ram_bytes()) { stats_.limit_bytes = cache_limit(ram_); }
  friend HugePageAllocator& huge_page_allocator();

  static void* map_huge(size_t rounded) {
    void* data = nullptr;
    if (posix_memalign(&data, kHugePage, rounded) != 0 || data == nullptr) {
      TORCH_CHECK_WITH(OutOfMemoryError, false, "tconv: failed to allocate ", rounded, " bytes");
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(data, rounded, MADV_HUGEPAGE);  // advisory: failure just means 4 KiB pages
#endif
    return data;
  }

  static void destroy(Block* b) {
    std::free(b->data);
    delete b;
  }

  static size_t env_number(const char* name, size_t fallback) {
    if (const char* env = std::getenv(name)) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(env, &end, 10);
      if (end != env && *end == '\0') return size_t(v);
    }
    return fallback;
  }

  static size_t ram_bytes() {
#if defined(__linux__)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) return size_t(pages) * size_t(page);
#endif
    return 0;
  }

  static size_t cache_limit(size_t ram) {
    size_t limit = size_t(256) << 20;
    if (ram > 0) limit = std::min(limit, ram / 16);
    return env_number("TCONV_CPU_CACHE_MB", limit >> 20) << 20;
  }

  static Clock::duration idle_seconds() {
    return std::chrono::seconds(env_number("TCONV_CPU_CACHE_IDLE_S", 10));
  }

  // The machine's available memory (MemAvailable), or SIZE_MAX when unknown.
  static size_t available_bytes() {
#if defined(__linux__)
    if (FILE* f = std::fopen("/proc/meminfo", "r")) {
      char line[128];
      unsigned long long kb = 0;
      bool found = false;
      while (!found && std::fgets(line, sizeof(line), f))
        found = std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
      std::fclose(f);
      if (found) return size_t(kb) << 10;
    }
#endif
    return SIZE_MAX;
  }

  // Drops blocks idle for longer than idle_, then the least recently freed until `cap` holds.
  void evict_locked(size_t cap, Clock::time_point now, std::list<Block*>& evicted) {
    while (!cache_.empty() && (stats_.cached_bytes > cap || now - cache_.front()->freed > idle_)) {
      evicted.push_back(cache_.front());
      stats_.cached_bytes -= cache_.front()->size;
      ++stats_.evictions;
      cache_.pop_front();
    }
  }

  // The most recently freed buffer of exactly this size (its pages are the likeliest still warm).
  Block* take_cached(size_t rounded) {
    std::list<Block*> evicted;
    Block* found = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      evict_locked(stats_.limit_bytes, Clock::now(), evicted);
      for (auto it = cache_.rbegin(); it != cache_.rend(); ++it) {
        if ((*it)->size == rounded) {
          found = *it;
          cache_.erase(std::next(it).base());
          stats_.cached_bytes -= rounded;
          break;
        }
      }
      ++(found ? stats_.hits : stats_.misses);
    }
    for (Block* e : evicted) destroy(e);
    return found;
  }

  static void release(void* ctx) { huge_page_allocator().put_back(static_cast<Block*>(ctx)); }

  void put_back(Block* b) {
    // Under memory pressure nothing is kept. MemAvailable is a file read (outside the lock), so it
    // is read only for a buffer the cap would keep, not when the cache is off or too small for it.
    bool could_keep;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      could_keep = b->size <= stats_.limit_bytes;
    }
    const bool pressure = could_keep && ram_ > 0 && available_bytes() < ram_ / 8;
    std::list<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const Clock::time_point now = Clock::now();
      const size_t cap = pressure ? 0 : stats_.limit_bytes;
      evict_locked(cap, now, evicted);
      if (b->size <= cap) {
        evict_locked(cap - b->size, now, evicted);  // least recently freed first
        b->freed = now;
        cache_.push_back(b);
        stats_.cached_bytes += b->size;
        stats_.peak_cached_bytes = std::max(stats_.peak_cached_bytes, stats_.cached_bytes);
        b = nullptr;
      }
    }
    for (Block* e : evicted) destroy(e);  // outside the lock: free() can be slow for big blocks
    if (b != nullptr) destroy(b);
  }

  const Clock::duration idle_;
  const size_t ram_;  // physical memory (0: unknown)
  std::mutex mutex_;
  std::list<Block*> cache_;  // oldest first
  OutputCacheStats stats_;
};

// Never destroyed: tensors freed during interpreter shutdown still return their buffers here.
inline HugePageAllocator& huge_page_allocator() {
  static HugePageAllocator* allocator = new HugePageAllocator();
  return *allocator;
}

// at::empty for a CPU output that the kernel is about to fill.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options,
                               at::MemoryFormat format = at::MemoryFormat::Contiguous) {
  return at::detail::empty_generic(sizes, &huge_page_allocator(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), format);
}

}  // namespace tconv::cpu
