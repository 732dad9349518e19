// CPU backward of tconv::upsample_bilinear2d / upsample_bicubic2d: grad_input = Th^T * grad_output
// * Tw, computed as a GATHER. Each axis table of the forward is transposed (common/
// upsample_tables.h): every input index lists the contiguous range of outputs that read it and
// their weights, and sums them in increasing output order. No atomics, no scatter, and the order
// is fixed, so the gradient is bitwise reproducible across runs and thread counts; the same kernel
// as the forward (cpu/separable_resample.h) applies the transposed tables.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/macros.h"
#include "common/upsample_args.h"
#include "cpu/output_alloc.h"
#include "cpu/resample_volume.h"
#include "cpu/separable_resample.h"
#include "cpu/kernels.h"

namespace tconv::cpu::CPU_CAPABILITY {
namespace {

using at::Tensor;

template <UpsampleMode MODE>
Tensor upsample2d_backward_cpu(const Tensor& grad_output, at::IntArrayRef input_size,
                               bool align_corners, bool antialias, std::optional<double> scale_h,
                               std::optional<double> scale_w) {
  const Upsample2dGeometry g = upsample2d_backward_geometry(grad_output, input_size, scale_h, scale_w);
  const at::MemoryFormat fmt = grad_output.suggest_memory_format();
  Tensor grad_input = empty_output({g.N, g.C, g.H, g.W}, grad_output.options(), fmt);
  const Tensor go = grad_output.contiguous(fmt);
  TCONV_DISPATCH_FLOATING_TYPES(
      grad_output.scalar_type(),
      MODE == UpsampleMode::Bilinear ? "upsample_bilinear2d_backward" : "upsample_bicubic2d_backward",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const ResampleTables<acc_t> t =
            resample_tables(resample_axes<acc_t>(g, MODE, align_corners, antialias), /*backward=*/true);
        resample_separable<scalar_t>(go, grad_input, t.h, t.w, fmt == at::MemoryFormat::ChannelsLast);
      });
  return grad_input;
}

}  // namespace

// Entry points (cpu/kernels.h), compiled once per CPU capability (cpu/capability/).
Tensor upsample_bilinear2d_backward_cpu(const Tensor& grad_output, at::IntArrayRef input_size, bool align_corners,
    bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  return upsample2d_backward_cpu<UpsampleMode::Bilinear>(grad_output, input_size, align_corners, antialias, scale_h, scale_w);
}

Tensor upsample_bicubic2d_backward_cpu(const Tensor& grad_output, at::IntArrayRef input_size, bool align_corners,
    bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  return upsample2d_backward_cpu<UpsampleMode::Bicubic>(grad_output, input_size, align_corners, antialias, scale_h, scale_w);
}

// The backward of upsample_linear_nd_cpu (cpu/upsample.cpp): the same volume kernel on the
// transposed tables; input_size is the input's full size, the gradient in grad_output's memory
// format (contiguous or channels_last_3d).
Tensor upsample_linear_nd_backward_cpu(const Tensor& grad_output, at::IntArrayRef input_size, bool align_corners,
                                       at::ArrayRef<double> scales) {
  const int64_t dims = int64_t(input_size.size()) - 2;
  const bool cl = grad_output.dim() == 5 && grad_output.suggest_memory_format() == at::MemoryFormat::ChannelsLast3d;
  const at::MemoryFormat fmt = cl ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
  const Tensor go = grad_output.contiguous(fmt);
  Tensor grad_input = empty_output(input_size, grad_output.options(), fmt);
  TCONV_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "upsample_linear_nd_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto axes = linear_volume_axes<acc_t>(input_size.slice(2), go.sizes().slice(2), align_corners, scales);
    const auto t = linear_volume_tables(axes, dims, /*backward=*/true);
    resample_volume<scalar_t>(go, grad_input, t[0], t[1], t[2], cl, nullptr);
  });
  return grad_input;
}

}  // namespace tconv::cpu::CPU_CAPABILITY
