// CUDA kernels of tconv::pad_fold2d, the adjoint of F.pad(mode) (common/pad_fold_args.h), and of
// pad_fold2d_frame (the padded tensor given as its interior and frame strips). Gather
// form, no atomics: one thread per output element sums the padded elements F.pad copies from it
// (rows, then columns, each in increasing order: a fixed order, deterministic; a border element's
// sum may differ from the CPU kernel's in the last bit). The inputs are read through their strides;
// the output is contiguous in the input's suggested memory format, enumerated in memory order so
// that neighbouring threads write neighbouring elements. float16 / bfloat16 sum in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>
#include <utility>

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
  bool channels_last;  // the output's memory order
  PadFoldMode mode;
};

// A 4-D tensor read through its strides.
template <typename scalar_t>
struct Strided {
  const scalar_t* data;
  int64_t sn, sc, sh, sw;
  __device__ __forceinline__ scalar_t at(int64_t n, int64_t c, int64_t y, int64_t x) const {
    return data[n * sn + c * sc + y * sh + x * sw];
  }
};

template <typename scalar_t>
Strided<scalar_t> strided(const Tensor& t) {
  return {t.const_data_ptr<scalar_t>(), t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// The padded tensor in one piece (pad_fold2d).
template <typename scalar_t>
struct WholeSource {
  Strided<scalar_t> full;
  __device__ __forceinline__ scalar_t at(int64_t n, int64_t c, int64_t y, int64_t x, const FoldArgs&) const {
    return full.at(n, c, y, x);
  }
};

// The padded tensor as its interior and the four strips of its frame (pad_fold2d_frame).
template <typename scalar_t>
struct FrameSource {
  Strided<scalar_t> center, top, bottom, left, right;
  __device__ __forceinline__ scalar_t at(int64_t n, int64_t c, int64_t y, int64_t x, const FoldArgs& a) const {
    if (y < a.top) return top.at(n, c, y, x);
    if (y >= a.top + a.out_h) return bottom.at(n, c, y - a.top - a.out_h, x);
    if (x < a.left) return left.at(n, c, y - a.top, x);
    if (x >= a.left + a.out_w) return right.at(n, c, y - a.top, x - a.left - a.out_w);
    return center.at(n, c, y - a.top, x - a.left);
  }
};

template <typename scalar_t, typename Source>
__global__ void pad_fold2d_kernel(Source src, scalar_t* out, FoldArgs a) {  // out may be center (in place)
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
    acc_t sum = 0;
    for (int r = 0; r < rows.count; ++r)
      for (int64_t y = rows.lo[r]; y < rows.hi[r]; ++y)
        for (int q = 0; q < cols.count; ++q)
          for (int64_t x = cols.lo[q]; x < cols.hi[q]; ++x) sum += static_cast<acc_t>(src.at(n, c, y, x, a));
    out[e] = static_cast<scalar_t>(sum);
  }
}

// The output (N, C, out_h, out_w), contiguous in `like`'s suggested memory format, and the
// launch arguments.
std::pair<Tensor, FoldArgs> fold_output(const Tensor& like, int64_t out_h, int64_t out_w, IntArrayRef pad,
                                        PadFoldMode mode) {
  const bool last = like.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  Tensor out = at::empty({like.size(0), like.size(1), out_h, out_w},
                         like.options().memory_format(last ? at::MemoryFormat::ChannelsLast
                                                           : at::MemoryFormat::Contiguous));
  return {out, FoldArgs{like.size(0), like.size(1), out_h, out_w, pad[0], pad[1], pad[2], pad[3], last, mode}};
}

Tensor pad_fold2d_cuda(const Tensor& input, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold(input, pad, mode);
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "pad_fold2d is not implemented for '",
              input.scalar_type(), "'");
  const c10::cuda::CUDAGuard device_guard(input.device());
  const auto made = fold_output(input, input.size(2) - pad[2] - pad[3], input.size(3) - pad[0] - pad[1], pad, mode);
  const Tensor& out = made.first;
  const FoldArgs a = made.second;
  if (out.numel() == 0) return out;
  TCONV_DISPATCH_FLOATING_TYPES(input.scalar_type(), "pad_fold2d_cuda", [&] {
    pad_fold2d_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        WholeSource<scalar_t>{strided<scalar_t>(input)}, out.mutable_data_ptr<scalar_t>(), a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

Tensor pad_fold2d_frame_cuda(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                             const Tensor& right, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold_frame(center, top, bottom, left, right, pad, mode);
  TORCH_CHECK(at::isFloatingType(center.scalar_type()), "pad_fold2d_frame is not implemented for '",
              center.scalar_type(), "'");
  const c10::cuda::CUDAGuard device_guard(center.device());
  const auto made = fold_output(center, center.size(2), center.size(3), pad, mode);
  const Tensor& out = made.first;
  const FoldArgs a = made.second;
  if (out.numel() == 0) return out;
  TCONV_DISPATCH_FLOATING_TYPES(center.scalar_type(), "pad_fold2d_frame_cuda", [&] {
    const FrameSource<scalar_t> src{strided<scalar_t>(center), strided<scalar_t>(top), strided<scalar_t>(bottom),
                                    strided<scalar_t>(left), strided<scalar_t>(right)};
    pad_fold2d_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        src, out.mutable_data_ptr<scalar_t>(), a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// In place: each thread reads its own element of center (the center term of its sum) before it
// writes it, and nothing else of center.
void pad_fold2d_frame__cuda(const Tensor& center, const Tensor& top, const Tensor& bottom, const Tensor& left,
                            const Tensor& right, IntArrayRef pad, c10::string_view mode_name) {
  const PadFoldMode mode = pad_fold_mode(std::string(mode_name));
  check_pad_fold_frame(center, top, bottom, left, right, pad, mode);
  const bool last = center.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  TORCH_CHECK(center.is_contiguous(last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous) &&
                  (center.scalar_type() == at::kFloat || center.scalar_type() == at::kDouble),
              "pad_fold2d_frame_: center must be a contiguous (or channels_last) float32 / float64 tensor");
  if (center.numel() == 0) return;
  const c10::cuda::CUDAGuard device_guard(center.device());
  const FoldArgs a{center.size(0), center.size(1), center.size(2), center.size(3), pad[0], pad[1], pad[2], pad[3],
                   last, mode};
  AT_DISPATCH_FLOATING_TYPES(center.scalar_type(), "pad_fold2d_frame__cuda", [&] {
    const FrameSource<scalar_t> src{strided<scalar_t>(center), strided<scalar_t>(top), strided<scalar_t>(bottom),
                                    strided<scalar_t>(left), strided<scalar_t>(right)};
    pad_fold2d_kernel<scalar_t><<<blocks_for(center.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        src, center.mutable_data_ptr<scalar_t>(), a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("pad_fold2d", &pad_fold2d_cuda);
  m.impl("pad_fold2d_frame", &pad_fold2d_frame_cuda);
  m.impl("pad_fold2d_frame_", &pad_fold2d_frame__cuda);
}

}  // namespace tconv::cuda
