// Whether a tensor holds only finite values: non-finite inputs take the ops' direct loops instead
// of the fast paths, which multiply structural zeros: Note [NaN/Inf] (docs/ARCHITECTURE.md).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "common/macros.h"

namespace tconv::cpu::CPU_CAPABILITY {

// Exponent field of each floating type: all ones means Inf or NaN. Testing bits in an integer loop
// lets the compiler vectorise the scan (a std::isfinite loop does not), so the check costs a read.
template <typename scalar_t>
struct ExponentBits;
template <> struct ExponentBits<float> { using bits_t = uint32_t; static constexpr bits_t mask = 0x7f800000u; };
template <> struct ExponentBits<double> { using bits_t = uint64_t; static constexpr bits_t mask = 0x7ff0000000000000ull; };
template <> struct ExponentBits<c10::Half> { using bits_t = uint16_t; static constexpr bits_t mask = 0x7c00u; };
template <> struct ExponentBits<c10::BFloat16> { using bits_t = uint16_t; static constexpr bits_t mask = 0x7f80u; };

// True when the n elements at p are all finite.
template <typename scalar_t>
bool span_finite(const scalar_t* data, int64_t n) {
  using bits_t = typename ExponentBits<scalar_t>::bits_t;
  constexpr bits_t mask = ExponentBits<scalar_t>::mask;
  static_assert(sizeof(bits_t) == sizeof(scalar_t), "bit pattern size");
  const bits_t* p = reinterpret_cast<const bits_t*>(data);
  constexpr int64_t kChunk = 4096;  // stop early once a chunk holds a non-finite value
  for (int64_t c = 0; c < n; c += kChunk) {
    const int64_t stop = std::min(n, c + kChunk);
    bits_t bad = 0;
    for (int64_t i = c; i < stop; ++i) bad |= bits_t((p[i] & mask) == mask);
    if (bad != 0) return false;
  }
  return true;
}

// True when every element of a dense tensor (contiguous in some memory format) is finite.
// An AND reduction: the same answer for any thread count.
template <typename scalar_t>
bool all_finite(const at::Tensor& t) {
  const scalar_t* p = t.const_data_ptr<scalar_t>();
  return at::parallel_reduce(
      0, t.numel(), int64_t(1) << 16, true,
      [&](int64_t begin, int64_t end, bool ok) { return ok && span_finite(p + begin, end - begin); },
      [](bool a, bool b) { return a && b; });
}

// Whether any source a kernel reads holds Inf or NaN, checked right after the kernel read it, from
// cache: a separate scan would read the whole input from memory once more (1/8 of the traffic of
// an x2 upsampling; ~1 ms per 33 MB operand of a 1-D Winograd rows pass). The kernel then redoes
// the call on its path for non-finite data (the upsampling forward: PyTorch's unmerged taps, see
// cpu/upsample.cpp; the Winograd rows: the next path). Null `seen`: nothing is checked.
template <typename scalar_t>
struct NonfiniteWatch {
  std::atomic<bool>* seen = nullptr;
  bool bad = false;  // this thread's finding, published by flush()

  void check(const scalar_t* data, int64_t n) {
    if (seen != nullptr && !bad) bad = !span_finite(data, n);
  }
  void flush() {
    if (bad) seen->store(true, std::memory_order_relaxed);
  }
};

// all_finite for a floating tensor of any of the ops' dtypes.
inline bool all_finite_any(const at::Tensor& t) {
  bool finite = true;
  TCONV_DISPATCH_FLOATING_TYPES(t.scalar_type(), "all_finite",
                                  [&] { finite = all_finite<scalar_t>(t); });
  return finite;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
