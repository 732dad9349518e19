// CUDA kernels of tconv::upsample_taps2d and its backward (Note [mix first], common/upsample_taps.h).
// Gather form, no atomics: one thread per output element sums its row entries, each over its
// column entries, in the tables' order (fixed: deterministic). The per-axis tables are built on
// the host (the CPU kernels' tables) and copied to the device once per call. float16 / bfloat16
// sum in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

#include "common/macros.h"
#include "common/upsample_taps.h"
#include "cuda/launch.cuh"

namespace tconv::cuda {
namespace {

using at::IntArrayRef;
using at::Tensor;

// One axis's rows on the device: row r holds entries [ptr[r], ptr[r + 1]).
template <typename acc_t>
struct DeviceRows {
  const int64_t *ptr, *tap, *index;
  const acc_t* weight;
};

// Copies the rows of both axes to the device; `keep` holds the device buffers alive.
template <typename acc_t>
std::pair<DeviceRows<acc_t>, DeviceRows<acc_t>> upload(const TapRows<acc_t>& h, const TapRows<acc_t>& w,
                                                       const Tensor& like, std::vector<Tensor>& keep) {
  auto ints = [&](const std::vector<int64_t>& v) {
    Tensor t = at::empty({static_cast<int64_t>(std::max<size_t>(v.size(), 1))}, at::kLong);
    std::copy(v.begin(), v.end(), t.data_ptr<int64_t>());
    keep.push_back(t.to(like.device(), /*non_blocking=*/false));
    return keep.back().const_data_ptr<int64_t>();
  };
  auto reals = [&](const std::vector<acc_t>& v) {
    Tensor t = at::empty({static_cast<int64_t>(std::max<size_t>(v.size(), 1))},
                         at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value));
    std::copy(v.begin(), v.end(), t.data_ptr<acc_t>());
    keep.push_back(t.to(like.device(), /*non_blocking=*/false));
    return keep.back().const_data_ptr<acc_t>();
  };
  DeviceRows<acc_t> dh{ints(h.ptr), ints(h.tap), ints(h.index), reals(h.weight)};
  DeviceRows<acc_t> dw{ints(w.ptr), ints(w.tap), ints(w.index), reals(w.weight)};
  return {dh, dw};
}

template <typename scalar_t, typename acc_t>
__global__ void taps_forward_kernel(const scalar_t* __restrict__ m, const scalar_t* __restrict__ bias,
                                    scalar_t* __restrict__ y, bool channels_last, UpsampleTapsGeometry g,
                                    DeviceRows<acc_t> th, DeviceRows<acc_t> tw, int64_t total) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(blockDim.x) * gridDim.x) {
    // e enumerates y in memory order: (n, c, oy, ox), or (n, oy, ox, c) for channels_last.
    int64_t ox, oy, c;
    if (channels_last) {
      c = e % g.C, ox = (e / g.C) % g.Wo, oy = (e / (g.C * g.Wo)) % g.Ho;
    } else {
      ox = e % g.Wo, oy = (e / g.Wo) % g.Ho, c = (e / (g.Wo * g.Ho)) % g.C;
    }
    const int64_t n = e / (g.Wo * g.Ho * g.C);
    acc_t s = bias ? static_cast<acc_t>(bias[c]) : acc_t(0);
    for (int64_t qh = th.ptr[oy]; qh < th.ptr[oy + 1]; ++qh) {
      acc_t row = 0;
      for (int64_t qw = tw.ptr[ox]; qw < tw.ptr[ox + 1]; ++qw) {
        const int64_t a = th.tap[qh] * g.kw + tw.tap[qw];
        row += tw.weight[qw] *
               static_cast<acc_t>(m[(((n * g.kh * g.kw + a) * g.C + c) * g.H + th.index[qh]) * g.W + tw.index[qw]]);
      }
      s += th.weight[qh] * row;
    }
    y[e] = static_cast<scalar_t>(s);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void taps_backward_kernel(const scalar_t* __restrict__ gy, Strides4 gs, scalar_t* __restrict__ gm,
                                     UpsampleTapsGeometry g, DeviceRows<acc_t> th, DeviceRows<acc_t> tw,
                                     int64_t total) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(blockDim.x) * gridDim.x) {
    // gm: (N, kh * kw, C, H, W)
    const int64_t j = e % g.W, i = (e / g.W) % g.H, c = (e / (g.W * g.H)) % g.C;
    const int64_t a = (e / (g.W * g.H * g.C)) % (g.kh * g.kw), n = e / (g.W * g.H * g.C * g.kh * g.kw);
    const int64_t rh = (a / g.kw) * g.H + i, rw = (a % g.kw) * g.W + j;
    acc_t s = 0;
    for (int64_t qh = th.ptr[rh]; qh < th.ptr[rh + 1]; ++qh) {
      acc_t row = 0;
      for (int64_t qw = tw.ptr[rw]; qw < tw.ptr[rw + 1]; ++qw)
        row += tw.weight[qw] * static_cast<acc_t>(gy[gs.offset(n, c, th.index[qh], tw.index[qw])]);
      s += th.weight[qh] * row;
    }
    gm[e] = static_cast<scalar_t>(s);
  }
}

Tensor upsample_taps2d_cuda(const Tensor& taps, const std::optional<Tensor>& bias, IntArrayRef kernel_size,
                            IntArrayRef scale, IntArrayRef padding, c10::string_view mode_name, bool channels_last) {
  const TapMode mode = upsample_taps_mode(std::string(mode_name));
  const UpsampleTapsGeometry g = upsample_taps_geometry(taps.sizes(), kernel_size, scale, padding);
  check_upsample_taps(taps, bias, g);
  const bool has_bias = bias.has_value() && bias->defined();
  const c10::cuda::CUDAGuard device_guard(taps.device());
  Tensor out = at::empty({g.N, g.C, g.Ho, g.Wo}, taps.options().memory_format(
                                                     channels_last ? at::MemoryFormat::ChannelsLast
                                                                   : at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const Tensor m = taps.contiguous();
  const Tensor b = has_bias ? bias->contiguous() : Tensor();
  TCONV_DISPATCH_FLOATING_TYPES(m.scalar_type(), "upsample_taps2d_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto t = upsample_tap_axes<acc_t>(g, mode);
    const auto &th = t.h, &tw = t.w;
    std::vector<Tensor> keep;
    const auto rows = upload<acc_t>(th.forward, tw.forward, m, keep);
    taps_forward_kernel<scalar_t, acc_t><<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        m.const_data_ptr<scalar_t>(), has_bias ? b.const_data_ptr<scalar_t>() : nullptr,
        out.mutable_data_ptr<scalar_t>(), channels_last, g, rows.first, rows.second, out.numel());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

Tensor upsample_taps2d_backward_cuda(const Tensor& grad_output, IntArrayRef kernel_size, IntArrayRef scale,
                                     IntArrayRef padding, c10::string_view mode_name, IntArrayRef input_hw) {
  const TapMode mode = upsample_taps_mode(std::string(mode_name));
  const UpsampleTapsGeometry g = upsample_taps_backward_geometry(grad_output, kernel_size, scale, padding, input_hw);
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  Tensor out = at::empty({g.N, g.kh * g.kw, g.C, g.H, g.W}, grad_output.options());
  if (out.numel() == 0) return out;
  const Tensor& go = grad_output;  // read through its strides
  TCONV_DISPATCH_FLOATING_TYPES(go.scalar_type(), "upsample_taps2d_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto t = upsample_tap_axes<acc_t>(g, mode);
    const auto &th = t.h, &tw = t.w;
    std::vector<Tensor> keep;
    const auto rows = upload<acc_t>(th.adjoint, tw.adjoint, go, keep);
    taps_backward_kernel<scalar_t, acc_t><<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        go.const_data_ptr<scalar_t>(), strides_of(go), out.mutable_data_ptr<scalar_t>(), g, rows.first, rows.second,
        out.numel());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tconv, CUDA, m) {
  m.impl("upsample_taps2d", &upsample_taps2d_cuda);
  m.impl("upsample_taps2d_backward", &upsample_taps2d_backward_cuda);
}

}  // namespace tconv::cuda
