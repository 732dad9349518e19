// CUDA forward of tconv::upsample_bilinear2d and tconv::upsample_bicubic2d (antialias included).
// Computes what csrc/cpu/upsample.cpp computes: per axis a table of taps (common/
// upsample_tables.h, built on the host from ATen's index/weight math), applied separably by
// cuda/separable_resample.cuh. The output keeps the input's suggested memory format, like
// PyTorch; other strided inputs are made dense in that format first. NaN/Inf land where
// PyTorch's kernels put them (ATen's unmerged taps, see separable_resample.cuh; Note [NaN/Inf]).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/macros.h"
#include "common/upsample_args.h"
#include "common/upsample_raw_taps.h"
#include "common/upsample_tables.h"
#include "cuda/separable_resample.cuh"

namespace tconv::cuda {
namespace {

using at::Tensor;

template <UpsampleMode MODE>
Tensor upsample2d_cuda(const Tensor& input, at::IntArrayRef output_size, bool align_corners,
                       bool antialias, std::optional<double> scale_h, std::optional<double> scale_w) {
  const Upsample2dGeometry g = upsample2d_geometry(input, output_size, scale_h, scale_w);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const at::MemoryFormat fmt = input.suggest_memory_format();
  Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, input.options().memory_format(fmt));
  const Tensor x = input.contiguous(fmt);
  TCONV_DISPATCH_FLOATING_TYPES(
      input.scalar_type(),
      MODE == UpsampleMode::Bilinear ? "upsample_bilinear2d_cuda" : "upsample_bicubic2d_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        if (y.numel() == 0) return;
        const ResampleAxes<acc_t> axes = resample_axes<acc_t>(g, MODE, align_corners, antialias);
        const ResampleTables<acc_t> t = resample_tables(axes, /*backward=*/false);
        const auto raw_h = raw_taps(axes.h), raw_w = raw_taps(axes.w);
        const TableKey key = table_key(g, MODE, align_corners, antialias, /*backward=*/false,
                                       at::CppTypeToScalarType<acc_t>::value, input.device());
        resample_separable_cuda<scalar_t>(x, y, t.h, t.w, &raw_h, &raw_w,
                                          fmt == at::MemoryFormat::ChannelsLast, &key);
      });
  return y;
}

}  // namespace

TableCacheStats upsample_table_cache_stats() { return TableCache::instance().stats(); }

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("upsample_bilinear2d", &upsample2d_cuda<UpsampleMode::Bilinear>);
  m.impl("upsample_bicubic2d", &upsample2d_cuda<UpsampleMode::Bicubic>);
}

}  // namespace tconv::cuda
