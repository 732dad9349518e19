// Allocation of large op outputs: on transparent huge pages, recycled through a bounded cache.
//
// These ops write big outputs once (a 320x480 FCN head is 100 MB, an x2 upsampling of
// (8, 64, 128, 128) is 134 MB). A fresh buffer from malloc is mmap'ed 4 KiB pages that the kernel
// zeroes on first touch: those faults cost as much as the op itself (28 ms of a 65 ms FCN forward
// here). Buffers of 2 MiB and more are therefore 2 MiB-aligned and advised MADV_HUGEPAGE (512x
// fewer faults; PyTorch does this only under THP_MEM_ALLOC_ENABLE=1), and when such a tensor is
// freed its buffer goes to a cache that the next output of the same rounded size reuses, warm: a
// training loop or a benchmark allocates the same shapes every step, and then pays neither faults
// nor zeroing (x2 bilinear forward: ~9 ms of ~25 ms). This is what PyTorch's CUDA caching allocator
// does on the GPU, with a cap: the cache holds at most TCONV_CPU_CACHE_MB MiB (default min(1 GiB,
// RAM / 16); 0 disables it), evicting the least recently freed buffers first, and
// tconv.empty_cache() releases it. The tensors are ordinary CPU tensors (resizable, serialisable);
// only their storage's allocator differs.
#pragma once

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

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

class HugePageAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;

  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes < kHugePage) return c10::GetCPUAllocator()->allocate(nbytes);
    const size_t rounded = (nbytes + kHugePage - 1) / kHugePage * kHugePage;
    Block* block = take_cached(rounded);
    if (block == nullptr) block = new Block{map_huge(rounded), rounded};
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
      cached_bytes_ = 0;
    }
    size_t bytes = 0;
    for (Block* b : drop) bytes += b->size, destroy(b);
    return bytes;
  }

  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }

 private:
  struct Block {
    void* data;
    size_t size;  // a multiple of kHugePage
  };

  HugePageAllocator() : limit_(cache_limit()) {}
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

  static size_t cache_limit() {
    if (const char* env = std::getenv("TCONV_CPU_CACHE_MB")) {
      char* end = nullptr;
      const unsigned long long mb = std::strtoull(env, &end, 10);
      if (end != env && *end == '\0') return size_t(mb) << 20;
    }
    size_t limit = size_t(1) << 30;
#if defined(__linux__)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) limit = std::min(limit, size_t(pages) * size_t(page) / 16);
#endif
    return limit;
  }

  // The most recently freed buffer of exactly this size (its pages are the likeliest still warm).
  Block* take_cached(size_t rounded) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = cache_.rbegin(); it != cache_.rend(); ++it) {
      if ((*it)->size == rounded) {
        Block* b = *it;
        cache_.erase(std::next(it).base());
        cached_bytes_ -= rounded;
        return b;
      }
    }
    return nullptr;
  }

  static void release(void* ctx) { huge_page_allocator().put_back(static_cast<Block*>(ctx)); }

  void put_back(Block* b) {
    std::list<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (b->size <= limit_) {
        while (cached_bytes_ + b->size > limit_) {  // least recently freed first
          evicted.push_back(cache_.front());
          cached_bytes_ -= cache_.front()->size;
          cache_.pop_front();
        }
        cache_.push_back(b);
        cached_bytes_ += b->size;
        b = nullptr;
      }
    }
    for (Block* e : evicted) destroy(e);  // outside the lock: free() can be slow for big blocks
    if (b != nullptr) destroy(b);
  }

  const size_t limit_;
  std::mutex mutex_;
  std::list<Block*> cache_;  // oldest first
  size_t cached_bytes_ = 0;
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
