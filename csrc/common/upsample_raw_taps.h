// PyTorch's own taps of one resampling axis, unmerged, and the direct 2-D sum over them (shared by
// the CPU and CUDA kernels' NaN/Inf paths).
//
// Per output, the (index, weight) pairs ATen's CPU kernels multiply, zero weights and repeated
// clamped border indices included. For finite input they give what tconv's merged, zero-padded
// tables give (common/upsample_tables.h); with NaN/Inf only they put NaN and Inf where PyTorch
// does, so the forward's non-finite paths use them: Note [NaN/Inf] (docs/ARCHITECTURE.md).
#pragma once

#include <cstdint>
#include <vector>

#include "common/upsample_index.h"

namespace tconv {

// Output o's taps are entries [begin[o], begin[o + 1]) of index/weight.
template <typename acc_t>
struct RawTaps {
  std::vector<int64_t> begin, index;
  std::vector<acc_t> weight;
};

template <typename acc_t>
RawTaps<acc_t> raw_taps(const AxisResample<acc_t>& a) {
  RawTaps<acc_t> r;
  std::vector<acc_t> buf(max_taps<acc_t>(a.mode, a.antialias, a.scale) + 4);
  auto push = [&](int64_t i, acc_t w) { r.index.push_back(i); r.weight.push_back(w); };
  for (int64_t o = 0; o < a.out; ++o) {
    r.begin.push_back(int64_t(r.index.size()));
    if (a.antialias) {  // separable AA: an axis of unchanged size is copied
      if (a.in == a.out) {
        push(o, acc_t(1));
      } else {
        int64_t start = 0;
        const int64_t n = axis_taps<acc_t>(a, o, start, buf.data());
        for (int64_t j = 0; j < n; ++j) push(start + j, buf[j]);
      }
    } else if (a.mode == UpsampleMode::Bilinear) {  // compute_source_index_and_lambda
      if (a.in == a.out) {
        push(o, acc_t(1));
        push(o, acc_t(0));
      } else {
        int64_t idx[2];
        acc_t w[2];
        bilinear_taps<acc_t>(a, o, idx, w);
        for (int j = 0; j < 2; ++j) push(idx[j], w[j]);
      }
    } else {  // compute_indices_weights_cubic
      int64_t idx[4];
      acc_t w[4];
      bicubic_taps<acc_t>(a, o, idx, w);
      for (int j = 0; j < 4; ++j) push(idx[j], w[j]);
    }
  }
  r.begin.push_back(int64_t(r.index.size()));
  return r;
}

// An axis that is copied: output o reads input o with weight 1 (copy_table's raw taps).
template <typename acc_t>
RawTaps<acc_t> copy_raw_taps(int64_t n) {
  RawTaps<acc_t> r;
  for (int64_t o = 0; o < n; ++o) {
    r.begin.push_back(o);
    r.index.push_back(o);
    r.weight.push_back(acc_t(1));
  }
  r.begin.push_back(n);
  return r;
}

// A RawTaps' arrays wherever they live (host vectors, or a device copy).
template <typename acc_t>
struct RawTapsView {
  const int64_t* begin;
  const int64_t* index;
  const acc_t* weight;
};

template <typename acc_t>
RawTapsView<acc_t> view_of(const RawTaps<acc_t>& r) {
  return {r.begin.data(), r.index.data(), r.weight.data()};
}

// Output (oh, ow) of one plane summed over PyTorch's taps in ATen's order: W inner, H outer.
template <typename scalar_t, typename acc_t>
TCONV_HOST_DEVICE acc_t raw_taps_sum(const scalar_t* plane, int64_t stride_h, int64_t stride_w,
                                     RawTapsView<acc_t> th, int64_t oh, RawTapsView<acc_t> tw,
                                     int64_t ow) {
  acc_t acc = 0;
  for (int64_t i = th.begin[oh]; i < th.begin[oh + 1]; ++i) {
    const scalar_t* row = plane + th.index[i] * stride_h;
    acc_t inner = 0;
    for (int64_t j = tw.begin[ow]; j < tw.begin[ow + 1]; ++j)
      inner += tw.weight[j] * static_cast<acc_t>(row[tw.index[j] * stride_w]);
    acc += th.weight[i] * inner;
  }
  return acc;
}

}  // namespace tconv
