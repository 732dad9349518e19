// Allocation of large op outputs on transparent huge pages.
//
// These ops write big outputs once (a 320x480 FCN head is 100 MB). A fresh buffer from malloc is
// mmap'ed 4 KiB pages, and the first-touch page faults cost as much as the kernel itself (28 ms of
// a 65 ms FCN forward here). Buffers of 2 MiB and more are therefore 2 MiB-aligned and advised
// MADV_HUGEPAGE: 512x fewer faults. PyTorch does the same only under THP_MEM_ALLOC_ENABLE=1.
// The tensors are ordinary CPU tensors (resizable, serialisable); only their storage's allocator
// differs.
#pragma once

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tconv::cpu {

class HugePageAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;

  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes < kHugePage) return c10::GetCPUAllocator()->allocate(nbytes);
    const size_t rounded = (nbytes + kHugePage - 1) / kHugePage * kHugePage;
    void* data = nullptr;
    if (posix_memalign(&data, kHugePage, rounded) != 0 || data == nullptr) {
      TORCH_CHECK_WITH(OutOfMemoryError, false, "tconv: failed to allocate ", nbytes, " bytes");
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(data, rounded, MADV_HUGEPAGE);  // advisory: failure just means 4 KiB pages
#endif
    return {data, data, &free_huge, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

 private:
  static void free_huge(void* data) { std::free(data); }
};

inline HugePageAllocator& huge_page_allocator() {
  static HugePageAllocator allocator;
  return allocator;
}

// at::empty for a CPU output that the kernel is about to fill.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options,
                               at::MemoryFormat format = at::MemoryFormat::Contiguous) {
  return at::detail::empty_generic(sizes, &huge_page_allocator(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), format);
}

}  // namespace tconv::cpu
