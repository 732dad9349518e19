// The direct definitions of one output element of the 2-D transposed convolution and of one
// grad_input element: sums over the taps that exist only, in the accumulation type, shared by the
// CPU and CUDA kernels.
//
// The fast paths (the forward's cell GEMM, the backward's patch GEMM) also multiply structural
// zeros, so the kernels recompute with these loops what non-finite data would get wrong:
// Note [NaN/Inf] (docs/ARCHITECTURE.md).
//
// Tensors are read through accessors, x_at(n, c, h, w) -> acc_t and w_at(ci, co, kh, kw) -> acc_t,
// so each device reads its layout (strides, contiguous pointers) its own way.
#pragma once

#include <cstdint>

#include "common/conv_transpose2d_args.h"
#include "common/conv_transpose2d_shape.h"
#include "common/macros.h"

namespace tconv {

// acc + sum over taps (kh, then kw) and the group's input channels ci of
// x[n, ci, ih, iw] * w[ci, co, kh, kw], for output (n, c, oh, ow); c = grp * Cout_g + co.
// Pass the bias (or 0) as acc: the CPU direct loop starts from it.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // instantiated with __device__ accessors from kernels only
#endif
template <typename acc_t, typename InputAt, typename WeightAt>
TCONV_HOST_DEVICE acc_t conv_transpose2d_output_direct(const ConvTranspose2dGeometry& g,
                                                       int64_t n, int64_t c, int64_t oh,
                                                       int64_t ow, acc_t acc, InputAt x_at,
                                                       WeightAt w_at) {
  const int64_t grp = c / g.Cout_g, co = c % g.Cout_g;
  const int64_t ci_begin = grp * g.Cin_g, ci_end = ci_begin + g.Cin_g;
  for (int64_t kh = 0; kh < g.kH; ++kh) {
    const int64_t ih = input_of_tap(oh, kh, g.sh, g.ph, g.dh, g.H);
    if (ih < 0) continue;
    for (int64_t kw = 0; kw < g.kW; ++kw) {
      const int64_t iw = input_of_tap(ow, kw, g.sw, g.pw, g.dw, g.W);
      if (iw < 0) continue;
      for (int64_t ci = ci_begin; ci < ci_end; ++ci) acc += x_at(n, ci, ih, iw) * w_at(ci, co, kh, kw);
    }
  }
  return acc;
}

// grad_input[n, cin, ih, iw]: sum over the group's output channels co and the taps (kh, kw) that
// put this pixel inside grad_output of grad_output[n, grp * Cout_g + co, oh, ow] * w[cin, co, kh, kw].
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <typename acc_t, typename GradOutputAt, typename WeightAt>
TCONV_HOST_DEVICE acc_t conv_transpose2d_grad_input_direct(const ConvTranspose2dGeometry& g,
                                                           int64_t n, int64_t cin, int64_t ih,
                                                           int64_t iw, GradOutputAt go_at,
                                                           WeightAt w_at) {
  const int64_t grp = cin / g.Cin_g;
  acc_t acc = 0;
  for (int64_t co = 0; co < g.Cout_g; ++co) {
    const int64_t c = grp * g.Cout_g + co;
    for (int64_t kh = 0; kh < g.kH; ++kh) {
      const int64_t oh = output_of_tap(ih, kh, g.sh, g.ph, g.dh);
      if (oh < 0 || oh >= g.Ho) continue;
      for (int64_t kw = 0; kw < g.kW; ++kw) {
        const int64_t ow = output_of_tap(iw, kw, g.sw, g.pw, g.dw);
        if (ow < 0 || ow >= g.Wo) continue;
        acc += go_at(n, c, oh, ow) * w_at(cin, co, kh, kw);
      }
    }
  }
  return acc;
}

}  // namespace tconv
