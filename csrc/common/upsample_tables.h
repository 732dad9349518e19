// Per-axis index/weight tables of the separable resampling kernels (host code, shared by the CPU
// kernels and, copied to the device, by CUDA kernels).
//
// A table maps a source axis of length `src` to a destination axis of length `dst`: destination
// d is  sum_{j < taps} weight[d * taps + j] * source[start[d] + j].  Every destination reads the
// same number of taps, zero-padded, with start[d] in [0, src - taps], so kernels run fixed-length
// loops with no bounds checks.
//
// forward_table gives the forward op (source = input, destination = output). transpose_table
// turns it into the backward op's GATHER (source = grad_output, destination = grad_input): for
// each input index, the contiguous range of output indices that read it and their weights, summed
// in increasing output order. No scatter, no atomics, and the order is fixed, so the gradient is
// bitwise reproducible for any thread count.
//
// resample_axes and resample_tables set up both axes of one op: every upsampling kernel (CPU and
// CUDA, forward and backward) starts from them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/upsample_args.h"
#include "common/upsample_index.h"

namespace tconv {

template <typename acc_t>
struct AxisTable {
  int64_t src = 0, dst = 0, taps = 0;
  std::vector<int64_t> start;   // dst entries
  std::vector<acc_t> weight;    // dst * taps entries
};

// Pads per-destination ranges (first[d], w[d * width ..], count[d]) to a common tap count.
template <typename acc_t>
AxisTable<acc_t> pad_ranges(int64_t src, int64_t dst, const std::vector<int64_t>& first,
                            const std::vector<int64_t>& count, const std::vector<acc_t>& w,
                            int64_t width) {
  AxisTable<acc_t> t;
  t.src = src;
  t.dst = dst;
  int64_t taps = 1;
  for (int64_t d = 0; d < dst; ++d) taps = std::max(taps, count[d]);
  t.taps = std::min(taps, src);
  t.start.assign(dst, 0);
  t.weight.assign(dst * t.taps, acc_t(0));
  for (int64_t d = 0; d < dst; ++d) {
    if (count[d] == 0) {  // read nothing: keep start non-decreasing so row blocks stay compact
      t.start[d] = d > 0 ? t.start[d - 1] : 0;
      continue;
    }
    const int64_t s = std::min(first[d], src - t.taps);  // shift left at the far border
    t.start[d] = s;
    for (int64_t j = 0; j < count[d]; ++j) t.weight[d * t.taps + (first[d] - s) + j] = w[d * width + j];
  }
  return t;
}

// An axis that is copied (n -> n, one tap of weight 1): the axes PyTorch's 1-D op does not have when
// the 3-D kernels run it (cpu/resample_volume.h).
template <typename acc_t>
AxisTable<acc_t> copy_table(int64_t n) {
  AxisTable<acc_t> t;
  t.src = t.dst = n;
  t.taps = 1;
  t.start.resize(n);
  for (int64_t d = 0; d < n; ++d) t.start[d] = d;
  t.weight.assign(n, acc_t(1));
  return t;
}

template <typename acc_t>
bool is_copy_table(const AxisTable<acc_t>& t) {
  if (t.src != t.dst || t.taps != 1) return false;
  for (int64_t d = 0; d < t.dst; ++d)
    if (t.start[d] != d || t.weight[d] != acc_t(1)) return false;
  return true;
}

// Whether consecutive destinations never start further left: then the sources of any block of
// destinations are one range, which the blocked kernels (CPU W-first ring, CUDA tiles) rely on.
template <typename acc_t>
bool starts_non_decreasing(const AxisTable<acc_t>& t) {
  for (int64_t d = 1; d < t.dst; ++d)
    if (t.start[d] < t.start[d - 1]) return false;
  return true;
}

template <typename acc_t>
AxisTable<acc_t> forward_table(const AxisResample<acc_t>& a) {
  const int64_t width = std::max<int64_t>(max_taps<acc_t>(a.mode, a.antialias, a.scale), 1);
  std::vector<int64_t> first(a.out), count(a.out);
  std::vector<acc_t> w(a.out * width, acc_t(0));
  for (int64_t o = 0; o < a.out; ++o) count[o] = axis_taps<acc_t>(a, o, first[o], w.data() + o * width);
  return pad_ranges<acc_t>(a.in, a.out, first, count, w, width);
}

// The adjoint: for each source index of f, the destinations that read it with a nonzero weight.
template <typename acc_t>
AxisTable<acc_t> transpose_table(const AxisTable<acc_t>& f) {
  std::vector<int64_t> lo(f.src, f.dst), hi(f.src, -1);
  for (int64_t d = 0; d < f.dst; ++d)
    for (int64_t j = 0; j < f.taps; ++j)
      if (f.weight[d * f.taps + j] != acc_t(0)) {
        const int64_t s = f.start[d] + j;
        lo[s] = std::min(lo[s], d);
        hi[s] = std::max(hi[s], d);
      }
  std::vector<int64_t> count(f.src);
  int64_t width = 1;
  for (int64_t s = 0; s < f.src; ++s) {
    count[s] = hi[s] >= lo[s] ? hi[s] - lo[s] + 1 : 0;
    width = std::max(width, count[s]);
  }
  std::vector<acc_t> w(f.src * width, acc_t(0));
  for (int64_t d = 0; d < f.dst; ++d)
    for (int64_t j = 0; j < f.taps; ++j) {
      const acc_t v = f.weight[d * f.taps + j];
      if (v != acc_t(0)) {
        const int64_t s = f.start[d] + j;
        w[s * width + (d - lo[s])] = v;
      }
    }
  return pad_ranges<acc_t>(f.dst, f.src, lo, count, w, width);
}

// Both axes of one 2-D resampling: H (g.H inputs to g.Ho outputs) and W.
template <typename acc_t>
struct ResampleAxes {
  AxisResample<acc_t> h, w;
};

template <typename acc_t>
ResampleAxes<acc_t> resample_axes(const Upsample2dGeometry& g, UpsampleMode mode,
                                  bool align_corners, bool antialias) {
  return {make_axis_resample<acc_t>(g.H, g.Ho, mode, align_corners, antialias, g.scale_h),
          make_axis_resample<acc_t>(g.W, g.Wo, mode, align_corners, antialias, g.scale_w)};
}

// The tables the separable kernels apply per axis: the forward's (input to output), or for the
// backward their transposes (grad_output to grad_input).
template <typename acc_t>
struct ResampleTables {
  AxisTable<acc_t> h, w;
};

template <typename acc_t>
ResampleTables<acc_t> resample_tables(const ResampleAxes<acc_t>& axes, bool backward) {
  if (!backward) return {forward_table(axes.h), forward_table(axes.w)};
  return {transpose_table(forward_table(axes.h)), transpose_table(forward_table(axes.w))};
}

}  // namespace tconv
