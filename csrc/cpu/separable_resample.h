// CPU kernel shared by the upsampling forward and backward: dst = Th * src * Tw^T for every (n, c)
// plane, where Th and Tw are AxisTables (common/upsample_tables.h). The forward passes the
// interpolation tables, the backward their transposes (a gather), so one kernel serves both.
//
// Each destination element is a fixed-order sum computed by exactly one thread, whatever the
// partition, so results are bitwise identical across runs and thread counts. Intermediates are
// acc_t (float for half/bfloat16).
//
// channels_last (N, H, W, C): per destination row, combine the taps' source rows into one acc_t row
// (vectorised along W*C), then each destination pixel sums its taps' C-vectors (vectorised along C);
// or, when that would re-read source rows from memory (wide backward tables), resample each source
// row along W once into a ring and combine ring rows.
// contiguous (N, C, H, W): per plane and block of destination rows, either first resample the
// needed source rows along W (a gather) and then combine rows (vectorised along W), or the
// reverse, whichever costs less; float32 gathers are vectorised.
// Destinations of 32 MiB and more are written with non-temporal stores (float32).
//
// Files: cpu/resample_channels_last.h and cpu/resample_contiguous.h (each layout's kernels),
// cpu/resample_rows.h (the row combinations and helpers both share), and the contiguous layout's
// vectorised W gathers, one strategy per file: cpu/gather_polyphase.h, cpu/gather_lanes.h,
// cpu/gather_rows_transposed.h (their masked loads: cpu/simd_loads.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <atomic>

#include "common/upsample_tables.h"
#include "cpu/resample_channels_last.h"
#include "cpu/resample_contiguous.h"

namespace tconv::cpu::CPU_CAPABILITY {

// dst (same memory format as src, already allocated) = Th * src * Tw^T per plane.
template <typename scalar_t>
void resample_separable(const at::Tensor& src, at::Tensor& dst,
                        const AxisTable<at::opmath_type<scalar_t>>& th,
                        const AxisTable<at::opmath_type<scalar_t>>& tw, bool channels_last,
                        std::atomic<bool>* nonfinite = nullptr) {
  if (dst.numel() == 0) return;
  if (channels_last) resample_channels_last<scalar_t>(src, dst, th, tw, nonfinite);
  else resample_contiguous<scalar_t>(src, dst, th, tw, nonfinite);
}

}  // namespace tconv::cpu::CPU_CAPABILITY
