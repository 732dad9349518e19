// CPU forward of tconv::upsample_bilinear2d and tconv::upsample_bicubic2d (antialias included).
//
// Per axis, the interpolation becomes a table (common/upsample_tables.h): output index o reads a
// fixed number of consecutive inputs with precomputed weights. The 2-D op is the two tables
// applied separably (cpu/separable_resample.h), with a fast path per memory format. The output
// keeps the input's memory format, like PyTorch.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/upsample_args.h"
#include "cpu/output_alloc.h"
#include "cpu/separable_resample.h"

namespace tconv::cpu {
namespace {

using at::Tensor;

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
        const auto th = forward_table(
            make_axis_resample<acc_t>(g.H, g.Ho, MODE, align_corners, antialias, g.scale_h));
        const auto tw = forward_table(
            make_axis_resample<acc_t>(g.W, g.Wo, MODE, align_corners, antialias, g.scale_w));
        resample_separable<scalar_t>(x, y, th, tw, fmt == at::MemoryFormat::ChannelsLast);
      });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CPU, m) {
  m.impl("upsample_bilinear2d", &upsample2d_cpu<UpsampleMode::Bilinear>);
  m.impl("upsample_bicubic2d", &upsample2d_cpu<UpsampleMode::Bicubic>);
}

}  // namespace tconv::cpu
