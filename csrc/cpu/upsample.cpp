// CPU forward of tconv::upsample_bilinear2d and tconv::upsample_bicubic2d (antialias included).
//
// Per axis, the interpolation becomes a table (common/upsample_tables.h): output index o reads a
// fixed number of consecutive inputs with precomputed weights. The 2-D op is the two tables
// applied separably (cpu/separable_resample.h), with a fast path per memory format. The output
// keeps the input's memory format, like PyTorch.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common/upsample_args.h"
#include "cpu/finite.h"
#include "cpu/output_alloc.h"
#include "cpu/separable_resample.h"

namespace tconv::cpu {
namespace {

using at::Tensor;

// PyTorch's own taps of one axis, unmerged: per output, the (index, weight) pairs ATen's CPU
// kernels multiply, zero weights and repeated clamped border indices included. For finite input
// they give tconv's merged tables' result; with NaN/Inf they decide where NaN and Inf land
// (0 * Inf = NaN, Inf * w1 + Inf * w2 may be NaN), so the non-finite fallback uses them.
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

// Direct 2-D loop over PyTorch's taps (W inner, H outer, as ATen nests them): used when the
// input holds NaN or Inf, so they propagate to exactly the outputs PyTorch's kernels reach.
template <typename scalar_t>
void resample_direct(const Tensor& x, Tensor& y, const RawTaps<at::opmath_type<scalar_t>>& th,
                     const RawTaps<at::opmath_type<scalar_t>>& tw) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = y.size(0), C = y.size(1), Ho = y.size(2), Wo = y.size(3);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), xs2 = x.stride(2), xs3 = x.stride(3);
  const int64_t ys0 = y.stride(0), ys1 = y.stride(1), ys2 = y.stride(2), ys3 = y.stride(3);
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / C, c = p % C;
      const scalar_t* xc = xp + n * xs0 + c * xs1;
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          acc_t acc = 0;
          for (int64_t i = th.begin[oh]; i < th.begin[oh + 1]; ++i) {
            acc_t inner = 0;
            for (int64_t j = tw.begin[ow]; j < tw.begin[ow + 1]; ++j)
              inner += tw.weight[j] * static_cast<acc_t>(xc[th.index[i] * xs2 + tw.index[j] * xs3]);
            acc += th.weight[i] * inner;
          }
          yp[n * ys0 + c * ys1 + oh * ys2 + ow * ys3] = static_cast<scalar_t>(acc);
        }
    }
  });
}

template <UpsampleMode MODE>
Tensor upsample2d_cpu(const Tensor& input, at::IntArrayRef output_size, bool align_corners,
                      bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  const Upsample2dGeometry g = upsample2d_geometry(input, output_size, scale_h, scale_w);
  const at::MemoryFormat fmt = input.suggest_memory_format();
  Tensor y = empty_output({g.N, g.C, g.Ho, g.Wo}, input.options(), fmt);
  const Tensor x = input.contiguous(fmt);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(),
      MODE == UpsampleMode::Bilinear ? "upsample_bilinear2d" : "upsample_bicubic2d", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto ah = make_axis_resample<acc_t>(g.H, g.Ho, MODE, align_corners, antialias, g.scale_h);
        const auto aw = make_axis_resample<acc_t>(g.W, g.Wo, MODE, align_corners, antialias, g.scale_w);
        if (y.numel() != 0 && !all_finite<scalar_t>(x)) {
          resample_direct<scalar_t>(x, y, raw_taps(ah), raw_taps(aw));
          return;
        }
        resample_separable<scalar_t>(x, y, forward_table(ah), forward_table(aw),
                                     fmt == at::MemoryFormat::ChannelsLast);
      });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CPU, m) {
  m.impl("upsample_bilinear2d", &upsample2d_cpu<UpsampleMode::Bilinear>);
  m.impl("upsample_bicubic2d", &upsample2d_cpu<UpsampleMode::Bicubic>);
}

}  // namespace tconv::cpu
