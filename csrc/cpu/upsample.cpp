// CPU forward of tconv::upsample_bilinear2d and tconv::upsample_bicubic2d (antialias included).
//
// Per axis, the interpolation becomes a table (common/upsample_tables.h): output index o reads a
// fixed number of consecutive inputs with precomputed weights. The 2-D op is the two tables
// applied separably (cpu/separable_resample.h), with a fast path per memory format. The output
// keeps the input's memory format, like PyTorch.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <atomic>

#include "common/macros.h"
#include "common/upsample_args.h"
#include "common/upsample_raw_taps.h"
#include "cpu/output_alloc.h"
#include "cpu/parallel.h"
#include "cpu/resample_volume.h"
#include "cpu/separable_resample.h"
#include "cpu/kernels.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

// Direct 2-D loop over PyTorch's taps (W inner, H outer, as ATen nests them): used when the
// input holds NaN or Inf, Note [NaN/Inf] (docs/ARCHITECTURE.md).
template <typename scalar_t>
void resample_direct(const Tensor& x, Tensor& y, const RawTaps<at::opmath_type<scalar_t>>& th,
                     const RawTaps<at::opmath_type<scalar_t>>& tw) {
  const int64_t N = y.size(0), C = y.size(1), Ho = y.size(2), Wo = y.size(3);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), xs2 = x.stride(2), xs3 = x.stride(3);
  const int64_t ys0 = y.stride(0), ys1 = y.stride(1), ys2 = y.stride(2), ys3 = y.stride(3);
  const auto taps_h = view_of(th), taps_w = view_of(tw);
  parallel_for_work(0, N * C, N * C * int64_t(th.index.size() * tw.index.size()), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / C, c = p % C;
      const scalar_t* xc = xp + n * xs0 + c * xs1;
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow)
          yp[n * ys0 + c * ys1 + oh * ys2 + ow * ys3] =
              static_cast<scalar_t>(raw_taps_sum(xc, xs2, xs3, taps_h, oh, taps_w, ow));
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
  TCONV_DISPATCH_FLOATING_TYPES(
      input.scalar_type(),
      MODE == UpsampleMode::Bilinear ? "upsample_bilinear2d" : "upsample_bicubic2d", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const ResampleAxes<acc_t> axes = resample_axes<acc_t>(g, MODE, align_corners, antialias);
        const ResampleTables<acc_t> t = resample_tables(axes, /*backward=*/false);
        // When the kernel saw a non-finite source, the direct loop over PyTorch's taps rewrites
        // every output: Note [NaN/Inf] (docs/ARCHITECTURE.md).
        std::atomic<bool> nonfinite{false};
        resample_separable<scalar_t>(x, y, t.h, t.w, fmt == at::MemoryFormat::ChannelsLast, &nonfinite);
        if (nonfinite.load()) resample_direct<scalar_t>(x, y, raw_taps(axes.h), raw_taps(axes.w));
      });
  return y;
}

}  // namespace

// Entry points (cpu/kernels.h), compiled once per CPU capability (cpu/capability/).
Tensor upsample_bilinear2d_cpu(const Tensor& input, at::IntArrayRef output_size, bool align_corners,
    bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  return upsample2d_cpu<UpsampleMode::Bilinear>(input, output_size, align_corners, antialias, scale_h, scale_w);
}

Tensor upsample_bicubic2d_cpu(const Tensor& input, at::IntArrayRef output_size, bool align_corners,
    bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  return upsample2d_cpu<UpsampleMode::Bicubic>(input, output_size, align_corners, antialias, scale_h, scale_w);
}

// upsample_linear1d / upsample_trilinear3d: the output in the input's memory format (contiguous,
// or channels_last_3d), like PyTorch's.
Tensor upsample_linear_nd_cpu(const Tensor& input, at::IntArrayRef output_size, bool align_corners,
                              at::ArrayRef<double> scales) {
  const int64_t dims = int64_t(output_size.size());
  const bool cl = input.dim() == 5 && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d;
  const at::MemoryFormat fmt = cl ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  const Tensor x = input.contiguous(fmt);
  std::vector<int64_t> sizes = {x.size(0), x.size(1)};
  sizes.insert(sizes.end(), output_size.begin(), output_size.end());
  Tensor y = empty_output(sizes, input.options(), fmt);
  TCONV_DISPATCH_FLOATING_TYPES(input.scalar_type(), "upsample_linear_nd", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto axes = linear_volume_axes<acc_t>(x.sizes().slice(2), output_size, align_corners, scales);
    const auto t = linear_volume_tables(axes, dims, /*backward=*/false);
    std::atomic<bool> nonfinite{false};
    resample_volume<scalar_t>(x, y, t[0], t[1], t[2], cl, &nonfinite);
    if (nonfinite.load()) {
      const auto taps = [&](int64_t k) { return k < 3 - dims ? copy_raw_taps<acc_t>(1) : raw_taps(axes[k]); };
      if (!cl) {
        resample_volume_direct<scalar_t>(x, y, taps(0), taps(1), taps(2));
      } else {  // the direct loop on contiguous copies (a rare path)
        Tensor yc = at::empty(sizes, input.options());
        resample_volume_direct<scalar_t>(x.contiguous(), yc, taps(0), taps(1), taps(2));
        y.copy_(yc);
      }
    }
  });
  return y;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
