// CUDA backward of tconv::upsample_bilinear2d / upsample_bicubic2d: grad_input = Th^T * grad_output
// * Tw, computed as a GATHER like csrc/cpu/upsample_backward.cpp. Each axis table of the forward is
// transposed on the host (common/upsample_tables.h): every input index lists the contiguous range
// of outputs that read it and their weights, summed in increasing output order. The same engine as
// the forward (cuda/separable_resample.cuh) applies the transposed tables: each grad_input element
// is written by one thread, no atomics, a fixed order, so the gradient is bitwise reproducible and
// allowed under torch.use_deterministic_algorithms(True).
//
// NaN/Inf in grad_output: a gather over zero-padded tables, as on the CPU, so NaN may appear where
// PyTorch's scatter skips a zero weight: the documented exception of Note [NaN/Inf] (docs/ARCHITECTURE.md)
// and of the README's "NaN/Inf".
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/macros.h"
#include "common/upsample_args.h"
#include "common/upsample_tables.h"
#include "cuda/separable_resample.cuh"

namespace tconv::cuda {
namespace {

using at::Tensor;

template <UpsampleMode MODE>
Tensor upsample2d_backward_cuda(const Tensor& grad_output, at::IntArrayRef input_size,
                                bool align_corners, bool antialias, std::optional<double> scale_h,
                                std::optional<double> scale_w) {
  const Upsample2dGeometry g = upsample2d_backward_geometry(grad_output, input_size, scale_h, scale_w);
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  const at::MemoryFormat fmt = grad_output.suggest_memory_format();
  Tensor grad_input = at::empty({g.N, g.C, g.H, g.W}, grad_output.options().memory_format(fmt));
  const Tensor go = grad_output.contiguous(fmt);
  TCONV_DISPATCH_FLOATING_TYPES(
      grad_output.scalar_type(),
      MODE == UpsampleMode::Bilinear ? "upsample_bilinear2d_backward_cuda"
                                     : "upsample_bicubic2d_backward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        if (grad_input.numel() == 0) return;
        const ResampleTables<acc_t> t =
            resample_tables(resample_axes<acc_t>(g, MODE, align_corners, antialias), /*backward=*/true);
        const TableKey key = table_key(g, MODE, align_corners, antialias, /*backward=*/true,
                                       at::CppTypeToScalarType<acc_t>::value, grad_output.device());
        resample_separable_cuda<scalar_t>(go, grad_input, t.h, t.w, nullptr, nullptr,
                                          fmt == at::MemoryFormat::ChannelsLast, &key);
      });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("upsample_bilinear2d_backward", &upsample2d_backward_cuda<UpsampleMode::Bilinear>);
  m.impl("upsample_bicubic2d_backward", &upsample2d_backward_cuda<UpsampleMode::Bicubic>);
}

}  // namespace tconv::cuda
