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

// all_finite for a floating tensor of any of the ops' dtypes.
inline bool all_finite_any(const at::Tensor& t) {
  bool finite = true;
  TCONV_DISPATCH_FLOATING_TYPES(t.scalar_type(), "all_finite",
                                  [&] { finite = all_finite<scalar_t>(t); });
  return finite;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
