// CPU kernel shared by the upsampling forward and backward: dst = Th * src * Tw^T for every (n, c)
// plane, where Th and Tw are AxisTables (common/upsample_tables.h). The forward passes the
// interpolation tables, the backward their transposes (a gather), so one kernel serves both.
//
// Each destination element is a fixed-order sum computed by exactly one thread, whatever the
// partition, so results are bitwise identical across runs and thread counts. Intermediates are
// acc_t (float for half/bfloat16).
//
// channels_last (N, H, W, C): per destination row, combine the taps' source rows into one acc_t row
// (vectorised along W*C), then each destination pixel sums its taps' C-vectors (vectorised along C).
// contiguous (N, C, H, W): per plane and block of destination rows, either first resample the
// needed source rows along W (a gather) and then combine rows (vectorised along W), or the
// reverse, whichever does fewer gathers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>

#include "common/upsample_tables.h"

namespace tconv::cpu {

// out[x] = sum_j w[j] * rows[j][x], x < width. TAPS > 0 fixes the tap count at compile time.
template <int TAPS, typename in_t, typename out_t, typename acc_t>
inline void combine_rows(const in_t* base, int64_t row_stride, const acc_t* w, int64_t taps,
                         int64_t width, out_t* __restrict out) {
  const int64_t n = TAPS > 0 ? TAPS : taps;
#pragma omp simd
  for (int64_t x = 0; x < width; ++x) {
    acc_t acc = w[0] * static_cast<acc_t>(base[x]);
    for (int64_t j = 1; j < n; ++j) acc += w[j] * static_cast<acc_t>(base[j * row_stride + x]);
    out[x] = static_cast<out_t>(acc);
  }
}

template <typename in_t, typename out_t, typename acc_t>
inline void combine_rows_any(const in_t* base, int64_t row_stride, const acc_t* w, int64_t taps,
                             int64_t width, out_t* out) {
  switch (taps) {
    case 1: return combine_rows<1>(base, row_stride, w, taps, width, out);
    case 2: return combine_rows<2>(base, row_stride, w, taps, width, out);
    case 3: return combine_rows<3>(base, row_stride, w, taps, width, out);
    case 4: return combine_rows<4>(base, row_stride, w, taps, width, out);
    default: return combine_rows<0>(base, row_stride, w, taps, width, out);
  }
}

// Contiguous rows: out[d] = sum_j w[d, j] * row[start[d] + j] (a gather along W).
template <int TAPS, typename in_t, typename out_t, typename acc_t>
inline void gather_row(const in_t* row, const AxisTable<acc_t>& t, out_t* __restrict out) {
  const int64_t taps = TAPS > 0 ? TAPS : t.taps;
  const int64_t* start = t.start.data();
  const acc_t* w = t.weight.data();
  for (int64_t d = 0; d < t.dst; ++d) {
    const in_t* s = row + start[d];
    const acc_t* wd = w + d * taps;
    acc_t acc = wd[0] * static_cast<acc_t>(s[0]);
    for (int64_t j = 1; j < taps; ++j) acc += wd[j] * static_cast<acc_t>(s[j]);
    out[d] = static_cast<out_t>(acc);
  }
}

template <typename in_t, typename out_t, typename acc_t>
inline void gather_row_any(const in_t* row, const AxisTable<acc_t>& t, out_t* out) {
  switch (t.taps) {
    case 1: return gather_row<1>(row, t, out);
    case 2: return gather_row<2>(row, t, out);
    case 4: return gather_row<4>(row, t, out);
    default: return gather_row<0>(row, t, out);
  }
}

// Channels-last rows of C-vectors: out[d, :] = sum_j w[d, j] * row[start[d] + j, :].
template <int TAPS, typename out_t, typename acc_t>
inline void gather_pixels(const acc_t* row, int64_t C, const AxisTable<acc_t>& t, out_t* out) {
  const int64_t taps = TAPS > 0 ? TAPS : t.taps;
  for (int64_t d = 0; d < t.dst; ++d) {
    const acc_t* s = row + t.start[d] * C;
    const acc_t* wd = t.weight.data() + d * taps;
    out_t* __restrict o = out + d * C;
    combine_rows<TAPS>(s, C, wd, taps, C, o);
  }
}

template <typename out_t, typename acc_t>
inline void gather_pixels_any(const acc_t* row, int64_t C, const AxisTable<acc_t>& t, out_t* out) {
  switch (t.taps) {
    case 1: return gather_pixels<1>(row, C, t, out);
    case 2: return gather_pixels<2>(row, C, t, out);
    case 3: return gather_pixels<3>(row, C, t, out);
    case 4: return gather_pixels<4>(row, C, t, out);
    default: return gather_pixels<0>(row, C, t, out);
  }
}

template <typename scalar_t>
void resample_channels_last(const at::Tensor& src, at::Tensor& dst,
                            const AxisTable<at::opmath_type<scalar_t>>& th,
                            const AxisTable<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = src.size(0), C = src.size(1);
  const int64_t src_row = tw.src * C, dst_row = tw.dst * C;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  const int64_t tasks = N * th.dst;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> rows(new acc_t[src_row]);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / th.dst, d = task % th.dst;
      const scalar_t* base = sp + (n * th.src + th.start[d]) * src_row;
      combine_rows_any(base, src_row, th.weight.data() + d * th.taps, th.taps, src_row, rows.get());
      gather_pixels_any(rows.get(), C, tw, dp + (n * th.dst + d) * dst_row);
    }
  });
}

template <typename scalar_t>
void resample_contiguous(const at::Tensor& src, at::Tensor& dst,
                         const AxisTable<at::opmath_type<scalar_t>>& th,
                         const AxisTable<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t planes = src.size(0) * src.size(1);
  const int64_t Hs = th.src, Ws = tw.src, Hd = th.dst, Wd = tw.dst;
  // Work of each order, gathers weighted 3x (they do not vectorise).
  const double gather_cost = 3.0;
  const double rows_first = Hs * double(Wd) * tw.taps * gather_cost + Hd * double(Wd) * th.taps;
  const double cols_first = Hd * double(Ws) * th.taps + Hd * double(Wd) * tw.taps * gather_cost;
  const bool gather_source_rows = rows_first <= cols_first;
  // Blocks of destination rows whose source rows (resampled along W) fit in ~128 KiB.
  const int64_t rows_per_dst = std::max<int64_t>(Hs / std::max<int64_t>(Hd, 1), 1);
  const int64_t block = std::clamp<int64_t>(
      (128 << 10) / int64_t(sizeof(acc_t)) / std::max<int64_t>(Wd * rows_per_dst, 1), 1, Hd);
  const int64_t blocks = (Hd + block - 1) / block;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, planes * blocks, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<acc_t[]> buf;
    int64_t buf_size = 0;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t p = task / blocks, b = task % blocks;
      const int64_t d0 = b * block, d1 = std::min(Hd, d0 + block);
      const scalar_t* splane = sp + p * Hs * Ws;
      scalar_t* dplane = dp + p * Hd * Wd;
      if (gather_source_rows) {
        const int64_t r0 = th.start[d0], r1 = th.start[d1 - 1] + th.taps;  // start is non-decreasing
        if (buf_size < (r1 - r0) * Wd) buf_size = (r1 - r0) * Wd, buf.reset(new acc_t[buf_size]);
        for (int64_t r = r0; r < r1; ++r) gather_row_any(splane + r * Ws, tw, buf.get() + (r - r0) * Wd);
        for (int64_t d = d0; d < d1; ++d)
          combine_rows_any(buf.get() + (th.start[d] - r0) * Wd, Wd, th.weight.data() + d * th.taps,
                           th.taps, Wd, dplane + d * Wd);
      } else {
        if (buf_size < Ws) buf_size = Ws, buf.reset(new acc_t[buf_size]);
        for (int64_t d = d0; d < d1; ++d) {
          combine_rows_any(splane + th.start[d] * Ws, Ws, th.weight.data() + d * th.taps, th.taps, Ws,
                           buf.get());
          gather_row_any(buf.get(), tw, dplane + d * Wd);
        }
      }
    }
  });
}

// dst (same memory format as src, already allocated) = Th * src * Tw^T per plane.
template <typename scalar_t>
void resample_separable(const at::Tensor& src, at::Tensor& dst,
                        const AxisTable<at::opmath_type<scalar_t>>& th,
                        const AxisTable<at::opmath_type<scalar_t>>& tw, bool channels_last) {
  if (dst.numel() == 0) return;
  if (channels_last) resample_channels_last<scalar_t>(src, dst, th, tw);
  else resample_contiguous<scalar_t>(src, dst, th, tw);
}

}  // namespace tconv::cpu
