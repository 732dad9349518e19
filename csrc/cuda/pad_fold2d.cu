// CUDA kernel of tconv::pad_fold2d, the adjoint of F.pad(mode) (common/pad_fold_args.h). Gather
// form, no atomics: one thread per output element sums the padded elements F.pad copies from it
// (rows, then columns, each in increasing order: a fixed order, deterministic; a border element's
// sum may differ from the CPU kernel's in the last bit). The input is read through its strides;
// the output is contiguous in the input's suggested memory format, enumerated in memory order so
// that neighbouring threads write neighbouring elements. float16 / bfloat16 sum in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>

#include "common/macros.h"
#include "common/pad_fold_args.h"
#include "cuda/launch.cuh"

namespace tconv::cuda {
namespace {

using at::IntArrayRef;
using at::Tensor;

struct FoldArgs {
  int64_t n, c, out_h, out_w;
  int64_t left, right, top, bottom;
  int64_t sn, sc, sh, sw;  // the input's strides
  bool channels_last;      // the output's memory order
  PadFoldMode mode;
};

template <typename scalar_t>
__global__ void pad_fold2d_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, FoldArgs a) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = a.n * a.c * a.out_h * a.out_w;
  TCONV_GRID_STRIDE_LOOP(e, total) {
    int64_t n, c, i, j;
    if (a.channels_last) {
      c = e % a.c;
      j = (e / a.c) % a.out_w;
      i = (e / (a.c * a.out_w)) % a.out_h;
      n = e / (a.c * a.out_w * a.out_h);
    } else {
      j = e % a.out_w;
      i = (e / a.out_w) % a.out_h;
      c = (e / (a.out_w * a.out_h)) % a.c;
      n = e / (a.out_w * a.out_h * a.c);
    }
    const FoldSources rows = fold_sources(i, a.out_h, a.top, a.bottom, a.mode);
    const FoldSources cols = fold_sources(j, a.out_w, a.left, a.right, a.mode);
    const scalar_t* plane = in + n * a.sn + c * a.sc;
    acc_t sum = 0;
    for (int r = 0; r < rows.count; ++r)
      for (int64_t y = rows.lo[r]; y < rows.hi[r]; ++y)
        for (int q = 0; q < cols.count; ++q)
          for (int64_t x = cols.lo[q]; x < cols.hi[q]; ++x) sum += static_cast<acc_t>(plane[y * a.sh + x * a.sw]);
    out[e] = static_cast<scalar_t>(sum);
  }
}

Tensor pad_fold2d_cuda(const Tensor& input, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold(input, pad, mode);
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "pad_fold2d is not implemented for '",
              input.scalar_type(), "'");
  const c10::cuda::CUDAGuard device_guard(input.device());
  const bool last = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const int64_t out_h = input.size(2) - pad[2] - pad[3], out_w = input.size(3) - pad[0] - pad[1];
  Tensor out = at::empty({input.size(0), input.size(1), out_h, out_w},
                         input.options().memory_format(last ? at::MemoryFormat::ChannelsLast
                                                            : at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const FoldArgs a{input.size(0), input.size(1), out_h, out_w, pad[0], pad[1], pad[2], pad[3],
                   input.stride(0), input.stride(1), input.stride(2), input.stride(3), last, mode};
  TCONV_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pad_fold2d_cuda", [&] {
    pad_fold2d_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("pad_fold2d", &pad_fold2d_cuda);
}

}  // namespace tconv::cuda
