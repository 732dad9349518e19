// Whether a tensor holds only finite values: the CPU kernels' fast paths multiply structural zeros
// (padding taps, zero weights), which is exact for finite data but turns Inf/NaN into NaN where
// PyTorch has none, so non-finite inputs take the ops' direct loops instead.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cmath>

namespace tconv::cpu {

// True when every element of a dense tensor (contiguous in some memory format) is finite.
// An AND reduction: the same answer for any thread count.
template <typename scalar_t>
bool all_finite(const at::Tensor& t) {
  const scalar_t* p = t.const_data_ptr<scalar_t>();
  return at::parallel_reduce(
      0, t.numel(), int64_t(1) << 16, true,
      [&](int64_t begin, int64_t end, bool ok) {
        bool all = true;
        for (int64_t i = begin; i < end; ++i)
          all &= std::isfinite(static_cast<at::opmath_type<scalar_t>>(p[i]));
        return ok && all;
      },
      [](bool a, bool b) { return a && b; });
}

}  // namespace tconv::cpu
