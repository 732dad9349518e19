// The channels_last (N, H, W, C) kernels of the separable resampling (cpu/separable_resample.h):
// per destination row, combine the taps' source rows into one acc_t row (vectorised along W*C),
// then each destination pixel sums its taps' C-vectors (vectorised along C); or, when that would
// re-read source rows from memory (wide backward tables), resample each source row along W once
// into a ring and combine ring rows. resample_channels_last picks one.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/int_math.h"
#include "common/upsample_tables.h"
#include "cpu/parallel.h"
#include "cpu/resample_rows.h"

namespace tconv::cpu::CPU_CAPABILITY {

// Channels-last rows of C-vectors: out[d, :] = sum_j w[d, j] * row[start[d] + j, :].
template <typename in_t, typename out_t, typename acc_t>
inline void gather_pixels(const in_t* row, int64_t C, const AxisTable<acc_t>& t, out_t* out,
                          bool streaming) {
  for (int64_t d = 0; d < t.dst; ++d)
    combine_rows_to_dst(row + t.start[d] * C, C, t.weight.data() + d * t.taps, t.taps, C, out + d * C,
                        streaming);
}

// channels_last, rows first: per destination row, combine its taps' source rows into one acc_t row
// (vectorised along W*C), then each destination pixel sums its taps' C-vectors.
template <typename scalar_t>
void resample_channels_last_rows_first(const at::Tensor& src, at::Tensor& dst,
                                       const AxisTable<at::opmath_type<scalar_t>>& th,
                                       const AxisTable<at::opmath_type<scalar_t>>& tw, bool streaming,
                                       std::atomic<bool>* nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = src.size(0), C = src.size(1);
  const int64_t src_row = tw.src * C, dst_row = tw.dst * C;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  parallel_for_work(0, N * th.dst, resample_work(src, dst, th, tw), [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> rows(new acc_t[src_row]);
    NonfiniteWatch<scalar_t> watch{nonfinite};
    int64_t checked_n = -1, checked_lo = 0, checked_hi = 0;  // source rows already checked
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / th.dst, d = task % th.dst;
      const scalar_t* base = sp + (n * th.src + th.start[d]) * src_row;
      combine_rows_any(base, src_row, th.weight.data() + d * th.taps, th.taps, src_row, rows.get());
      const int64_t lo = th.start[d], hi = lo + th.taps;
      if (n == checked_n && lo >= checked_lo && lo <= checked_hi) {  // extends the checked range
        if (hi > checked_hi) watch.check(sp + (n * th.src + checked_hi) * src_row, (hi - checked_hi) * src_row);
        checked_hi = std::max(checked_hi, hi);
      } else {
        watch.check(base, th.taps * src_row);
        checked_n = n, checked_lo = lo, checked_hi = hi;
      }
      gather_pixels(rows.get(), C, tw, dp + (n * th.dst + d) * dst_row, streaming);
    }
    watch.flush();
    if (streaming) streaming_fence();
  });
}

// channels_last, W first: each source row is resampled along W once, into a ring of th.taps acc_t
// rows, and each destination row combines its taps' ring rows. Rows first would read every source
// row th.taps * Hd / Hs times, from memory once the taps' rows outgrow the L2 cache: that is the
// backward of an x4 upsampling (8 to 17 taps of 128 KiB rows), which reads grad_output once this way.
// Needs non-decreasing table starts (rows no longer needed are never needed again).
template <typename scalar_t>
void resample_channels_last_w_first(const at::Tensor& src, at::Tensor& dst,
                                    const AxisTable<at::opmath_type<scalar_t>>& th,
                                    const AxisTable<at::opmath_type<scalar_t>>& tw, bool streaming,
                                    std::atomic<bool>* nonfinite) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = src.size(0), C = src.size(1), Hd = th.dst, taps = th.taps;
  const int64_t src_row = tw.src * C, dst_row = tw.dst * C;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  // Blocks of destination rows: each block starts its ring afresh (re-resampling up to taps rows),
  // so blocks are long, but there are enough of them for every thread.
  const int64_t block = std::clamp<int64_t>(N * Hd / (8 * at::get_num_threads()), 1, Hd);
  const int64_t blocks = ceil_div(Hd, block);
  parallel_for_work(0, N * blocks, resample_work(src, dst, th, tw), [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> ring(new acc_t[taps * dst_row]);
    std::vector<const acc_t*> rows(taps);
    NonfiniteWatch<scalar_t> watch{nonfinite};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, d0 = task % blocks * block, d1 = std::min(Hd, d0 + block);
      const scalar_t* splane = sp + n * th.src * src_row;
      int64_t next = th.start[d0];  // first source row not yet in the ring
      for (int64_t d = d0; d < d1; ++d) {
        const int64_t first = th.start[d];
        for (next = std::max(next, first); next < first + taps; ++next) {
          gather_pixels(splane + next * src_row, C, tw, ring.get() + (next % taps) * dst_row, false);
          watch.check(splane + next * src_row, src_row);
        }
        for (int64_t j = 0; j < taps; ++j) rows[j] = ring.get() + ((first + j) % taps) * dst_row;
        combine_row_pointers(rows.data(), th.weight.data() + d * taps, taps, dst_row,
                             dp + (n * Hd + d) * dst_row, streaming);
      }
    }
    watch.flush();
    if (streaming) streaming_fence();
  });
}

template <typename scalar_t>
void resample_channels_last(const at::Tensor& src, at::Tensor& dst,
                            const AxisTable<at::opmath_type<scalar_t>>& th,
                            const AxisTable<at::opmath_type<scalar_t>>& tw, std::atomic<bool>* nonfinite) {
  const int64_t C = src.size(1), Hs = th.src, Hd = th.dst, Ws = tw.src, Wd = tw.dst;
  // Whole vectors per pixel: with C % 16 != 0 the streaming stores would leave scalar edges.
  const bool streaming = dst.nbytes() >= kStreamingBytes && C % 16 == 0;
  // Multiply-adds of each order, and whether one destination row's taps of source rows spill L2.
  const double rows_first = double(Hd) * Ws * C * th.taps + double(Hd) * Wd * C * tw.taps;
  const double w_first = double(Hs) * Wd * C * tw.taps + double(Hd) * Wd * C * th.taps;
  const bool taps_spill = th.taps * Ws * C * int64_t(sizeof(scalar_t)) > (256 << 10);
  if ((w_first < rows_first || (taps_spill && w_first <= 1.25 * rows_first)) && starts_non_decreasing(th))
    resample_channels_last_w_first<scalar_t>(src, dst, th, tw, streaming, nonfinite);
  else
    resample_channels_last_rows_first<scalar_t>(src, dst, th, tw, streaming, nonfinite);
}

}  // namespace tconv::cpu::CPU_CAPABILITY
